"""This project's method (DESIGN §2): partial-label cross-entropy over candidate sets,
teacher-refined sets, set distillation and mass-preserving head expansion."""

from __future__ import annotations

from incremental.labels import LabelReading
from incremental.strategies.components import PartialCE, Refine, SetKD
from incremental.strategies.composition import Strategy
from incremental.strategies.registry import register_strategy


@register_strategy("candidate-sets")
def candidate_sets(
    kd_weight: float = 1.0,
    temperature: float = 1.0,
    distillation: str = "set",
    refine: bool = True,
    refine_threshold: float = 0.7,
    refine_criterion: str = "confidence",
    init: str = "mass_preserving",
) -> Strategy:
    """Candidate sets.

    Args:
        kd_weight, temperature: set distillation's weight and teacher temperature.
        distillation: ``"set"``, ``"label_conditioned"`` (the teacher keeps only classes
            compatible with the label) or ``"none"``.
        refine, refine_threshold, refine_criterion: teacher-refined sets.
        init: head expansion, ``"mass_preserving"`` or ``"random"``.
    """
    kd = {"set": "none", "label_conditioned": "label"}
    if distillation not in (*kd, "none"):
        raise ValueError(
            f"distillation: {distillation!r} is not one of ['set', 'label_conditioned', 'none']"
        )
    terms = [PartialCE()]
    if distillation != "none":
        terms.append(SetKD(kd_weight, temperature, conditioning=kd[distillation]))
    transforms = (Refine(refine_threshold, refine_criterion),) if refine else ()
    return Strategy(
        "candidate-sets", LabelReading(), init=init, transforms=transforms, terms=tuple(terms)
    )


@register_strategy("candidate-sets-lc")
def candidate_sets_lc(kd_weight: float = 1.0, temperature: float = 1.0) -> Strategy:
    """Candidate sets with label-conditioned distillation."""
    return candidate_sets(kd_weight, temperature, distillation="label_conditioned")
