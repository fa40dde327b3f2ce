"""Strategies as compositions of loss terms and label readings (DESIGN §3).

A strategy is one :class:`StrategyConfig`: how unlabeled pixels and old labels are read, how
the head is initialised, which loss terms apply with which weights, what is frozen. The named
presets below only set fields; a user's explicit setting is applied after the preset and so
always wins (:func:`resolve_strategy`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

DISTILLATIONS = ("none", "set", "label_conditioned")
FREEZES = ("none", "old_network")
LABELS = ("partial", "full")


@dataclass(frozen=True)
class StrategyConfig:
    """Every knob of a step-1 training strategy (defaults: candidate sets).

    Attributes:
        unlabeled: reading of ``unlabeled`` mask values: ``"candidates"`` (every class but the
            exhaustively labeled ones), ``"ignore"``, or a class name (``"background"``).
        old_labels: reading of old-vocabulary labels: ``"sets"`` (T(k)) or
            ``"representative"`` (the class keeping k's index).
        split_aware: the teacher map knows splits (False: MiB/PLOP, every created class hides
            under the background).
        init: head expansion, ``"mass_preserving"`` or ``"random"``.
        init_from: ``"teacher"`` (expand the old model) or ``"scratch"`` (oracle only).
        distillation: ``"none"``, ``"set"`` (set distillation) or ``"label_conditioned"``.
        kd_weight, temperature: distillation weight and teacher temperature.
        refine, refine_threshold, refine_criterion: teacher-refined candidate sets.
        pseudo_labels, pseudo_base_threshold: PLOP's entropy-thresholded pseudo-labels.
        pod_weight: Local POD feature distillation weight (PLOP), 0 = off.
        freeze: ``"old_network"`` trains only the created classes' classifier rows.
        class_weights: None, or ``"inverse_frequency"`` (median-frequency balancing over the
            training labels' singleton pixels).
        focal_gamma: focal modulation of the cross-entropy, 0 = off.
        replay: mix the old images into step-1 training.
        old_share: the old images' share of each epoch when replaying.
        labels: ``"partial"`` (the real setting) or ``"full"`` (oracle: every pixel labeled).
    """

    unlabeled: str = "candidates"
    old_labels: str = "sets"
    split_aware: bool = True
    init: str = "mass_preserving"
    init_from: str = "teacher"
    distillation: str = "set"
    kd_weight: float = 1.0
    temperature: float = 1.0
    refine: bool = True
    refine_threshold: float = 0.7
    refine_criterion: str = "confidence"
    pseudo_labels: bool = False
    pseudo_base_threshold: float = 0.001
    pod_weight: float = 0.0
    freeze: str = "none"
    class_weights: str | None = None
    focal_gamma: float = 0.0
    replay: bool = False
    old_share: float = 0.5
    labels: str = "partial"

    def __post_init__(self) -> None:
        choices = {
            "distillation": DISTILLATIONS,
            "freeze": FREEZES,
            "labels": LABELS,
            "old_labels": ("sets", "representative"),
            "init": ("mass_preserving", "random"),
            "init_from": ("teacher", "scratch"),
            "refine_criterion": ("confidence", "entropy"),
            "class_weights": (None, "inverse_frequency"),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(
                    f"strategy.{key}: {getattr(self, key)!r} is not one of {list(allowed)}"
                )
        if not 0.0 < self.old_share < 1.0:
            raise ValueError(f"strategy.old_share must be in (0, 1), got {self.old_share}")
        if self.init_from == "scratch" and self.labels != "full":
            raise ValueError("strategy.init_from='scratch' needs labels='full' (the oracle)")

    @property
    def uses_teacher(self) -> bool:
        """Whether training runs the teacher at every step."""
        return (
            self.distillation != "none" or self.refine or self.pseudo_labels or self.pod_weight > 0
        ) and self.labels == "partial"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Named strategies: only the fields that differ from the defaults (candidate sets).
PRESETS: dict[str, dict[str, Any]] = {
    "finetune": {
        "unlabeled": "background",
        "old_labels": "representative",
        "init": "random",
        "distillation": "none",
        "refine": False,
    },
    "finetune-ignore": {
        "unlabeled": "ignore",
        "old_labels": "representative",
        "init": "random",
        "distillation": "none",
        "refine": False,
    },
    "freeze": {
        "unlabeled": "background",
        "old_labels": "representative",
        "init": "random",
        "distillation": "none",
        "refine": False,
        "freeze": "old_network",
    },
    "mib": {
        "split_aware": False,
        "distillation": "set",
        "kd_weight": 10.0,
        "refine": False,
    },
    "plop": {
        "split_aware": False,
        "unlabeled": "candidates",
        "distillation": "none",
        "refine": False,
        "pseudo_labels": True,
        "pod_weight": 0.01,
    },
    "candidate-sets": {},
    "candidate-sets-lc": {"distillation": "label_conditioned"},
    "joint": {
        "labels": "full",
        "distillation": "none",
        "refine": False,
        "replay": True,
    },
}


def list_strategies() -> list[str]:
    return list(PRESETS)


def resolve_strategy(name: str, overrides: Mapping[str, Any] | None = None) -> StrategyConfig:
    """Preset ``name``, then the user's ``overrides`` on top (they always win).

    ``name`` may end in ``+replay`` to turn replay on (``candidate-sets+replay``).
    """
    base, _, suffix = name.partition("+")
    if base not in PRESETS:
        raise ValueError(f"unknown strategy {base!r}; known: {list_strategies()}")
    if suffix not in ("", "replay"):
        raise ValueError(f"strategy {name!r}: the only suffix is '+replay'")
    known = {f.name for f in fields(StrategyConfig)}
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"strategy {name!r}: unknown setting(s) {unknown}; known: {sorted(known)}")
    config = replace(StrategyConfig(), **PRESETS[base])
    if suffix == "replay":
        config = replace(config, replay=True)
    return replace(config, **overrides)
