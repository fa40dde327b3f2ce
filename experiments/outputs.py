"""An experiment's output folder: what it holds, --resume and --overwrite, results and models.

Layout: ``config.yaml`` (the exact resolved config), ``strategies.yaml`` (what each strategy
trained as: every setting, code defaults included), ``environment.yaml`` (what it ran with
beyond the config: package versions, CPU, threads, GPU), ``results.csv`` (one row per run,
rewritten atomically after each), ``summary.md``, ``comparison.png``,
``models/<scenario>/<strategy>-seed<N>.pt`` and ``runs/`` (checkpoints and logs).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from experiments.cache import NON_SEMANTIC
from experiments.config import ConfigError
from experiments.config_diff import (
    ABSENT,
    DISPLAY_SETTINGS,
    comparable_settings,
    describe_differences,
    differing_keys,
    value_at,
)
from experiments.grid import StrategyRun, strategy_runs
from experiments.report import results_frame
from incremental.devices import describe_environment
from incremental.io import write_atomic, write_text
from incremental.models.model_file import plain_data
from incremental.strategies import replay_defaults, strategy_settings

log = logging.getLogger("experiments.run")

#: Output files of an experiment: what --overwrite moves aside.
OUTPUTS = (
    "config.yaml", "strategies.yaml", "environment.yaml", "results.csv", "summary.md",
    "comparison.png", "models", "runs", "wandb",
    "sources.yaml",  # a merge's (experiments.merge)
)  # fmt: skip
#: The record of the machine and packages an experiment ran on (one of ``OUTPUTS``).
ENVIRONMENT = "environment.yaml"
#: What each strategy of an experiment trained as (one of ``OUTPUTS``).
STRATEGIES = "strategies.yaml"
#: Where --overwrite keeps the previous experiment (replaced by the next --overwrite).
PREVIOUS = "previous"


def prepare_output(config: DictConfig, out: Path) -> list[dict[str, Any]]:
    """Check what the output folder holds against --resume / --overwrite; returns the rows
    of finished runs to keep (resume) or none.

    Raises:
        ConfigError: the folder holds an experiment and neither flag is given; --resume
            without an experiment there, or with a config that differs from the saved one.
    """
    if config.resume and config.overwrite:
        raise ConfigError("resume and overwrite: choose one")
    existing = [name for name in OUTPUTS if (out / name).exists()]
    if config.resume:
        if not (out / "config.yaml").exists():
            raise ConfigError(f"resume: {out} holds no experiment (config.yaml) to resume")
        check_same_config(OmegaConf.load(out / "config.yaml"), config, out)
        return finished_rows(out)
    if existing and not config.overwrite:
        raise ConfigError(
            f"output: {out} already holds an experiment ({', '.join(existing)}); pass --resume "
            "to continue it, --overwrite to replace it, or --output to write elsewhere"
        )
    if existing:  # --overwrite, explicitly: the previous experiment is kept aside, not lost
        previous = out / PREVIOUS
        if previous.exists():
            shutil.rmtree(previous)
        previous.mkdir()
        for name in existing:
            (out / name).rename(previous / name)
        print(f"--overwrite: the previous experiment is now in {previous} (until the next "
              "--overwrite)", flush=True)  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    return []


class OutputLock:
    """``out/.lock``: one experiment at a time per output folder. Holds the owner's process id
    and host; a lock whose process has ended (a kill) is taken over, with a note.

    Raises:
        ConfigError: another live process holds the folder (naming it).
    """

    def __init__(self, out: Path) -> None:
        self.path = out / ".lock"

    def __enter__(self) -> OutputLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = f"{os.getpid()} {socket.gethostname()}"
        for _ in range(2):
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            with os.fdopen(descriptor, "w") as f:
                f.write(me)
            return self
        raise ConfigError(f"output: cannot lock {self.path}")

    def _take_over_if_stale(self) -> None:
        pid, host = _holder(self.path)
        if host == socket.gethostname() and pid > 0 and _alive(pid):
            raise ConfigError(
                f"output: {self.path.parent} is in use by process {pid} on {host} (an experiment "
                "running there); wait for it to end, or write elsewhere with --output"
            )
        if host and host != socket.gethostname():
            raise ConfigError(
                f"output: {self.path.parent} is locked by a process on another machine ({host}); "
                f"if none runs there, delete {self.path}"
            )
        print(f"output: taking over {self.path} from process {pid}, which has ended", flush=True)
        self.path.unlink(missing_ok=True)

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)


def _holder(lock: Path) -> tuple[int, str]:
    """(process id, host) written in a lock file; (-1, "") if unreadable."""
    try:
        pid_text, host = lock.read_text().split()
        return int(pid_text), host
    except (OSError, ValueError):
        return -1, ""


def live_lock(out: Path) -> str | None:
    """Who holds ``out/.lock``: "process P on HOST" when a live process here or any process on
    another machine does (an experiment running there), None when no lock or a stale one."""
    lock = out / ".lock"
    if not lock.exists():
        return None
    pid, host = _holder(lock)
    if host == socket.gethostname() and not (pid > 0 and _alive(pid)):
        return None
    return f"process {pid} on {host or 'an unknown host'}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def finished_rows(out: Path) -> list[dict[str, Any]]:
    """The rows of ``out/results.csv`` (none if absent)."""
    if not (out / "results.csv").exists():
        return []
    import pandas as pd

    return pd.read_csv(out / "results.csv").to_dict("records")


#: Runner flags a resumed experiment may change, and where its folder is (moved, copied to
#: another machine, or named by another path): they do not change a result.
#: (``threads`` too: a resumed run at another count is the same experiment in other bits;
#: results.csv records each run's, and the runner says when they differ.)
RESUME_FLAGS = frozenset({"resume", "overwrite", "jobs", "threads", "retrain_old", "output"})
#: The display settings of ``train_old`` a resume may change: those the old model's cache key
#: ignores (the others changed, the resume would train the old model again).
OLD_MODEL_DISPLAY = DISPLAY_SETTINGS.intersection(NON_SEMANTIC)


def check_same_config(saved: DictConfig, config: DictConfig, out: Path) -> None:
    """A resumed experiment must be the same experiment: every setting but the runner's flags
    and the display settings equal, with its type (``config_diff``)."""
    old, new = (
        comparable_settings(plain, RESUME_FLAGS, OLD_MODEL_DISPLAY)
        for plain in (OmegaConf.to_container(c, resolve=True) for c in (saved, config))
    )
    changed = differing_keys(old, new)
    if changed:
        shown = describe_differences(old, new, changed, out / "config.yaml", "this run")
        raise ConfigError(
            f"resume: the config differs from {out / 'config.yaml'}: {shown}; resume with the "
            "same settings, or start a new experiment with --output"
        )


def strategies_record(runs: Sequence[StrategyRun]) -> dict[str, dict[str, Any]]:
    """Label -> :meth:`~incremental.strategies.Strategy.describe` of each strategy, as plain
    YAML data: every setting it trains with, those left to the code's defaults included. The
    config names a strategy and the settings the user gave; this records what the code made of
    them, so a default changed later shows (a resume, a merge and the committed-results test
    compare it)."""
    return {run.label: plain_data(run.strategy.describe()) for run in runs}


def record_before_replay_defaults(
    entries: Sequence[Any], overrides: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """:func:`strategies_record` of an experiment's strategies as the code built them before
    replay had defaults of its own (2026-12-07): what a folder without ``STRATEGIES`` trained.
    A ``+replay`` key of ``strategy_overrides`` changed nothing then (it is refused today).

    Raises:
        ValueError: a strategy today's code cannot build, naming it.
    """
    overrides = {k: v for k, v in overrides.items() if "+" not in k}
    return strategies_record(strategy_runs(list(entries), overrides, with_replay_defaults=False))


def read_strategies(folder: Path) -> dict[str, dict[str, Any]] | None:
    """``folder/strategies.yaml`` (None for an experiment from before it was written).

    Raises:
        ConfigError: the file is unreadable or not a mapping of labels, naming it.
    """
    path = folder / STRATEGIES
    if not path.exists():
        return None
    try:
        record = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: cannot read the strategies record: {error}") from None
    if not isinstance(record, dict) or not all(isinstance(v, dict) for v in record.values()):
        raise ConfigError(f"{path}: expected a mapping of strategy label -> settings")
    return record


def strategy_differences(
    a: dict[str, dict[str, Any]],
    b: dict[str, dict[str, Any]],
    where_a: Path | str,
    where_b: Path | str = "today's code",
) -> list[str]:
    """One line per strategy label in both records whose settings differ (naming the keys and
    both values, as found ``where_a`` and ``where_b``), for an error; empty when they agree.
    Labels in only one record are left to the caller: a resume may run fewer strategies, a
    merge more. A setting one record lacks and the other holds as None is no difference: an
    option added to a piece later, off by default (the rule for new options)."""
    lines = []
    for label in sorted(set(a) & set(b)):
        keys = [
            key
            for key in differing_keys(a[label], b[label])
            if not _added_off(value_at(a[label], key), value_at(b[label], key))
        ]
        if keys:
            shown = describe_differences(a[label], b[label], keys, where_a, where_b)
            lines.append(f"{label}: {shown}")
    return lines


def _added_off(a: Any, b: Any) -> bool:
    """A setting one record lacks and the other holds as None: an option added to a piece
    after the older record was written, off by default (new options come off, so older runs
    trained as they do now)."""
    return (a is ABSENT and b is None) or (b is ABSENT and a is None)


def _former_replay_pin(runs: Sequence[StrategyRun]) -> str:
    """The ``strategy_overrides`` that turn off replay's defaults of the replaying ``runs``
    (each base's defaults set to its factory's own, null for candidate sets), in YAML's flow
    style for an error message."""
    pin = {
        run.registered: {
            key: strategy_settings(run.registered)[key] for key in replay_defaults(run.registered)
        }
        for run in runs
        if run.strategy.replay and replay_defaults(run.registered)
    }
    return yaml.safe_dump(pin, default_flow_style=True, sort_keys=False).strip()


def write_strategies(
    out: Path,
    runs: Sequence[StrategyRun],
    resume: bool,
    before_record: dict[str, dict[str, Any]] | None = None,
) -> None:
    """``strategies.yaml``; a resume first checks that every strategy the folder recorded
    trains as it did (a code default changed between the start and the resume would put rows
    of two different strategies under one name). A resumed folder from before the record
    gets none: today's code cannot vouch for its finished rows. It is checked against
    ``before_record`` (:func:`record_before_replay_defaults` of its grid): a strategy replay's
    defaults change is refused.

    Raises:
        ConfigError: on resume, a recorded strategy that trains differently today, or in a
            folder from before the record, one that replay's defaults change.
    """
    today = strategies_record(runs)
    saved = read_strategies(out) if resume else None
    if resume and saved is None and finished_rows(out):
        changed = strategy_differences(before_record or {}, today, "the code before 2026-12-07")
        if changed:
            raise ConfigError(
                f"resume: {out} has no {STRATEGIES}, so it started before 2026-12-07, when "
                "replay had no defaults of its own; today a strategy of it trains differently: "
                f"{changed[0]}. To finish it as it started, pin the former settings "
                f"(strategy_overrides: {_former_replay_pin(runs)}), or start a new experiment "
                "with --output"
            )
        log.warning(
            "resume: %s has no %s (an experiment from before it was written): its finished "
            "runs' strategies are unrecorded, so none is written now either",
            out,
            STRATEGIES,
        )
        return
    if saved is not None:
        changed = strategy_differences(saved, today, out / STRATEGIES)
        if changed:
            raise ConfigError(
                "resume: a strategy trains differently from how it started (a code default "
                f"changed?): {'; '.join(changed)}; finish it with the code it started with, or "
                "start a new experiment with --output"
            )
        today = {**saved, **today}
    text = yaml.safe_dump(today, sort_keys=False)
    write_text(out / STRATEGIES, text, "the strategies record")


def write_environment(path: Path, threads: int | None) -> None:
    """``environment.yaml``: :func:`~incremental.devices.describe_environment` with the runs'
    thread count (None: they compute at this process's). A --resume rewrites it: it describes
    the latest start, and results.csv's ``device``, ``precision`` and ``threads`` columns each
    run's own."""
    environment = describe_environment()
    if threads is not None:
        environment["threads"] = threads
    write_text(path, yaml.safe_dump(environment, sort_keys=False), "the environment record")


def write_results(out: Path, rows: Sequence[dict[str, Any]]) -> None:
    """results.csv, atomically: an interrupted experiment never leaves half a table."""
    table = results_frame(rows).to_csv(index=False).encode()
    write_atomic(out / "results.csv", lambda f: f.write(table), "the results table")


def model_path(out: Path, scenario: str, label: str, seed: int) -> Path:
    """Where the student of (scenario, strategy label, seed) is saved."""
    return out / "models" / scenario / f"{label}-seed{seed}.pt"


def run_dir(out: Path, scenario: str, label: str, seed: int) -> Path:
    """Checkpoints and logs of one run."""
    return out / "runs" / scenario / label / f"seed{seed}"
