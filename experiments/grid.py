"""The run grid of an experiment: scenario x strategy x seed, one results row each."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from incremental.strategies import Strategy, create_strategy, parse_strategy_name


@dataclass(frozen=True)
class RunKey:
    """What identifies a results row.

    Attributes:
        scenario: the step's scenario name (each step of a multi-step task has its own).
        strategy: the strategy's registered name, without ``+replay``.
        replay: whether the old images were mixed in.
        seed: the training seed.
    """

    scenario: str
    strategy: str
    replay: bool
    seed: int

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> RunKey:
        """The key of a results.csv row (values as pandas reads them)."""
        replay = row["replay"]
        if isinstance(replay, str):  # a column pandas could not type (mixed values)
            replay = replay.strip().lower() == "true"
        return cls(str(row["scenario"]), str(row["strategy"]), bool(replay), int(row["seed"]))


@dataclass(frozen=True)
class StrategyRun:
    """A strategy as the experiment names it (``candidate-sets+replay``) and as it trains."""

    label: str
    strategy: Strategy

    @property
    def name(self) -> str:
        return self.strategy.name

    def key(self, scenario: str, seed: int) -> RunKey:
        return RunKey(scenario, self.strategy.name, self.strategy.replay, seed)


def strategy_runs(
    names: list[str], overrides: Mapping[str, Mapping[str, Any]]
) -> list[StrategyRun]:
    """The experiment's strategies with their overrides (per base name: ``candidate-sets``'s
    apply to ``candidate-sets+replay`` too).

    Raises:
        ValueError: an unknown name or setting, naming it.
    """
    for base in overrides:
        parse_strategy_name(base)  # a typo here would silently leave a preset unchanged
    runs = []
    for label in names:
        base, _ = parse_strategy_name(label)
        runs.append(StrategyRun(label, create_strategy(label, overrides.get(base))))
    return runs
