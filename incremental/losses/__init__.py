"""Losses over candidate sets (DESIGN §2) and the peers' losses expressed with them."""

from incremental.losses.family_contrast import family_contrast, family_sets
from incremental.losses.label_consistent import consistent_sets, label_consistent_distillation
from incremental.losses.local_pod import local_pod_embedding, local_pod_loss
from incremental.losses.mib import (
    mib_candidates,
    mib_teacher_sets,
    unbiased_cross_entropy,
    unbiased_distillation,
)
from incremental.losses.partial_cross_entropy import (
    PartialCrossEntropy,
    candidate_set_nll,
    partial_cross_entropy,
)
from incremental.losses.pseudo_labels import (
    EntropyHistogram,
    entropy_thresholds,
    pseudo_label_candidates,
    unlabeled_pixels,
)
from incremental.losses.refined_sets import normalized_entropy, refine_candidates
from incremental.losses.set_distillation import (
    SetDistillation,
    set_distillation,
    set_log_probs,
    teacher_probs,
)

__all__ = [
    "EntropyHistogram",
    "PartialCrossEntropy",
    "SetDistillation",
    "candidate_set_nll",
    "consistent_sets",
    "entropy_thresholds",
    "family_contrast",
    "family_sets",
    "label_consistent_distillation",
    "local_pod_embedding",
    "local_pod_loss",
    "mib_candidates",
    "mib_teacher_sets",
    "normalized_entropy",
    "partial_cross_entropy",
    "pseudo_label_candidates",
    "refine_candidates",
    "set_distillation",
    "set_log_probs",
    "teacher_probs",
    "unbiased_cross_entropy",
    "unbiased_distillation",
    "unlabeled_pixels",
]
