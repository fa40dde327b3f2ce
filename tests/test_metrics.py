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
