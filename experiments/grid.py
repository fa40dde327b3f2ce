"""The run grid of an experiment: scenario x strategy x seed, one results row each."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
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
    #: the registered strategy it is made from (a variant's base).
    registered: str = ""

    @property
    def name(self) -> str:
        return self.strategy.name

    def key(self, scenario: str, seed: int) -> RunKey:
        return RunKey(scenario, self.strategy.name, self.strategy.replay, seed)


def strategy_runs(
    entries: list[Any],
    overrides: Mapping[str, Mapping[str, Any]],
    with_replay_defaults: bool = True,
) -> list[StrategyRun]:
    """The experiment's strategies with their overrides (per base name: ``candidate-sets``'s
    apply to ``candidate-sets+replay`` too); ``with_replay_defaults=False`` as
    :func:`~incremental.strategies.create_strategy` takes it.

    An entry is a name (``candidate-sets+replay``) or a named variant, a mapping ``{name:
    cs-consistent, strategy: candidate-sets, settings: {distillation: label_consistent}}``:
    that strategy with those settings (over ``strategy_overrides``), reported as ``name``.

    Raises:
        ValueError: an unknown name, key or setting, naming it.
    """
    for base in overrides:
        _, replay = parse_strategy_name(base)  # a typo would silently leave a preset unchanged
        if replay:  # looked up by base name only: the entry would silently change nothing
            raise ValueError(
                f"strategy_overrides: {base!r} is not a strategy's base name; overrides apply "
                f"to {base.partition('+')[0]!r} with and without replay. For replay runs only, "
                "use a variant: {name: ..., strategy: " + base + ", settings: {...}}"
            )
    runs = []
    for entry in entries:
        if isinstance(entry, Mapping):
            unknown = sorted(set(entry) - {"name", "strategy", "settings"})
            if unknown or "name" not in entry or "strategy" not in entry:
                raise ValueError(
                    f"a strategy variant needs 'name' and 'strategy' (and may have 'settings'), "
                    f"got {dict(entry)}"
                )
            name, label = str(entry["name"]), str(entry["strategy"])
            if "+" in name:
                raise ValueError(f"variant {name!r}: use strategy: <name>+replay for replay")
            base, replay = parse_strategy_name(label)
            settings = {**dict(overrides.get(base) or {}), **dict(entry.get("settings") or {})}
            strategy = replace(create_strategy(label, settings, with_replay_defaults), name=name)
            label = name + ("+replay" if strategy.replay else "")
            runs.append(StrategyRun(label, strategy, base))
            continue
        base, _ = parse_strategy_name(str(entry))
        strategy = create_strategy(str(entry), overrides.get(base), with_replay_defaults)
        runs.append(StrategyRun(str(entry), strategy, base))
    labels = [r.label for r in runs]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(f"strategies named more than once: {repeated}")
    # Two labels can still be one run (results.csv's name and replay), e.g. `joint` and
    # `joint+replay`, or `cs` with `replay: true` beside `cs+replay`: it would train twice.
    by_run: dict[tuple[str, bool], list[str]] = {}
    for run in runs:
        by_run.setdefault((run.strategy.name, bool(run.strategy.replay)), []).append(run.label)
    same = [names for names in by_run.values() if len(names) > 1]
    if same:
        raise ValueError(
            f"strategies {same[0]} are one run (the same name and replay in results.csv): name "
            "it once"
        )
    return runs
