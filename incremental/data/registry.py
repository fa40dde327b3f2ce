"""Scenarios from configuration: ``kind`` picks the family that builds them.

``kind: fashion`` -> the embedded Fashion scenes (one step); ``kind: paper`` -> VOC / ADE20K
tasks (one scenario per step after step 0); ``kind: folders`` -> your dataset folders and
optionally your trained model (one step). Errors are ``ValueError``s naming the scenario and
key, or :class:`~incremental.data.core.DatasetError` listing a folder's problems.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from incremental.data.scenario import Scenario


def _fashion(config: dict[str, Any]) -> list[Scenario]:
    from incremental.data.fashion.scenario import FashionScenarioConfig, build_fashion_scenario

    _check_keys(config, set(FashionScenarioConfig.__dataclass_fields__))
    return [build_fashion_scenario(FashionScenarioConfig(**config))]


def _paper(config: dict[str, Any]) -> list[Scenario]:
    from incremental.data.paper.scenario import build_paper_scenarios

    _check_keys(config, set(inspect.signature(build_paper_scenarios).parameters))
    return build_paper_scenarios(**config)


def _folders(config: dict[str, Any]) -> list[Scenario]:
    from incremental.data.folders.scenario import build_folder_scenario

    return [build_folder_scenario(config)]


#: Scenario kinds (``kind:`` of a scenario config) and their builders.
BUILDERS: dict[str, Callable[[dict[str, Any]], list[Scenario]]] = {
    "fashion": _fashion,
    "paper": _paper,
    "folders": _folders,
}
SCENARIO_KINDS = tuple(BUILDERS)


def _check_keys(config: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise ValueError(
            f"scenario {config.get('name')!r}: unknown key(s) {unknown}; allowed: {sorted(allowed)}"
        )


def build_scenarios(config: dict[str, Any]) -> list[Scenario]:
    """One scenario per incremental step of the scenario ``config`` describes."""
    config = dict(config)
    kind = config.pop("kind", None)
    if kind not in BUILDERS:
        raise ValueError(
            f"scenario {config.get('name')!r}: unknown kind {kind!r}; known: {list(SCENARIO_KINDS)}"
        )
    try:
        return BUILDERS[kind](config)
    except TypeError as error:  # a missing required key
        raise ValueError(f"scenario {config.get('name')!r}: {error}") from None


def build_scenario(config: dict[str, Any]) -> Scenario:
    """The scenario of a one-step config (every Fashion scenario, two-step paper tasks)."""
    scenarios = build_scenarios(config)
    if len(scenarios) != 1:
        raise ValueError(f"scenario {config.get('name')!r} has {len(scenarios)} steps")
    return scenarios[0]
