"""Segmentation scores from one confusion matrix: per-class IoU, old / new / all mIoU, hIoU,
parent-level IoU for split classes (children merged), and split scores that punish a split
collapsing either way (within-parent balanced accuracy, child-remainder harmonic mean).

The confusion matrix is accumulated by torchmetrics (synchronised across processes); every
score derives from it, so parent-level scores need no second pass over the data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from incremental.labels.transition import Split


def iou_per_class(confusion: torch.Tensor) -> torch.Tensor:
    """(C, C) confusion matrix (rows = target, columns = prediction) -> (C,) IoU.

    NaN for a class with neither ground truth nor predictions (it does not count in means).
    """
    confusion = confusion.double()
    tp = confusion.diagonal()
    union = confusion.sum(dim=0) + confusion.sum(dim=1) - tp
    return torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))


def merge_confusion(confusion: torch.Tensor, groups: Sequence[int]) -> torch.Tensor:
    """Merge classes: ``groups[c]`` is the merged index of class c. (C, C) -> (G, G)."""
    g = torch.as_tensor(groups, dtype=torch.long, device=confusion.device)
    n = int(g.max()) + 1
    # In float64, rounded back: CUDA has no integer matmul ("addmm_cuda" not implemented for
    # 'Long'), and float64 holds every count below 2**53 exactly.
    onehot = torch.nn.functional.one_hot(g, n).double()
    merged = onehot.T @ confusion.double() @ onehot
    if confusion.is_floating_point():
        return merged.to(confusion.dtype)
    return merged.round().to(confusion.dtype)


def harmonic_mean(a: float, b: float) -> float:
    if not (a > 0 and b > 0):
        return 0.0 if a == a and b == b else float("nan")
    return 2 * a * b / (a + b)


def _nanmean(values: torch.Tensor) -> float:
    finite = values[~values.isnan()]
    return float(finite.mean()) if len(finite) else float("nan")


def within_family_balanced_accuracy(confusion: torch.Tensor, family: Sequence[int]) -> float:
    """Balanced accuracy among the classes of one split family (its children and remainder),
    on the pixels that are of the family and predicted in it: the mean over the family's
    classes of ``confusion[c, c] / Σ_{j∈family} confusion[c, j]``. 1/len(family) is no split
    at all; NaN without such pixels.

    Args:
        confusion: (C, C) counts, rows = target.
        family: the family's class indices.
    """
    index = torch.as_tensor(list(family), device=confusion.device)
    block = confusion.double().index_select(0, index).index_select(1, index)
    totals = block.sum(dim=1)
    recalls = block.diagonal()[totals > 0] / totals[totals > 0]
    return float(recalls.mean()) if len(recalls) else float("nan")


def split_scores(
    confusion: torch.Tensor, classes: Sequence[str], splits: Sequence[Split]
) -> dict[str, float]:
    """Per split: ``split_bacc/<parent>`` (:func:`within_family_balanced_accuracy`) and
    ``split_hiou/<parent>``, the harmonic mean of the children's mean IoU and the remainder's
    IoU (0 when either is 0: splitting nothing, or everything into the child, both score 0);
    their means over the splits as ``split_bacc``, ``split_hiou``, ``child_iou`` (the
    children's mean IoU) and ``remainder_iou`` (the remainders' IoU: the class that collapses
    into the child when a method over-splits)."""
    iou = iou_per_class(confusion)
    index = {c: i for i, c in enumerate(classes)}
    scores: dict[str, float] = {}
    baccs, hious, child_ious, remainder_ious = [], [], [], []
    for split in splits:
        children = [index[c] for c in split.children]
        family = [index[split.remainder], *children]
        bacc = within_family_balanced_accuracy(confusion, family)
        child = _nanmean(iou[children])
        remainder = float(iou[index[split.remainder]])
        hiou = harmonic_mean(child, remainder)
        scores[f"split_bacc/{split.parent}"] = bacc
        scores[f"split_hiou/{split.parent}"] = hiou
        baccs.append(bacc)
        hious.append(hiou)
        child_ious.append(child)
        remainder_ious.append(remainder)
    scores["split_bacc"] = _nanmean(torch.tensor(baccs, dtype=torch.float64))
    scores["split_hiou"] = _nanmean(torch.tensor(hious, dtype=torch.float64))
    scores["child_iou"] = _nanmean(torch.tensor(child_ious, dtype=torch.float64))
    scores["remainder_iou"] = _nanmean(torch.tensor(remainder_ious, dtype=torch.float64))
    return scores


def segmentation_scores(
    confusion: torch.Tensor,
    classes: Sequence[str],
    new_classes: Sequence[str] = (),
    parents: Mapping[str, str] | None = None,
    splits: Sequence[Split] = (),
) -> dict[str, float]:
    """Every score of a results row.

    Args:
        confusion: (C, C) counts, rows = target.
        classes: the C class names.
        new_classes: classes the step created (new classes, split children and remainders);
            the rest are old.
        parents: class -> parent name; when some differ from the class itself, parent-level
            IoU (children merged) is added as ``parent_iou/<name>`` and ``miou_parent``.
        splits: the step's splits; their scores are added (:func:`split_scores`).

    Returns:
        ``miou_all``, ``miou_old``, ``miou_new``, ``hiou`` (harmonic mean of old and new) and
        ``iou/<class>`` for every class (fractions in [0, 1]).
    """
    iou = iou_per_class(confusion)
    is_new = torch.tensor([c in set(new_classes) for c in classes])
    scores = {
        "miou_all": _nanmean(iou),
        "miou_old": _nanmean(iou[~is_new]),
        "miou_new": _nanmean(iou[is_new]) if bool(is_new.any()) else float("nan"),
    }
    scores["hiou"] = harmonic_mean(scores["miou_old"], scores["miou_new"])
    scores.update({f"iou/{c}": float(v) for c, v in zip(classes, iou, strict=True)})
    if parents and any(parents.get(c, c) != c for c in classes):
        names = list(dict.fromkeys(parents.get(c, c) for c in classes))
        merged = merge_confusion(confusion, [names.index(parents.get(c, c)) for c in classes])
        parent_iou = iou_per_class(merged)
        scores["miou_parent"] = _nanmean(parent_iou)
        scores.update({f"parent_iou/{n}": float(v) for n, v in zip(names, parent_iou, strict=True)})
    if splits:
        scores.update(split_scores(confusion, classes, splits))
    return scores
