"""MiB (Cermelli et al., "Modeling the Background for Incremental Learning in Semantic
Segmentation", CVPR 2020): unbiased cross-entropy + unbiased distillation + background-based
initialisation, expressed with candidate sets over the split-unaware teacher map (every created
class hides under the background).

As MiB's code (fcdl94/MiB@1c58983): ``--method MiB`` sets ``loss_kd = 10``, ``unce``, ``unkd``,
``init_balanced`` (``argparser.py`` lines 34-38); the total loss is ``UNCE + 10 · UNKD``
(``train.py`` lines 101-125); UNCE is the set {background} ∪ old on old and unlabeled pixels,
averaged over every pixel (``utils/loss.py`` lines 89-109, ``train.py`` 103-107); UNKD sums
``q_k log P_k`` over the old classes with T(background) = {background} ∪ new and divides by
their number (``utils/loss.py`` lines 139-172); the new rows copy the background's with bias
``b_bg - log(N_new + 1)``, the background's too (``segmentation_module.py`` lines 85-97: our
mass-preserving expansion of T(background)).
"""

from __future__ import annotations

from incremental.labels import LabelReading
from incremental.strategies.components import PartialCE, SetKD
from incremental.strategies.composition import Strategy
from incremental.strategies.registry import register_strategy


@register_strategy("mib")
def mib(kd_weight: float = 10.0, temperature: float = 1.0) -> Strategy:
    """MiB's UNCE + ``kd_weight`` · UNKD (averaged over the old classes), MiB's
    initialisation."""
    return Strategy(
        "mib",
        LabelReading(split_aware=False),
        terms=(
            PartialCE(normalization="all_pixels"),
            SetKD(kd_weight, temperature, normalization="old_classes"),
        ),
    )
