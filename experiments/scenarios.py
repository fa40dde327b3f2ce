"""Build a scenario's datasets from its config (``kind`` picks the builder)."""

from __future__ import annotations

import inspect
from typing import Any

from experiments.config import SCENARIO_KINDS, ConfigError
from incremental.data.fashion_scenario import FashionScenarioConfig, build_fashion_scenario
from incremental.data.folder import DatasetError
from incremental.data.folder_scenario import build_folder_scenario
from incremental.data.paper_scenario import build_paper_scenarios
from incremental.data.scenario import Scenario


def _check_keys(config: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise ConfigError(
            f"scenario {config.get('name')!r}: unknown key(s) {unknown}; allowed: {sorted(allowed)}"
        )


def build_scenario(config: dict[str, Any]) -> Scenario:
    """The scenario of a one-step config (every Fashion scenario, two-step paper tasks)."""
    scenarios = build_scenarios(config)
    if len(scenarios) != 1:
        raise ConfigError(f"scenario {config.get('name')!r} has {len(scenarios)} steps")
    return scenarios[0]


def build_scenarios(config: dict[str, Any]) -> list[Scenario]:
    """One scenario per incremental step: ``kind: fashion`` -> the embedded Fashion scenes
    (one step); ``kind: paper`` -> VOC / ADE20K tasks (one scenario per step after step 0);
    ``kind: folders`` -> the user's dataset folders and optionally their trained model (one
    step; see :mod:`incremental.data.folder_scenario`)."""
    config = dict(config)
    kind = config.pop("kind", None)
    try:
        if kind == "fashion":
            _check_keys(config, set(FashionScenarioConfig.__dataclass_fields__))
            return [build_fashion_scenario(FashionScenarioConfig(**config))]
        if kind == "paper":
            _check_keys(config, set(inspect.signature(build_paper_scenarios).parameters))
            return build_paper_scenarios(**config)
        if kind == "folders":
            try:
                return [build_folder_scenario(config)]
            except ValueError as error:
                if isinstance(error, DatasetError):
                    raise
                raise ConfigError(str(error)) from None
    except TypeError as error:  # a missing required key
        raise ConfigError(f"scenario {config.get('name')!r}: {error}") from None
    raise ConfigError(
        f"scenario {config.get('name')!r}: unknown kind {kind!r}; known: {list(SCENARIO_KINDS)}"
    )
