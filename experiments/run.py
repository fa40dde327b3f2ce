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
import hashlib
import json
import logging
import os
import shutil
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments.config import ConfigError, load_config, load_scenario_config
from experiments.report import (
    markdown,
    plot_comparison,
    results_frame,
    summary_table,
    write_summary,
)
from experiments.scenarios import build_scenarios
from incremental.data.folder import DatasetError
from incremental.data.scenario import Scenario
from incremental.io import write_atomic
from incremental.models import load_model_file, save_model_file
from incremental.strategies import resolve_strategy
from incremental.workflow import StepResult, TrainConfig, train_old_model, train_step

log = logging.getLogger("experiments.run")

#: Bump when a change makes cached old models stale.
CACHE_VERSION = 1


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, dict[str, Any]]:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("config", nargs="?", help="experiment YAML (default: the embedded default)")
    parser.add_argument(
        "--strategies", help="comma-separated strategy names, e.g. mib,candidate-sets+replay"
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
    for flag in ("overwrite", "resume"):
        if getattr(args, flag):
            overrides[flag] = True
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


def _hash(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _train_dict(config: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(config, resolve=True)


def _loggers(config: DictConfig, run_dir: Path, name: str, tags: list[str], extra: dict) -> list:
    from lightning.pytorch.loggers import CSVLogger

    loggers: list = [CSVLogger(run_dir, name="logs")]
    if config.wandb != "disabled":
        from lightning.pytorch.loggers import WandbLogger

        loggers.append(
            WandbLogger(
                project=config.wandb_project,
                name=name,
                group=config.name,
                tags=tags,
                save_dir=str(run_dir),
                mode=config.wandb,
                config=extra,
            )
        )
    return loggers


def _finish(loggers: list) -> None:
    """Close W&B runs so the next run starts its own."""
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger":
            logger.experiment.finish()


def old_model(
    config: DictConfig, scenario_cfg: dict, scenario: Scenario, seed: int, out: Path
) -> StepResult:
    """The old model: the user's (``scenario.teacher``), or the cached one of (scenario, model,
    step-0 settings, seed), trained if absent."""
    if scenario.teacher is not None:
        return StepResult(scenario.teacher.model, {}, None)
    train = _train_dict(config.train_old)
    semantic = {k: v for k, v in train.items() if k not in ("progress_bar", "num_workers")}
    key = _hash(
        {
            "version": CACHE_VERSION,
            "scenario": scenario_cfg,
            "fashion_mnist": scenario.info.get("fashion_mnist"),
            "model": _train_dict(config.model),
            "train": semantic,
            "seed": seed,
        }
    )
    path = Path(config.cache_dir) / f"old-{scenario.name}-seed{seed}-{key}.pt"
    if path.is_file():
        cached = load_model_file(path)
        log.info("old model: cached %s", path)
        return StepResult(cached.build(), dict(cached.metadata.get("scores", {})), None)
    run_dir = out / "runs" / scenario.name / "old-model" / f"seed{seed}"
    loggers = _loggers(
        config,
        run_dir,
        f"{scenario.name}/old-model/seed{seed}",
        [scenario.name, "old-model", f"seed{seed}"],
        {"train": train, "scenario": scenario_cfg},
    )
    result = train_old_model(
        scenario, _train_dict(config.model), TrainConfig(**train), seed, run_dir, loggers
    )
    _finish(loggers)
    if not MAIN_PROCESS:
        return result
    save_model_file(
        path,
        result.model,
        _train_dict(config.model),
        scenario.transition.old_classes,
        metadata={"scores": result.scores, "scenario": scenario.name, "seed": seed},
    )
    return result


def run_experiment(config: DictConfig) -> Any:
    """Run the grid; returns the results frame."""
    out = Path(config.output)
    _check_devices(config)
    if MAIN_PROCESS:
        previous = _prepare_output(config, out)
        (out / "config.yaml").write_text(OmegaConf.to_yaml(config, resolve=True))
    else:  # a DDP process the launcher started: it follows the same runs and writes nothing
        previous = _finished_rows(out) if config.resume else []
    strategies = {name: _strategy(config, name) for name in config.strategies}
    scenario_cfgs = {}
    for item in config.scenarios:
        scenario_cfg = load_scenario_config(item)
        overrides = config.scenario_overrides.get(scenario_cfg.get("kind"))
        if overrides:
            scenario_cfg = load_scenario_config(scenario_cfg, overrides)
        scenario_cfgs[scenario_cfg.get("name", str(item))] = scenario_cfg
    steps = {name: build_scenarios(cfg) for name, cfg in scenario_cfgs.items()}
    total = sum(len(s) for s in steps.values()) * len(config.seeds) * len(strategies)
    rows, done, started = list(previous), 0, time.time()
    finished = {_run_key(r["scenario"], r["strategy"], r["replay"], r["seed"]) for r in rows}
    for name_, scenario_cfg in scenario_cfgs.items():
        scenarios = steps[name_]
        for seed in config.seeds:
            teacher = old_model(config, scenario_cfg, scenarios[0], seed, out)
            log.info(
                "%s seed %d: old model mIoU %.3f (old val)",
                name_,
                seed,
                teacher.scores.get("miou_all", float("nan")),
            )
            for name, strategy in strategies.items():
                model = teacher.model  # each step starts from the previous step's model
                for scenario in scenarios:
                    done += 1
                    print(
                        f"[{done}/{total}] {scenario.name} | {name} | seed {seed} "
                        f"({time.time() - started:.0f} s elapsed)",
                        flush=True,
                    )
                    key = _run_key(scenario.name, name.partition("+")[0], strategy.replay, seed)
                    if key in finished:  # --resume: keep its row, chain from its model
                        model = load_model_file(_model_path(out, scenario, name, seed)).build(
                            allow_factory=True
                        )
                        print("  finished before: kept", flush=True)
                        continue
                    row, model = _run_strategy(
                        config, scenario, scenario_cfg, teacher, model, name, strategy, seed, out
                    )
                    rows.append(row)
                    if MAIN_PROCESS:  # after every run, atomically: never half a table
                        table = results_frame(rows).to_csv(index=False).encode()
                        write_atomic(out / "results.csv", lambda f, t=table: f.write(t))
    frame = results_frame(rows)
    if not MAIN_PROCESS:
        return frame
    notes = [
        f"Profile `{config.profile}`, model `{_train_dict(config.model)}`, "
        f"{time.time() - started:.0f} s wall on this machine.",
        "",
    ]
    write_summary(frame, out / "summary.md", f"Experiment {config.name}", notes)
    plot_comparison(frame, out / "comparison.png")
    print()
    for scenario_name, part in frame.groupby("scenario", sort=False):
        print(f"{scenario_name}:")
        print(markdown(summary_table(part)))
        print()
    print(f"results: {out / 'results.csv'}  summary: {out / 'summary.md'}")
    return frame


#: Output files of an experiment: what --overwrite replaces.
OUTPUTS = ("config.yaml", "results.csv", "summary.md", "comparison.png", "models", "runs")


def _prepare_output(config: DictConfig, out: Path) -> list[dict]:
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
        _check_same_config(OmegaConf.load(out / "config.yaml"), config, out)
        return _finished_rows(out)
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


def _finished_rows(out: Path) -> list[dict]:
    if not (out / "results.csv").exists():
        return []
    import pandas as pd

    return pd.read_csv(out / "results.csv").to_dict("records")


def _is_main_process() -> bool:
    """False in the extra processes of a multi-process run (Lightning's DDP launcher re-runs
    this command once per device; torchrun and SLURM start one per device and node)."""
    ranks = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")
    return all(int(os.environ.get(name, "0") or 0) == 0 for name in ranks)


#: Only the main process writes outputs, caches and prints the table.
MAIN_PROCESS = _is_main_process()

#: Settings that decide the processes of a run: step 0 and step 1 must agree, because every
#: process of a multi-process run replays the whole experiment, fit by fit.
DEVICE_KEYS = ("accelerator", "devices", "strategy", "num_nodes")


def _check_devices(config: DictConfig) -> None:
    differ = [k for k in DEVICE_KEYS if config.train_old[k] != config.train[k]]
    multi = config.train.devices not in (1, "1") or config.train.num_nodes != 1
    if differ and multi:
        raise ConfigError(
            f"train_old and train differ in {differ}: a multi-device experiment needs the same "
            f"{list(DEVICE_KEYS)} for both steps (set train_old.<key> too)"
        )


def _check_same_config(saved: DictConfig, config: DictConfig, out: Path) -> None:
    """A resumed experiment must be the same experiment: compare all but the flags."""
    flags = ("resume", "overwrite")
    old = {k: v for k, v in OmegaConf.to_container(saved, resolve=True).items() if k not in flags}
    new = {k: v for k, v in OmegaConf.to_container(config, resolve=True).items() if k not in flags}
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed:
        raise ConfigError(
            f"resume: the config differs from {out / 'config.yaml'} in {changed}; resume with "
            "the same settings, or start a new experiment with --output"
        )


def _run_key(scenario: str, strategy: str, replay: Any, seed: Any) -> tuple:
    return (str(scenario), str(strategy), str(replay).lower() == "true", int(seed))


def _model_path(out: Path, scenario: Scenario, name: str, seed: int) -> Path:
    return out / "models" / scenario.name / f"{name}-seed{seed}.pt"


def _strategy(config: DictConfig, name: str):
    overrides = config.strategy_overrides.get(name.partition("+")[0], {})
    try:
        return resolve_strategy(name, _train_dict(overrides) if overrides else None)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"strategies: {error}") from None


def _run_strategy(
    config, scenario, scenario_cfg, teacher, start_model, name, strategy, seed, out
) -> tuple[dict, Any]:
    """One step of one strategy from ``start_model``; returns its results row and model."""
    base = name.partition("+")[0]
    run_dir = out / "runs" / scenario.name / name / f"seed{seed}"
    # A given old model decides the network; otherwise the experiment's model config does.
    spec = scenario.teacher.spec if scenario.teacher is not None else _train_dict(config.model)
    train = _train_dict(config.train)
    loggers = _loggers(
        config,
        run_dir,
        f"{scenario.name}/{name}/seed{seed}",
        [scenario.name, base, f"seed{seed}"] + (["replay"] if strategy.replay else []),
        {"strategy": asdict(strategy), "train": train, "scenario": scenario_cfg},
    )
    started = time.time()
    last = run_dir / "checkpoints" / "last.ckpt"
    if config.resume and last.is_file():
        print(f"  resuming from {last}", flush=True)
    result = train_step(
        scenario,
        start_model,
        spec,
        strategy,
        TrainConfig(**train),
        seed,
        run_dir,
        loggers,
        resume_from=str(last) if config.resume and last.is_file() else None,
    )
    _finish(loggers)
    if MAIN_PROCESS:
        _save_step_model(out, scenario, name, seed, result, spec)
    row = {
        "scenario": scenario.name,
        "strategy": base,
        "seed": seed,
        "replay": strategy.replay,
        **result.scores,
        "old_model_miou": teacher.scores.get("miou_all"),
        "train_seconds": round(time.time() - started, 1),
        **{f"scenario/{k}": v for k, v in scenario.info.items()},
    }
    return row, result.model


def _save_step_model(out: Path, scenario: Scenario, name: str, seed: int, result, spec) -> None:
    save_model_file(
        _model_path(out, scenario, name, seed),
        result.model,
        spec,
        scenario.transition.student_classes,
        parents=scenario.transition.parent_classes(),
        metadata={
            "scenario": scenario.name,
            "strategy": name,
            "seed": seed,
            "scores": result.scores,
            # Where each created class came from (the audit command reads it).
            "transition": scenario.transition.to_config(),
        },
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    os.environ.setdefault("WANDB_SILENT", "true")
    args, overrides = parse_args(argv)
    try:
        config = load_config(args.config, overrides)
        if config.wandb == "offline":
            os.environ["WANDB_MODE"] = "offline"
        run_experiment(config)
    except (ConfigError, DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
