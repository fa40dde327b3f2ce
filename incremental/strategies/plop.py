"""PLOP (Douillard et al., "PLOP: Learning without Forgetting for Continual Semantic
Segmentation", CVPR 2021): entropy-thresholded pseudo-labels from the teacher on the
unlabeled pixels and Local POD feature distillation; split-unaware like MiB."""

from __future__ import annotations

from incremental.labels import LabelReading
from incremental.strategies.components import LocalPOD, PartialCE, PseudoLabel
from incremental.strategies.composition import Strategy
from incremental.strategies.registry import register_strategy


@register_strategy("plop")
def plop(pod_weight: float = 0.01, pseudo_base_threshold: float = 0.001) -> Strategy:
    """Pseudo-labels with per-class median-entropy thresholds (a correct median), CE scaled
    per image by the accepted share, Local POD weighted ``pod_weight``."""
    return Strategy(
        "plop",
        LabelReading(split_aware=False),
        transforms=(PseudoLabel(pseudo_base_threshold),),
        terms=(PartialCE(), LocalPOD(pod_weight)),
    )
