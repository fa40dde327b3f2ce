"""PLOP (Douillard et al., "PLOP: Learning without Forgetting for Continual Semantic
Segmentation", CVPR 2021): entropy-thresholded pseudo-labels from the teacher on the
unlabeled pixels and Local POD feature distillation; split-unaware like MiB.

``plop`` follows PLOP's code (arthurdouillard/CVPR2021_PLOP@4b4a060, ``argparser.py`` lines
49-57 for the preset, ``train.py`` for the losses); what differs on purpose is named in README
("Differences from the peers' code"): the per-class median of the entropy histogram (PLOP's adds
the bin index instead of the bin's count) and the entropy, a sum over classes divided by
log K (PLOP's is a mean, then divided by log K and by log of the student's classes).
``plop-normalised`` is this project's earlier reading: pooled features L2-normalised, no
logits term, no schedule, the cross-entropy averaged over the labeled and accepted pixels.
"""

from __future__ import annotations

from incremental.labels import LabelReading
from incremental.strategies.components import LocalPOD, PartialCE, PseudoLabel
from incremental.strategies.composition import Strategy
from incremental.strategies.registry import register_strategy


@register_strategy("plop")
def plop(
    pod_weight: float = 0.01,
    pod_logits_weight: float = 0.0005,
    pseudo_base_threshold: float = 0.001,
) -> Strategy:
    """Pseudo-labels with per-class median-entropy thresholds; cross-entropy scaled per image by
    PLOP's accepted-pixel factor and averaged over every pixel; Local POD on PLOP's layers
    (stages before activation, decoder, logits) with weights ``pod_weight`` and
    ``pod_logits_weight`` and the ``sqrt(C / C_new)`` schedule."""
    return Strategy(
        "plop",
        LabelReading(split_aware=False),
        transforms=(PseudoLabel(pseudo_base_threshold, image_factor="plop"),),
        terms=(
            PartialCE(normalization="all_pixels"),
            LocalPOD(pod_weight, pod_logits_weight, normalize=False, schedule=True, layers="plop"),
        ),
    )


@register_strategy("plop-normalised")
def plop_normalised(pod_weight: float = 0.01, pseudo_base_threshold: float = 0.001) -> Strategy:
    """PLOP's pseudo-labels with this project's earlier reading of Local POD (stage outputs and
    decoder output, each pool L2-normalised; mean over layers weighted ``pod_weight``) and the
    cross-entropy averaged over the labeled and accepted pixels."""
    return Strategy(
        "plop-normalised",
        LabelReading(split_aware=False),
        transforms=(PseudoLabel(pseudo_base_threshold, image_factor="share"),),
        terms=(
            PartialCE(),
            LocalPOD(pod_weight, 0.0, normalize=True, schedule=False, layers="stages"),
        ),
    )
