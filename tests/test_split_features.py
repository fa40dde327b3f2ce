"""benchmarks/split_features.py: the pixels it compares are exactly the child's and the
remainder's, and its nearest-prototype recalls are fractions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from incremental.models import create_model
from tests.scripts import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("split_features")


def test_features_are_the_two_sub_types_pixels(bench, split_scenario):
    names = split_scenario.transition.student_classes
    classes = (names.index("sneaker"), names.index("footwear_other"))
    torch.manual_seed(0)  # a random model's feature may be all zero at a pixel (norm 0)
    model = create_model("tiny-unet", len(names)).eval()
    source = split_scenario.old_train_full
    features, targets = bench.pixel_features(model, source, classes, layer=-1, images=3)
    masks = [source.load(i)[1] for i in range(3)]
    assert len(targets) == sum(int(np.isin(m, classes).sum()) for m in masks)
    assert int(targets.sum()) == sum(int((m == classes[1]).sum()) for m in masks)
    assert features.shape == (len(targets), features.shape[1])
    np.testing.assert_allclose(features.norm(dim=1).numpy(), 1.0, rtol=1e-5)


def test_recalls_are_fractions(bench, split_scenario):
    names = split_scenario.transition.student_classes
    classes = (names.index("sneaker"), names.index("footwear_other"))
    torch.manual_seed(0)  # a random model's feature may be all zero at a pixel (norm 0)
    model = create_model("tiny-unet", len(names)).eval()
    new, old = split_scenario.new_train_full, split_scenario.old_train_full
    recalls = bench.prototype_recalls(model, new, old, classes, -1, 24)
    assert all(0.0 <= r <= 1.0 for r in recalls), recalls
    # The first old images hold no remainder pixel: a named error, not a NaN recall.
    with pytest.raises(ValueError, match=f"class {classes[1]} has no pixel in the first 2 old"):
        bench.prototype_recalls(model, new, old, classes, -1, 2)


def test_the_split_studied_comes_from_the_scenario(split_scenario, new_class_scenario):
    split = split_scenario.transition.single_split()
    assert (split.children, split.remainder) == (("sneaker",), "footwear_other")
    with pytest.raises(ValueError, match="needs one split of one child, has no split"):
        new_class_scenario.transition.single_split()
