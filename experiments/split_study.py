"""One split scenario built as the runner builds it (its profile's sizes, the shared scene
cache), for the split diagnostics in ``benchmarks/`` (``split_features``,
``split_operating_point``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from omegaconf import DictConfig

from experiments.config import load_config, scenario_configs
from incremental.data import Scenario, build_scenarios
from incremental.data.fashion.streams import using_scene_cache
from incremental.labels import Split
from incremental.models import ModelFile, load_model_file


@contextmanager
def split_scenario(
    name: str, fail: Callable[[str], NoReturn], profile: str | None = None
) -> Iterator[tuple[DictConfig, dict, Scenario, Split]]:
    """(config, scenario config, first step, its one split of one child) of the scenario
    ``name`` (a name or YAML path) under ``profile`` (default: the default profile's). Its
    scenes are read from and written to the runner's scene cache inside the block (they are
    drawn on first use). A scenario without exactly one split of one child calls ``fail`` with
    the reason (a CLI's ``parser.error``)."""
    overrides: dict = {"scenarios": [name]}
    if profile is not None:
        overrides["profile"] = profile
    config = load_config(overrides=overrides)
    (scenario_cfg,) = scenario_configs(config).values()
    with using_scene_cache(Path(config.cache_dir) / "scenes"):
        scenario = build_scenarios(scenario_cfg)[0]
        try:
            split = scenario.transition.single_split()
        except ValueError as error:
            fail(f"{scenario.name}: {error}")
        yield config, scenario_cfg, scenario, split


def read_model_files(paths: list[Path], fail: Callable[[str], NoReturn]) -> list[ModelFile]:
    """Every model file of ``paths`` read (``load_model_file``), before any scene is drawn: a
    missing, foreign or damaged file calls ``fail`` with its reason, which names the file."""
    models = []
    for path in paths:
        try:
            models.append(load_model_file(path))
        except (OSError, ValueError) as error:
            fail(str(error))
    return models
