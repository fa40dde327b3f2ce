"""IoU scores from a confusion matrix."""

from __future__ import annotations

import math

import torch

from incremental.metrics import harmonic_mean, iou_per_class, merge_confusion, segmentation_scores


def test_iou_hand_computed():
    # rows = target, columns = prediction
    confusion = torch.tensor([[5, 1, 0], [2, 3, 0], [0, 0, 0]])
    iou = iou_per_class(confusion)
    assert math.isclose(iou[0], 5 / (5 + 1 + 2))
    assert math.isclose(iou[1], 3 / (3 + 2 + 1))
    assert math.isnan(iou[2])  # never present, never predicted: not counted


def test_merge_confusion_sums_blocks():
    confusion = torch.tensor([[4, 1, 1], [2, 5, 3], [0, 6, 7]])
    merged = merge_confusion(confusion, [0, 1, 1])
    assert merged.tolist() == [[4, 2], [2, 21]]


def test_scores_old_new_parent():
    confusion = torch.tensor([[8, 0, 0, 0], [0, 4, 0, 0], [0, 0, 2, 2], [0, 0, 2, 2]])
    classes = ["background", "coat", "car_other", "police_car"]
    scores = segmentation_scores(
        confusion,
        classes,
        new_classes=["car_other", "police_car"],
        parents={"car_other": "car", "police_car": "car"},
    )
    assert scores["miou_old"] == 1.0
    assert math.isclose(scores["miou_new"], 2 / 6)
    assert math.isclose(scores["hiou"], harmonic_mean(1.0, 2 / 6))
    assert scores["parent_iou/car"] == 1.0 and scores["miou_parent"] == 1.0
    assert math.isclose(scores["iou/police_car"], 2 / 6)


def test_harmonic_mean_zero():
    assert harmonic_mean(0.5, 0.0) == 0.0
    assert math.isclose(harmonic_mean(0.5, 0.5), 0.5)


def test_split_scores_punish_collapse_either_way():
    """All of the parent's pixels predicted as the child, or as the remainder: the split's
    harmonic mean is 0 and the balanced accuracy one half (no split), whichever side won."""
    from incremental.labels import Split

    classes = ["background", "car_other", "police_car"]
    split = [Split.of("car", ["police_car"])]
    to_child = torch.tensor([[9, 0, 0], [0, 0, 6], [0, 0, 3]])
    to_remainder = torch.tensor([[9, 0, 0], [0, 6, 0], [0, 3, 0]])
    for confusion in (to_child, to_remainder):
        scores = segmentation_scores(confusion, classes, classes[1:], splits=split)
        assert scores["split_hiou/car"] == 0.0 and scores["split_bacc/car"] == 0.5
    # Collapsed into the child: the remainder scores 0; into the remainder: 6 / (6 + 3).
    assert segmentation_scores(to_child, classes, classes[1:], splits=split)["remainder_iou"] == 0
    collapsed = segmentation_scores(to_remainder, classes, classes[1:], splits=split)
    assert math.isclose(collapsed["remainder_iou"], 6 / 9) and collapsed["child_iou"] == 0
    perfect = torch.tensor([[9, 0, 0], [0, 6, 0], [0, 0, 3]])
    scores = segmentation_scores(perfect, classes, classes[1:], splits=split)
    assert scores["split_hiou"] == scores["split_bacc"] == scores["child_iou"] == 1.0
    assert scores["remainder_iou"] == 1.0


def test_within_family_balanced_accuracy_hand_computed():
    from incremental.metrics import within_family_balanced_accuracy

    # rows = target: car_other 2 right 2 wrong, police_car 1 wrong 3 right; background ignored.
    confusion = torch.tensor([[8, 1, 0], [0, 2, 2], [5, 1, 3]])
    assert math.isclose(within_family_balanced_accuracy(confusion, [1, 2]), (2 / 4 + 3 / 4) / 2)
    assert math.isnan(within_family_balanced_accuracy(torch.zeros(3, 3), [1, 2]))
