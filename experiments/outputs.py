"""An experiment's output folder: what it holds, --resume and --overwrite, results and models.

Layout: ``config.yaml`` (the exact resolved config), ``results.csv`` (one row per run,
rewritten atomically after each), ``summary.md``, ``comparison.png``,
``models/<scenario>/<strategy>-seed<N>.pt`` and ``runs/`` (checkpoints and logs).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments.config import ConfigError
from experiments.report import results_frame
from incremental.io import write_atomic

#: Output files of an experiment: what --overwrite replaces.
OUTPUTS = ("config.yaml", "results.csv", "summary.md", "comparison.png", "models", "runs")


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
    for name in existing:  # --overwrite, explicitly
        target = out / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return []


def finished_rows(out: Path) -> list[dict[str, Any]]:
    """The rows of ``out/results.csv`` (none if absent)."""
    if not (out / "results.csv").exists():
        return []
    import pandas as pd

    return pd.read_csv(out / "results.csv").to_dict("records")


def check_same_config(saved: DictConfig, config: DictConfig, out: Path) -> None:
    """A resumed experiment must be the same experiment: compare all but the flags."""
    flags = ("resume", "overwrite", "jobs", "retrain_old")
    old = {k: v for k, v in OmegaConf.to_container(saved, resolve=True).items() if k not in flags}
    new = {k: v for k, v in OmegaConf.to_container(config, resolve=True).items() if k not in flags}
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed:
        raise ConfigError(
            f"resume: the config differs from {out / 'config.yaml'} in {changed}; resume with "
            "the same settings, or start a new experiment with --output"
        )


def write_results(out: Path, rows: Sequence[dict[str, Any]]) -> None:
    """results.csv, atomically: an interrupted experiment never leaves half a table."""
    table = results_frame(rows).to_csv(index=False).encode()
    write_atomic(out / "results.csv", lambda f: f.write(table))


def model_path(out: Path, scenario: str, label: str, seed: int) -> Path:
    """Where the student of (scenario, strategy label, seed) is saved."""
    return out / "models" / scenario / f"{label}-seed{seed}.pt"


def run_dir(out: Path, scenario: str, label: str, seed: int) -> Path:
    """Checkpoints and logs of one run."""
    return out / "runs" / scenario / label / f"seed{seed}"
