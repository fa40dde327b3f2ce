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
    parser.add_argument("--overwrite", action="store_true", help="replace existing results")
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
    if args.overwrite:
        overrides["overwrite"] = True
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
    if (out / "results.csv").exists() and not config.overwrite:
        raise ConfigError(
            f"output: {out} already holds results.csv; pass --overwrite to replace it or "
            "--output to write elsewhere"
        )
    if config.overwrite and (out / "runs").exists():
        shutil.rmtree(out / "runs")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(config, resolve=True))
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
    rows, done, started = [], 0, time.time()
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
                    row, model = _run_strategy(
                        config, scenario, scenario_cfg, teacher, model, name, strategy, seed, out
                    )
                    rows.append(row)
                    # After every run, atomically: a kill never leaves half a table.
                    table = results_frame(rows).to_csv(index=False).encode()
                    write_atomic(out / "results.csv", lambda f, t=table: f.write(t))
    frame = results_frame(rows)
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
    result = train_step(
        scenario,
        start_model,
        spec,
        strategy,
        TrainConfig(**train),
        seed,
        run_dir,
        loggers,
    )
    _finish(loggers)
    save_model_file(
        out / "models" / scenario.name / f"{name}-seed{seed}.pt",
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
