"""MiB (Cermelli et al., "Modeling the Background for Incremental Learning in Semantic
Segmentation", CVPR 2020): unbiased cross-entropy + unbiased distillation + background-based
initialisation, all expressed with candidate sets over the split-unaware teacher map (every
created class hides under the background)."""

from __future__ import annotations

from incremental.labels import LabelReading
from incremental.strategies.components import PartialCE, SetKD
from incremental.strategies.composition import Strategy
from incremental.strategies.registry import register_strategy


@register_strategy("mib")
def mib(kd_weight: float = 10.0, temperature: float = 1.0) -> Strategy:
    """Partial-label CE of {background} ∪ old on unlabeled pixels (MiB's UNCE), set
    distillation with T(background) = {background} ∪ new (UNKD) weighted ``kd_weight``,
    mass-preserving head expansion (MiB's init)."""
    return Strategy(
        "mib",
        LabelReading(split_aware=False),
        terms=(PartialCE(), SetKD(kd_weight, temperature)),
    )
