"""The two kinds of run of an experiment: the old model (step 0, cached) and one strategy's
step from a start model, each with its loggers, its model file and its results row."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from experiments.cache import cache_key, cache_payload, find_old_model, model_file_name
from experiments.grid import StrategyRun
from experiments.outputs import model_path, run_dir
from experiments.tracking import finish, make_loggers
from incremental.checkpoint_io import checkpoint_state
from incremental.data.scenario import Scenario
from incremental.devices import describe_environment
from incremental.models import load_model_file, save_model_file
from incremental.workflow import StepResult, TrainConfig, train_old_model, train_step

log = logging.getLogger("experiments.run")


def plain(config: Any) -> Any:
    """An OmegaConf node as plain Python data (plain data as it is)."""
    if OmegaConf.is_config(config):
        return OmegaConf.to_container(config, resolve=True)
    return config


def step_train_settings(config: DictConfig, strategy: str) -> dict[str, Any]:
    """The loop settings of a strategy's step: ``train``, then ``strategy_train.<strategy>``."""
    return {**plain(config.train), **plain(config.strategy_train.get(strategy, {}))}


def expected_cost(config: DictConfig, run: StrategyRun) -> float:
    """A run's training cost relative to a plain run, known before it trains: its epoch
    limit times its epoch size (replaying adds ``old_share`` of old samples to each epoch).
    Parallel jobs start the costly runs first, so that no long run is left alone at the end
    (the oracle stops early, so this is an upper bound for it)."""
    epochs = float(step_train_settings(config, run.name).get("epochs") or 1)
    strategy = run.strategy
    return epochs / (1.0 - strategy.old_share) if strategy.replay else epochs


def old_model_payload(
    config: DictConfig, scenario_cfg: dict, fashion_mnist: str | None, seed: int
) -> dict[str, Any]:
    """What decides the old model of (scenario, seed) under ``config``: its cache hash is made
    of this, and a shipped model file records it (``metadata["cache"]``)."""
    return cache_payload(
        scenario_cfg, fashion_mnist, plain(config.model), plain(config.train_old), seed
    )


def lookup_old_model(
    config: DictConfig, scenario_cfg: dict, scenario: Scenario, seed: int
) -> tuple[int, dict[str, Any], str, Path | None]:
    """(the seed whose old model it is, what decides it, its cache key, the cached or shipped
    file to use or None: to train) for a scenario without a given old model."""
    if config.old_model_seed is not None:
        seed = int(config.old_model_seed)
    payload = old_model_payload(config, scenario_cfg, scenario.info.get("fashion_mnist"), seed)
    key = cache_key(payload)
    found = None if config.retrain_old else find_old_model(config.cache_dir, seed, key)
    return seed, payload, key, found


def old_model_to_train(
    config: DictConfig, scenario_cfg: dict, scenario: Scenario, seed: int
) -> str | None:
    """The cache key of the old model :func:`old_model` would train for (scenario, seed); None
    where it would use one (the user's, or a cached or shipped file)."""
    if scenario.teacher is not None:
        return None
    _, _, key, found = lookup_old_model(config, scenario_cfg, scenario, seed)
    return key if found is None else None


def resume_checkpoint(config: DictConfig, directory: Path, tag: str | None = None) -> str | None:
    """With ``--resume``, the last checkpoint a killed run left in ``directory`` (said so);
    None otherwise.

    Of several ``last*.ckpt`` (a run started again from scratch writes ``last-v1.ckpt`` beside
    the first), the one furthest on; with ``tag``, only checkpoints written with that
    :class:`~incremental.checkpoint_io.CheckpointTag` (an old model's cache key: a checkpoint
    of other settings left in the folder is not resumed, and said so). A checkpoint whose
    folder was moved is followed there by :class:`~incremental.checkpoint_io.FollowMovedFolder`.
    """
    if not config.resume:
        return None
    found = []
    for path in sorted((directory / "checkpoints").glob("last*.ckpt")):
        found_tag, step = checkpoint_state(path)
        if tag is not None and found_tag != tag:
            why = "other settings" if found_tag else "no settings tag (an older version's)"
            print(f"  not resuming {path}: written under {why}", flush=True)
            continue
        found.append((step, path))
    if not found:
        return None
    _, last = max(found)
    print(f"  resuming from {last}", flush=True)
    return str(last)


def old_model(
    config: DictConfig,
    scenario_cfg: dict,
    scenario: Scenario,
    seed: int,
    out: Path,
    writes: bool,
) -> StepResult:
    """The old model: the user's (``scenario.teacher``), or the cached (or shipped) one of
    (scenario, model, step-0 settings, seed), trained if absent or ``retrain_old`` (and cached
    when this process ``writes``). With ``old_model_seed`` set, every seed's step starts from
    that seed's old model."""
    if scenario.teacher is not None:
        return StepResult(scenario.teacher.model, {}, None, metadata={"id": "given"})
    seed, payload, key, found = lookup_old_model(config, scenario_cfg, scenario, seed)
    train = plain(config.train_old)
    if found is not None:
        cached = load_model_file(found)
        log.info("old model: %s", found)
        scores = dict(cached.metadata.get("scores", {}))
        return StepResult(cached.build(), scores, None, metadata={"id": key, "file": str(found)})
    directory = run_dir(out, scenario.name, "old-model", seed)
    loggers = make_loggers(
        config,
        directory,
        f"{scenario.name}/old-model/seed{seed}",
        [scenario.name, "old-model", f"seed{seed}"],
        {
            "scenario": scenario.name,
            "seed": seed,
            "model": plain(config.model),
            "old_model": key,
            "train": train,
            "scenario_config": scenario_cfg,
        },
        job_type="old-model",
    )
    result = train_old_model(
        scenario,
        plain(config.model),
        TrainConfig(**train),
        seed,
        directory,
        loggers,
        # --retrain-old trains from the first epoch: a finished run's checkpoint carries the
        # same key and would only be tested again.
        resume_from=None if config.retrain_old else resume_checkpoint(config, directory, key),
        checkpoint_tag=key,
    )
    finish(loggers)
    result.metadata["id"] = key
    if writes:
        save_model_file(
            Path(config.cache_dir) / model_file_name(scenario.name, seed, key),
            result.model,
            plain(config.model),
            scenario.transition.old_classes,
            metadata={
                "scores": result.scores,
                "scenario": scenario.name,
                "seed": seed,
                "device": result.device,
                "precision": result.precision,
                "cache": payload,
                # Not in the hash: a CPU, torch or thread count of its own, or the memory
                # layout, gives other bits of the same model (README, "Reproducibility").
                "environment": describe_environment(),
                "channels_last": train.get("channels_last"),
            },
        )
    return result


def strategy_step(
    config: DictConfig,
    scenario: Scenario,
    scenario_cfg: dict,
    teacher: StepResult,
    start_model: Any,
    run: StrategyRun,
    seed: int,
    out: Path,
    writes: bool,
) -> tuple[dict[str, Any], Any]:
    """One step of one strategy from ``start_model``; returns its results row and model."""
    strategy = run.strategy
    directory = run_dir(out, scenario.name, run.label, seed)
    # A given old model decides the network; otherwise the experiment's model config does.
    spec = scenario.teacher.spec if scenario.teacher is not None else plain(config.model)
    train = step_train_settings(config, strategy.name)
    tags = [scenario.name, strategy.name, f"seed{seed}"] + (["replay"] if strategy.replay else [])
    loggers = make_loggers(
        config,
        directory,
        f"{scenario.name}/{run.label}/seed{seed}",
        tags,
        {
            "strategy_name": strategy.name,
            "strategy_label": run.label,
            "replay": strategy.replay,
            "seed": seed,
            "scenario": scenario.name,
            "model": spec,
            "old_model": teacher.metadata.get("id"),
            "strategy": strategy.describe(),
            "train": train,
            "scenario_config": scenario_cfg,
        },
        job_type="step",
    )
    started = time.time()
    result = train_step(
        scenario,
        start_model,
        spec,
        strategy,
        TrainConfig(**train),
        seed,
        directory,
        loggers,
        resume_from=resume_checkpoint(config, directory),
    )
    finish(loggers)
    if writes:
        save_model_file(
            model_path(out, scenario.name, run.label, seed),
            result.model,
            spec,
            scenario.transition.student_classes,
            parents=scenario.transition.parent_classes(),
            metadata={
                "scenario": scenario.name,
                "strategy": run.label,
                "seed": seed,
                "scores": result.scores,
                # Where each created class came from (the audit command reads it).
                "transition": scenario.transition.to_config(),
            },
        )
    row = {
        "scenario": scenario.name,
        "strategy": strategy.name,
        "seed": seed,
        "replay": strategy.replay,
        **result.scores,
        "old_model_seed": seed if config.old_model_seed is None else config.old_model_seed,
        "old_model_miou": teacher.scores.get("miou_all"),
        "old_model_test_miou": teacher.scores.get("test_scenes/miou_all"),
        "train_seconds": round(time.time() - started, 1),
        "device": result.device,
        "precision": result.precision,
        "threads": torch.get_num_threads(),
        **{f"scenario/{k}": v for k, v in scenario.info.items()},
    }
    return row, result.model


def strategy_chain(
    config: DictConfig,
    scenarios: list[Scenario],
    scenario_cfg: dict,
    teacher: StepResult,
    run: StrategyRun,
    seed: int,
    out: Path,
    writes: bool,
    finished: set,
    progress: Callable[[Scenario], None] = lambda scenario: None,
    on_row: Callable[[dict[str, Any]], None] = lambda row: None,
) -> list[dict[str, Any]]:
    """One strategy through every step of a scenario (a multi-step task chains them, each
    from the previous step's model); returns the new results rows, each also handed to
    ``on_row`` as soon as its step ends. Steps whose key is in ``finished`` (--resume) are
    skipped, their saved model carried to the next step."""
    rows = []
    model = teacher.model
    for scenario in scenarios:
        progress(scenario)
        if run.key(scenario.name, seed) in finished:
            model = load_model_file(model_path(out, scenario.name, run.label, seed)).build(
                allow_factory=True
            )
            print("  finished before: kept", flush=True)
            continue
        row, model = strategy_step(
            config, scenario, scenario_cfg, teacher, model, run, seed, out, writes
        )
        rows.append(row)
        on_row(row)
    return rows
