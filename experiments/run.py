"""Run an experiment: ``python -m experiments.run [CONFIG] [--strategies a,b] [--seeds 0,1,2]
[--profile quick|full] [--output DIR] [--wandb offline|online|disabled]``.

For every scenario and seed, the old model (step 0) is trained once and cached by a hash of its
config; then every strategy runs step 1 from it. Writes under the output folder:
``config.yaml`` (the exact resolved config), ``results.csv``, ``summary.md``,
``comparison.png``, ``models/<scenario>/<strategy>-seed<N>.pt`` (model files, loadable with
``incremental.models.load_model_file``) and ``runs/`` (checkpoints and logs).
With no argument: the embedded default, both Fashion-scenes cases, quick profile.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments.config import ConfigError, load_config, scenario_configs
from experiments.grid import RunKey, StrategyRun, strategy_runs
from experiments.outputs import (
    ENVIRONMENT,
    OutputLock,
    finished_rows,
    prepare_output,
    record_before_replay_defaults,
    write_environment,
    write_results,
    write_strategies,
)
from experiments.parallel import Task, default_jobs, run_parallel
from experiments.report import (
    markdown,
    oracle_flags,
    plot_comparison,
    results_frame,
    scenario_columns,
    summary_table,
    trained_on,
    write_summary,
)
from experiments.steps import (
    expected_cost,
    old_model,
    old_model_to_train,
    plain,
    step_train_settings,
    strategy_chain,
)
from experiments.tracking import log_summary_run
from experiments.units import chain_job, import_modules, old_model_job, share_scenarios
from incremental.data import DatasetError, as_sources, build_scenarios
from incremental.data.fashion.streams import scene_cache, using_scene_cache
from incremental.devices import (
    check_thread_count,
    cpu_threads,
    resolve_precision,
    runs_on_cpu,
)
from incremental.io import write_text
from incremental.module import NonFiniteLossError
from incremental.strategies import list_strategies
from incremental.strategies.registry import strategy_module
from incremental.trainer import check_trainer_arguments
from incremental.workflow import TrainConfig

log = logging.getLogger("experiments.run")

#: Settings that decide the processes of a run: step 0 and step 1 must agree, because every
#: process of a multi-process run replays the whole experiment, fit by fit.
DEVICE_KEYS = ("accelerator", "devices", "strategy", "num_nodes")


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, dict[str, Any]]:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("config", nargs="?", help="experiment YAML (default: the embedded default)")
    parser.add_argument(
        "--strategies",
        help="comma-separated strategy names, e.g. mib,candidate-sets+replay; a name the config "
        "file gives a variant (or an inline scenario, for --scenarios) picks that entry",
    )
    parser.add_argument("--scenarios", help="comma-separated scenario names or YAML paths")
    parser.add_argument("--seeds", help="comma-separated integer seeds, e.g. 0,1,2")
    parser.add_argument("--profile", help="quick, full, or a profile YAML")
    parser.add_argument("--output", help="output folder (default outputs/<name>)")
    parser.add_argument("--wandb", choices=["offline", "online", "disabled"])
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the output folder's experiment"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the output folder's interrupted experiment: keep finished runs, "
        "continue interrupted ones from their last checkpoint",
    )
    parser.add_argument(
        "--jobs",
        help="runs side by side, each a process of `threads` threads (--set threads=N, default "
        "1; default auto: the core count divided by threads on a CPU, 1 on a GPU)",
    )
    parser.add_argument(
        "--retrain-old",
        action="store_true",
        help="train the old models even when cached or shipped (experiments/old_models/)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any config key, dotted (e.g. train.epochs=2); repeatable",
    )
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {}
    if args.strategies:
        overrides["strategies"] = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if args.scenarios:
        overrides["scenarios"] = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if args.seeds:
        try:
            overrides["seeds"] = [int(s) for s in args.seeds.split(",")]
        except ValueError:
            parser.error(f"--seeds: expected comma-separated integers, got {args.seeds!r}")
    for key in ("profile", "output", "wandb"):
        if getattr(args, key):
            overrides[key] = getattr(args, key)
    for flag in ("overwrite", "resume", "retrain_old"):
        if getattr(args, flag):
            overrides[flag] = True
    if args.jobs:
        overrides["jobs"] = args.jobs if args.jobs == "auto" else _parse_value(args.jobs)
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set: expected KEY=VALUE, got {item!r}")
        overrides[key] = _parse_value(value)
    return args, overrides


def _parse_value(text: str) -> Any:
    """YAML-typed value of a ``--set`` item (``2`` -> int, ``[a,b]`` -> list)."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def is_main_process() -> bool:
    """False in the extra processes of a multi-process run (Lightning's DDP launcher re-runs
    this command once per device; torchrun and SLURM start one per device and node): only
    the main process writes outputs, caches and prints the table."""
    ranks = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")
    return all(int(os.environ.get(name, "0") or 0) == 0 for name in ranks)


def several_devices(config: DictConfig) -> bool:
    """Whether each run trains on several devices or nodes (Lightning's launcher)."""
    return config.train.devices not in (1, "1") or config.train.num_nodes != 1


def check_devices(config: DictConfig) -> None:
    differ = [k for k in DEVICE_KEYS if config.train_old[k] != config.train[k]]
    if differ and several_devices(config):
        raise ConfigError(
            f"train_old and train differ in {differ}: a multi-device experiment needs the same "
            f"{list(DEVICE_KEYS)} for both steps (set train_old.<key> too)"
        )


def check_train_settings(config: DictConfig, runs: list) -> None:
    """``strategy_train`` names known strategies and TrainConfig keys only; every loop setting
    is in range (the accelerator available: :class:`TrainConfig` checks), every ``trainer``
    mapping holds ``lightning.Trainer`` arguments only. Errors name the key."""
    known = {r.name for r in runs} | set(list_strategies())
    fields = set(TrainConfig.__dataclass_fields__)
    for name, settings in plain(config.strategy_train).items():
        if name not in known:
            raise ConfigError(f"strategy_train: unknown strategy {name!r}")
        unknown = sorted(set(settings) - fields)
        if unknown:
            raise ConfigError(
                f"strategy_train.{name}: unknown key(s) {unknown}; known: {sorted(fields)}"
            )
    sections = {"train_old": plain(config.train_old), "train": plain(config.train)}
    for name, settings in plain(config.strategy_train).items():
        sections[f"strategy_train.{name}"] = {**sections["train"], **settings}
    for where, settings in sections.items():
        try:
            TrainConfig(**settings)
            check_trainer_arguments(settings.get("trainer") or {}, f"{where}.trainer")
        except ValueError as error:
            message = str(error) if "trainer" in str(error) else f"{where}.{error}"
            raise ConfigError(message) from None


def check_model(config: DictConfig) -> None:
    """The model config builds a network (on the meta device: no memory, no weights read),
    even where a given old model makes it unused: a typo is never silently ignored."""
    import torch

    from incremental.models import build_model

    spec = plain(config.model)
    try:
        with torch.device("meta"):
            build_model({k: v for k, v in spec.items() if k != "weights"}, 2, allow_factory=True)
    except (ValueError, TypeError, KeyError, RuntimeError) as error:
        raise ConfigError(f"model: {error}") from None


def describe_sizes(scenario: Any) -> str:
    """Image counts of a scenario's splits (what a run's length depends on)."""
    new = sum(len(s) for s in as_sources(scenario.new_train))
    old = sum(len(s) for s in as_sources(scenario.old_train))
    return (
        f"{new} new training images, {old} old, {len(scenario.val)} val, {len(scenario.test)} test"
    )


def resolve_jobs(config: DictConfig) -> int:
    """How many processes of ``threads`` threads run side by side (see experiments.parallel)."""
    try:
        check_thread_count(config.threads)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    multi = several_devices(config)
    if config.jobs == "auto":
        return default_jobs(str(config.train.accelerator), multi, config.threads)
    if not isinstance(config.jobs, int) or isinstance(config.jobs, bool) or config.jobs < 1:
        raise ConfigError(f"jobs: expected 'auto' or an integer >= 1, got {config.jobs!r}")
    if config.jobs > 1 and multi:
        raise ConfigError("jobs: several jobs and several devices per run do not mix; set jobs=1")
    return config.jobs


def run_experiment(config: DictConfig) -> Any:
    """Run the grid; returns the results frame. Drawn scenes are kept beside the old models
    (``cache_dir/scenes``): parallel jobs and later runs read them instead of drawing them."""
    with using_scene_cache(Path(config.cache_dir) / "scenes"):
        return _checked_run(config)


def _checked_run(config: DictConfig) -> Any:
    out = Path(config.output)
    writes = is_main_process()
    check_devices(config)
    try:
        import_modules(config)
        entries, overrides = plain(config.strategies), plain(config.strategy_overrides)
        runs = strategy_runs(entries, overrides)
        # What a folder from before strategies.yaml ran: a resume of one is checked against it.
        before_record = record_before_replay_defaults(entries, overrides) if config.resume else None
    except ValueError as error:
        raise ConfigError(f"strategies: {error}") from None
    check_train_settings(config, runs)
    check_model(config)
    jobs = resolve_jobs(config)
    configs = scenario_configs(config)
    steps = {}
    for name, scenario_cfg in configs.items():
        try:
            steps[name] = build_scenarios(scenario_cfg)
        except DatasetError:
            raise
        except ValueError as error:
            raise ConfigError(str(error)) from None
    for scenarios in steps.values():
        for scenario in scenarios:
            log.info("%s: %s", scenario.name, describe_sizes(scenario))
    # Only now, with the config, strategies and data checked, is the output folder touched.
    if not writes:  # a DDP process the launcher started: it follows the same runs, writes nothing
        return _run(config, out, steps, configs, runs, jobs, writes, finished_rows(out)
                    if config.resume else [])  # fmt: skip
    with OutputLock(out):
        previous = prepare_output(config, out)
        write_strategies(out, runs, bool(config.resume), before_record)
        write_text(out / "config.yaml", OmegaConf.to_yaml(config, resolve=True), "the config")
        write_environment(out / ENVIRONMENT, run_threads(config, jobs))
        return _run(config, out, steps, configs, runs, jobs, writes, previous)


def _run(config, out, steps, configs, runs, jobs, writes, previous) -> Any:
    """The grid of a validated experiment whose output folder is claimed."""
    rows, started = list(previous), time.time()
    for note in (resumed_precision_note(rows, config, runs), resumed_threads_note(rows, config)):
        if note:
            log.warning(note)
    finished = {RunKey.of_row(r) for r in rows}
    total = sum(len(s) for s in steps.values()) * len(config.seeds) * len(runs)
    done = 0

    def progress(scenario: Any, label: str, seed: int) -> None:
        nonlocal done
        done += 1
        elapsed = time.time() - started
        print(f"[{done}/{total}] {scenario} | {label} | seed {seed} ({elapsed:.0f} s elapsed)",
              flush=True)  # fmt: skip

    # Rows in the grid's order (scenario, seed, strategy), whichever job finished first.
    grid = [
        run.key(scenario.name, seed)
        for name in configs for seed in config.seeds for run in runs for scenario in steps[name]
    ]  # fmt: skip
    order = {key: index for index, key in enumerate(grid)}

    def add(new_rows: list[dict]) -> None:
        rows.extend(new_rows)
        rows.sort(key=lambda row: order.get(RunKey.of_row(row), len(order)))
        if writes and new_rows:
            write_results(out, rows)

    if jobs == 1:
        with pinned_threads(config, jobs):
            _run_here(config, out, steps, configs, runs, writes, finished, progress, add)
    else:
        job = job_config(config, runs)
        old_text = OmegaConf.to_yaml(job, resolve=True)
        # The old models are (re)trained in the first phase; the chains only load them.
        job.retrain_old = False
        text = OmegaConf.to_yaml(job, resolve=True)
        keys = [tuple(vars(k).values()) for k in finished]
        chains = []
        for name in configs:
            for seed in config.seeds:
                for run in runs:
                    if all(run.key(s.name, seed) in finished for s in steps[name]):
                        for scenario in steps[name]:  # --resume: nothing left to do
                            progress(scenario.name, run.label, seed)
                            print("  finished before: kept", flush=True)
                    else:
                        chains.append((text, name, seed, run.label, keys))
        # Longest first (stable: the grid's order among equals), so the last runs are short.
        cost = {run.label: expected_cost(config, run) for run in runs}
        chains.sort(key=lambda chain: -cost[chain[3]])
        fixed = config.old_model_seed  # one old model for every seed, when set
        old_seeds = [seed if fixed is None else int(fixed) for _, _, seed, _, _ in chains]
        units = list(
            dict.fromkeys((old_text, c[1], s) for c, s in zip(chains, old_seeds, strict=True))
        )
        to_train: dict[tuple, tuple] = {}  # ("old", seed, cache key) -> the unit that trains it
        training: dict[tuple, tuple] = {}  # (scenario, seed) -> the task its chains wait for
        for unit in units:  # old models already cached or shipped: loaded here, no process
            _, name, seed = unit
            key = old_model_to_train(config, configs[name], steps[name][0], seed)
            if key is None:
                teacher = old_model(config, configs[name], steps[name][0], seed, out, writes)
                log_old_model(name, seed, teacher.scores)
                continue
            # Scenarios of one step 0 (a split and its sibling-rate variants) share the cached
            # old model: trained once, not once per scenario.
            training[(name, seed)] = ("old", seed, key)
            to_train.setdefault(("old", seed, key), unit)
        print(f"{len(to_train)} old model(s) to train, {len(chains)} run(s), {jobs} jobs",
              flush=True)  # fmt: skip
        # Old models first; a chain starts once its own old model exists, while other jobs go on.
        tasks = [Task(task, old_model_job, unit) for task, unit in to_train.items()]
        for chain, seed in zip(chains, old_seeds, strict=True):
            _, name, run_seed, label, _ = chain
            after = training.get((name, seed))
            tasks.append(Task(("run", name, run_seed, label), chain_job, chain, after))
        # The scenarios and where their drawn scenes are kept, once per worker.
        shared = (share_scenarios, (steps, scene_cache()))
        # closing: an error here (a full disk) stops the pool before the output lock is freed.
        finishing = run_parallel(tasks, jobs, *shared, threads=config.threads)
        with contextlib.closing(finishing):
            for task, result in finishing:
                if task.function is old_model_job:
                    _, name, seed = task.args
                    log_old_model(name, seed, result)
                    continue
                _, name, seed, label, _ = task.args
                for scenario in steps[name]:
                    progress(scenario.name, label, seed)
                add(result)
    frame = results_frame(rows)
    if writes:
        report(frame, config, out, time.time() - started)
    return frame


def run_threads(config: DictConfig, jobs: int) -> int | None:
    """The CPU threads every run computes with: ``threads`` in parallel jobs and in an
    in-process run on one CPU device; None (torch's own count) in-process on a GPU, where the
    count changes no result and one thread would only slow the CPU side (data, metrics), and
    with several devices, where Lightning's launcher sets each process's (cores / processes)."""
    if jobs > 1 or (not several_devices(config) and runs_on_cpu(config.train.accelerator)):
        return config.threads
    return None


def pinned_threads(config: DictConfig, jobs: int = 1) -> contextlib.AbstractContextManager:
    """Computing at :func:`run_threads`' count inside the block (nothing pinned where None)."""
    threads = run_threads(config, jobs)
    return contextlib.nullcontext() if threads is None else cpu_threads(threads)


def _run_here(config, out, steps, configs, runs, writes, finished, progress, add) -> None:
    """The grid in this process, one run after another (``jobs: 1``)."""
    for name, scenario_cfg in configs.items():
        for seed in config.seeds:
            teacher = old_model(config, scenario_cfg, steps[name][0], seed, out, writes)
            log_old_model(name, seed, teacher.scores)
            for run in runs:

                def step_started(scenario: Any, label: str = run.label, seed: int = seed):
                    progress(scenario.name, label, seed)

                strategy_chain(
                    config, steps[name], scenario_cfg, teacher, run, seed, out, writes,
                    finished, step_started, lambda row: add([row]),
                )  # fmt: skip


def job_config(config: DictConfig, runs: list) -> DictConfig:
    """The config a parallel job rebuilds the experiment from: ``imports`` also names the
    modules that registered the experiment's strategies, so that a fresh process knows them."""
    job = config.copy()
    modules = [strategy_module(run.registered) for run in runs]
    job.imports = list(dict.fromkeys([*config.imports, *modules]))
    return job


def log_old_model(name: str, seed: int, scores: dict) -> None:
    log.info("%s seed %d: old model mIoU %.3f (old val)", name, seed,
             scores.get("miou_all", float("nan")))  # fmt: skip


def resumed_precision_note(
    rows: list[dict[str, Any]], config: DictConfig, runs: list[StrategyRun]
) -> str | None:
    """A resumed experiment whose finished runs trained at a precision this machine will not use
    for the rest (precision ``auto`` resolves per machine): say so, since its rows would then
    mix precisions (results.csv records each run's)."""
    settings = [step_train_settings(config, run.name) for run in runs]
    now = {resolve_precision(s["precision"], s["accelerator"]) for s in settings}
    before = sorted({r["precision"] for r in rows if isinstance(r.get("precision"), str)} - now)
    if not before:
        return None
    return (
        f"resume: finished runs trained at {before}; the rest train at {sorted(now)} here "
        f"(train.precision {config.train.precision!r}); results.csv records each run's"
    )


def resumed_threads_note(rows: list[dict[str, Any]], config: DictConfig) -> str | None:
    """A resumed experiment whose finished runs computed at another thread count: its rows
    then mix bit patterns (the same distribution; results.csv records each run's count)."""
    before = sorted({int(r["threads"]) for r in rows if _is_count(r.get("threads"))})
    other = [count for count in before if count != config.threads]
    if not other:
        return None
    return (
        f"resume: finished runs computed with {other} thread(s); the rest with "
        f"{config.threads} (threads): the same experiment, other bits; results.csv records each "
        "run's"
    )


def _is_count(value: Any) -> bool:
    """A thread count read back from results.csv (a row written before it recorded one: NaN)."""
    return isinstance(value, int | float) and value == value and value >= 1


def report(frame: Any, config: DictConfig, out: Path, seconds: float) -> None:
    """summary.md, comparison.png and the printed table."""
    notes = [
        f"Profile `{config.profile}`, model `{plain(config.model)}`, "
        f"{seconds:.0f} s wall on this machine; trained on {trained_on(frame)}.",
        "",
    ]
    write_summary(frame, out / "summary.md", f"Experiment {config.name}", notes)
    plot_comparison(frame, out / "comparison.png")
    print()
    for scenario_name, part in frame.groupby("scenario", sort=False):
        print(f"{scenario_name}:")
        print(markdown(summary_table(part, scenario_columns(part))))
        print()
    for flag in oracle_flags(frame):
        print(flag)
    log_summary_run(config, out, frame)
    print(f"results: {out / 'results.csv'}  summary: {out / 'summary.md'}")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    args, overrides = parse_args(argv)
    try:
        config = load_config(args.config, overrides)
        if config.wandb == "offline":
            os.environ["WANDB_MODE"] = "offline"
        if config.wandb != "online":  # online runs print their link (experiments.tracking)
            os.environ.setdefault("WANDB_SILENT", "true")
        run_experiment(config)
    except (ConfigError, DatasetError, NonFiniteLossError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a read-only folder, a full disk: one line naming the file
        where = f" {error.filename}" if getattr(error, "filename", None) else ""
        reason = error.strerror or str(error)
        print(f"error: {error if not where else f'cannot write{where}: {reason}'}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
