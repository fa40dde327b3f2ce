"""The work of one parallel job, rebuilt from the experiment's resolved config.

A job gets the config as YAML text and names (scenario, seed, strategy label): it imports the
experiment's modules, rebuilds the scenarios and strategies (deterministic from the config),
and runs; the main process collects what it returns and writes the outputs. The scenarios the
main process built reach each worker once, when it starts (:func:`share_scenarios`), with the
scene cache folder: a Fashion scenario's scenes are drawn by the first process that reads them
and read back from the cache by the others (drawing the quick profile's scenes takes 10-13 s a
scenario). A worker builds, and keeps for its next jobs, only the scenarios it was not given.
"""

from __future__ import annotations

import functools
import importlib
import logging
import warnings
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments.config import scenario_configs
from experiments.grid import RunKey, strategy_runs
from experiments.steps import old_model, plain, strategy_chain
from incremental.data import build_scenarios
from incremental.data.fashion.streams import set_scene_cache


def import_modules(config: DictConfig) -> None:
    """The experiment's ``imports`` (modules that register strategies, for instance)."""
    for name in config.imports:
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise ValueError(f"imports: cannot import {name!r} ({error})") from None


def _restore(config_yaml: str) -> DictConfig:
    """The config in a job: quiet (no progress bars interleaving), its modules imported."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    config = OmegaConf.create(config_yaml)
    config.train.progress_bar = config.train_old.progress_bar = False
    import_modules(config)
    return config


#: Scenarios built by the main process, by name (set in each worker when it starts).
_SHARED: dict[str, list] = {}


def share_scenarios(steps: dict[str, list], scene_folder: Path | None) -> None:
    """Worker initializer: the main process's built scenarios (its steps, by scenario name) and
    its scene cache folder."""
    set_scene_cache(scene_folder)
    _SHARED.update(steps)


@functools.lru_cache(maxsize=4)
def _scenarios(config_yaml: str, scenario: str) -> tuple[dict, list]:
    """(the scenario's config, its steps): those the main process shared, else built once per
    worker process and config."""
    scenario_cfg = scenario_configs(OmegaConf.create(config_yaml))[scenario]
    if scenario in _SHARED:
        return scenario_cfg, _SHARED[scenario]
    return scenario_cfg, build_scenarios(scenario_cfg)


def old_model_job(config_yaml: str, scenario: str, seed: int) -> dict[str, float]:
    """Train (or find) the old model of (scenario, seed); it lands in the cache. Returns its
    scores."""
    config = _restore(config_yaml)
    scenario_cfg, scenarios = _scenarios(config_yaml, scenario)
    first = scenarios[0]
    result = old_model(config, scenario_cfg, first, seed, Path(config.output), writes=True)
    return result.scores


def chain_job(
    config_yaml: str, scenario: str, seed: int, label: str, finished: list[tuple]
) -> list[dict[str, Any]]:
    """One strategy through every step of (scenario, seed), from the cached old model."""
    config = _restore(config_yaml)
    scenario_cfg, scenarios = _scenarios(config_yaml, scenario)
    out = Path(config.output)
    teacher = old_model(config, scenario_cfg, scenarios[0], seed, out, writes=True)
    (run,) = [
        r
        for r in strategy_runs(plain(config.strategies), plain(config.strategy_overrides))
        if r.label == label
    ]
    keys = {RunKey(*key) for key in finished}
    return strategy_chain(config, scenarios, scenario_cfg, teacher, run, seed, out, True, keys)
