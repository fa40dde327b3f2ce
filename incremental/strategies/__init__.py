"""Strategies as compositions of candidate transforms and loss terms (DESIGN §3).

A :class:`Strategy` says how labels are read, how the head starts, which transforms narrow
the candidate sets and which loss terms are summed. Named strategies are factories registered
with :func:`register_strategy`; :func:`create_strategy` builds one with the user's settings.
"""

import importlib

from incremental.strategies.components import (
    Component,
    FamilyContrast,
    LocalPOD,
    ParentSetsDistilledOnly,
    PartialCE,
    PseudoLabel,
    Refine,
    SelfTrainWithinSets,
    SetKD,
)
from incremental.strategies.composition import INITS, Strategy, StrategyState
from incremental.strategies.registry import (
    COMMON_SETTINGS,
    create_strategy,
    list_strategies,
    parse_strategy_name,
    register_strategy,
    replay_defaults,
    replay_requested,
    strategy_settings,
)
from incremental.strategies.step import StepContext

#: The built-in strategies register themselves when imported, in the order of README's table.
BUILT_IN = ("naive", "mib", "plop", "candidate_sets", "joint")
for _module in BUILT_IN:
    importlib.import_module(f"incremental.strategies.{_module}")

__all__ = [
    "COMMON_SETTINGS",
    "INITS",
    "Component",
    "FamilyContrast",
    "LocalPOD",
    "ParentSetsDistilledOnly",
    "PartialCE",
    "PseudoLabel",
    "Refine",
    "SelfTrainWithinSets",
    "SetKD",
    "StepContext",
    "Strategy",
    "StrategyState",
    "create_strategy",
    "list_strategies",
    "parse_strategy_name",
    "register_strategy",
    "replay_defaults",
    "replay_requested",
    "strategy_settings",
]
