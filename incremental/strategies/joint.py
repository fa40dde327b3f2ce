"""The oracle: every image fully labeled, trained from the old model (an upper bound)."""

from __future__ import annotations

from dataclasses import replace

from incremental.labels import LabelReading
from incremental.strategies.components import PartialCE, SetKD
from incremental.strategies.composition import Strategy
from incremental.strategies.registry import register_strategy


@register_strategy("joint")
def joint(
    init: str = "mass_preserving", kd_weight: float = 0.0, temperature: float = 1.0
) -> Strategy:
    """Old and new images with complete labels.

    Args:
        init: ``"mass_preserving"`` (from the old model), ``"random"`` (new rows random) or
            ``"scratch"`` (a new network instead of expanding the old one).
        kd_weight, temperature: 0 (the default) is the papers' joint training, cross-entropy
            only. Above 0 the oracle also distills the old model as candidate sets do
            (label-consistent :class:`SetKD`): full labels plus everything a method has.
    """
    terms = [PartialCE()]
    if kd_weight > 0:
        terms.append(SetKD(kd_weight, temperature, conditioning="label_consistent"))
    return Strategy(
        "joint", LabelReading(full_labels=True), init=init, terms=tuple(terms), replay=True
    )


@register_strategy("joint-distilled")
def joint_distilled(
    init: str = "mass_preserving", kd_weight: float = 1.0, temperature: float = 1.0
) -> Strategy:
    """The oracle that also distills the old model (``joint`` with ``kd_weight`` 1): full
    labels plus everything a method has, so the old model's view of the old classes, which
    distilling methods keep and plain joint training partly relearns, is in the bound too."""
    return replace(joint(init, kd_weight, temperature), name="joint-distilled")
