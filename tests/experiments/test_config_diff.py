"""Where two configs differ (``experiments.config_diff``): by key, by type, nested in lists."""

from __future__ import annotations

from experiments.config_diff import ABSENT, differing_keys, value_at


def test_values_of_another_type_differ_and_equal_trees_do_not():
    a = {"train": {"limit_train_batches": 2, "lr": 0.01}, "seeds": [0, 1]}
    assert (
        differing_keys(a, {"train": {"limit_train_batches": 2, "lr": 0.01}, "seeds": [0, 1]}) == []
    )
    b = {"train": {"limit_train_batches": 2.0, "lr": 0.01}, "seeds": [0, 1.0]}
    assert differing_keys(a, b) == ["seeds.1", "train.limit_train_batches"]


def test_a_missing_key_and_a_list_of_another_length_are_named():
    a = {"train": {"epochs": 3}, "seeds": [0]}
    b = {"train": {}, "seeds": [0, 1]}
    assert differing_keys(a, b) == ["seeds", "train.epochs"]
    assert value_at(b, "train.epochs") == ABSENT


def test_a_nan_setting_equals_itself():
    assert differing_keys({"clip": float("nan")}, {"clip": float("nan")}) == []
    assert differing_keys({"clip": float("nan")}, {"clip": 1.0}) == ["clip"]


def test_a_differing_list_entry_is_named_by_its_index_and_found_by_it():
    a = {"terms": [{"type": "CE"}, {"type": "KD", "weight": 1.0}]}
    b = {"terms": [{"type": "CE"}, {"type": "KD", "weight": 2.0}]}
    assert differing_keys(a, b) == ["terms.1.weight"]
    assert value_at(a, "terms.1.weight") == 1.0 and value_at(b, "terms.1.weight") == 2.0
    assert value_at(a, "terms.2.weight") is ABSENT and value_at(a, "terms.x") is ABSENT


def test_a_missing_block_equals_a_block_of_nulls():
    """An older config lacks what a newer one pins to nothing (``strategy_overrides`` that keep
    a strategy's former defaults); a block with a value is a difference."""
    pinned = {"strategy_overrides": {"candidate-sets": {"contrast": None, "self_training": None}}}
    assert differing_keys({"strategy_overrides": {}}, pinned) == []
    assert differing_keys(pinned, {}) == []
    changed = {"strategy_overrides": {"candidate-sets": {"contrast": 0.5, "self_training": None}}}
    assert differing_keys({"strategy_overrides": {}}, changed) == [
        "strategy_overrides.candidate-sets"
    ]
    # Elsewhere a block of nulls is a setting: it would override train's value at run time.
    loop = {"strategy_train": {"mib": {"epochs": None}}}
    assert differing_keys({"strategy_train": {}}, loop) == ["strategy_train.mib"]
