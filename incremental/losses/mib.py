"""MiB's unbiased losses (Cermelli et al., "Modeling the Background for Incremental Learning
in Semantic Segmentation", CVPR 2020) as configurations of the candidate-set losses.

MiB's labels: values below ``num_old_classes`` mean "background or an old class", values above
are new classes, 255 is ignored. Its unbiased cross-entropy is the partial cross-entropy of the
set {background} ∪ old classes; its unbiased distillation is set distillation with
T(background) = {background} ∪ new classes, averaged over the old classes as MiB does.
Checked against MiB's own code in ``tests/losses/test_mib_reference.py``.
"""

from __future__ import annotations

import torch

from incremental.constants import IGNORE_INDEX
from incremental.losses.partial_cross_entropy import partial_cross_entropy
from incremental.losses.set_distillation import set_distillation


def mib_candidates(
    labels: torch.Tensor, num_old_classes: int, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Candidate sets of MiB's labels: (B, H, W) long -> (B, C, H, W) bool."""
    ignored = labels == ignore_index
    old = (labels < num_old_classes) & ~ignored
    target = torch.where(old | ignored, torch.zeros_like(labels), labels)
    sets = torch.nn.functional.one_hot(target, num_classes).permute(0, 3, 1, 2).bool()
    sets[:, :num_old_classes] |= old[:, None]
    return sets | ignored[:, None]


def mib_teacher_sets(num_old_classes: int, num_classes: int) -> torch.Tensor:
    """T with old class k -> {k}, background -> {background} ∪ new classes: (K, C) bool."""
    sets = torch.eye(num_old_classes, num_classes, dtype=torch.bool)
    sets[0, num_old_classes:] = True
    return sets


def unbiased_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, num_old_classes: int, reduction: str = "mean"
) -> torch.Tensor:
    """MiB's UnbiasedCrossEntropy: logits (B, C, H, W), labels (B, H, W)."""
    candidates = mib_candidates(labels, num_old_classes, logits.shape[1])
    return partial_cross_entropy(logits, candidates, reduction=reduction)


def unbiased_distillation(
    logits: torch.Tensor, old_logits: torch.Tensor, alpha: float = 1.0, reduction: str = "mean"
) -> torch.Tensor:
    """MiB's UnbiasedKnowledgeDistillationLoss: logits (B, C, H, W), old_logits (B, K, H, W)."""
    num_old = old_logits.shape[1]
    sets = mib_teacher_sets(num_old, logits.shape[1])
    loss = set_distillation(logits, old_logits, sets, 1.0 / alpha, reduction=reduction)
    return loss / num_old
