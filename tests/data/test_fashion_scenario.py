"""The Fashion-scenes scenarios: what each dataset shows and how it is labeled."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_scenario_config

from incremental.constants import IGNORE_INDEX
from incremental.data import build_scenario
from incremental.data.fashion.scenario import build_fashion_scenario
from incremental.labels import CandidateSetTable


def _masks(source) -> np.ndarray:
    return np.stack([source.load(i)[1] for i in range(len(source))])


def test_new_class_never_in_old_images(new_class_scenario):
    sc = new_class_scenario
    bag = sc.transition.student_classes.index("bag")
    assert not (_masks(sc.old_train_full) == bag).any()
    # ...and every new image shows one, labeled 1 in the partial labels.
    new_full, new_partial = _masks(sc.new_train_full), _masks(sc.new_train)
    assert all((m == bag).any() for m in new_full)
    np.testing.assert_array_equal(new_partial == 1, new_full == bag)
    assert set(np.unique(new_partial)) <= {0, 1}


def test_old_labels_are_old_classes(split_scenario):
    sc = split_scenario
    old, full = _masks(sc.old_train), _masks(sc.old_train_full)
    footwear = sc.transition.old_classes.index("footwear")
    student = sc.transition.student_classes
    shoes = np.isin(full, [student.index("footwear_other"), student.index("sneaker")])
    np.testing.assert_array_equal(old == footwear, shoes)
    assert old.max() < len(sc.transition.old_classes)


def test_declarations_make_valid_tables(new_class_scenario, split_scenario):
    for sc in (new_class_scenario, split_scenario):
        sources = [sc.new_train, sc.old_train]
        table = CandidateSetTable([s.declaration for s in sources], sc.transition)
        assert table.candidate_set("new_train", IGNORE_INDEX) == set(sc.transition.student_classes)
    table = CandidateSetTable(
        [split_scenario.new_train.declaration, split_scenario.old_train.declaration],
        split_scenario.transition,
    )
    assert table.candidate_set("old_train", 5) == {"footwear_other", "sneaker"}
    assert "sneaker" not in table.candidate_set("new_train", 0)


def test_eval_masks_are_student_indices(split_scenario):
    masks = _masks(split_scenario.test)
    assert masks.max() < len(split_scenario.transition.student_classes)


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_sibling_rate_controls_siblings_on_new_images(rate):
    sc = build_scenario(tiny_scenario_config("fashion-split", sibling_rate=rate))
    full = _masks(sc.new_train_full)
    student = sc.transition.student_classes
    siblings = (full == student.index("footwear_other")).sum()
    others = np.isin(full, [student.index(c) for c in ("tshirt", "trouser", "dress", "bag")]).sum()
    if rate == 0.0:
        assert siblings == 0 and others > 0
    else:
        assert siblings > 0 and others == 0


def test_deterministic(new_class_scenario):
    again = build_scenario(tiny_scenario_config("fashion-new-class"))
    np.testing.assert_array_equal(again.new_train.images, new_class_scenario.new_train.images)
    np.testing.assert_array_equal(again.test.masks, new_class_scenario.test.masks)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"items": {"tshirt": ["tshirtt"]}}, "unknown Fashion-MNIST class 'tshirtt'"),
        ({"items": {"hat": ["bag"]}}, "items.hat: not a student class"),
        ({"sibling_rate": 0.5}, "sibling_rate needs a split"),
    ],
)
def test_config_errors(change, match):
    config = tiny_scenario_config("fashion-new-class")
    config.pop("kind")
    if "items" in change:
        config["items"] = {**config["items"], **change["items"]}
    else:
        config.update(change)
    with pytest.raises(ValueError, match=match):
        build_fashion_scenario(config)


def test_missing_items_error():
    config = tiny_scenario_config("fashion-new-class")
    config.pop("kind")
    del config["items"]["coat"]
    with pytest.raises(ValueError, match=r"no Fashion-MNIST classes for \['coat'\]"):
        build_fashion_scenario(config)
