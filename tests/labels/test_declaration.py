"""Tests of :class:`incremental.labels.LabelDeclaration`: construction, config parsing and
every validation error (each naming the dataset and the offending value)."""

import pytest

from incremental.labels import IGNORE, UNLABELED, LabelDeclaration


def test_smoke():
    d = LabelDeclaration("bags", {0: UNLABELED, 1: "bag", 255: IGNORE})
    assert d.vocabulary == "student" and d.exhaustive is True and d.absent == ()
    assert d.class_names() == {"bag"}


def test_from_config_digit_string_keys():
    d = LabelDeclaration.from_config(
        "old",
        {
            "values": {"0": "background", "1": ["coat", "car"], 2: "unlabeled", "255": "ignore"},
            "vocabulary": "old",
            "exhaustive": ["coat"],
            "absent": ["car"],
        },
    )
    assert dict(d.values) == {0: "background", 1: ("coat", "car"), 2: UNLABELED, 255: IGNORE}
    assert all(isinstance(v, int) for v in d.values)
    assert d.vocabulary == "old"
    assert d.exhaustive == ("coat",)
    assert d.absent == ("car",)
    assert d.class_names() == {"background", "coat", "car"}


def test_to_config_round_trip():
    config = {
        "values": {0: "background", 1: ["coat", "car"], 255: "ignore"},
        "vocabulary": "old",
        "exhaustive": False,
        "absent": ["bag"],
    }
    d = LabelDeclaration.from_config("x", config)
    assert d.to_config() == config
    assert LabelDeclaration.from_config("x", d.to_config()) == d


def test_duplicate_values():
    with pytest.raises(ValueError, match=r"dataset 'x': label value 1 is declared twice"):
        LabelDeclaration.from_config("x", {"values": {"1": "bag", 1: "coat"}})


def test_non_integer_key():
    with pytest.raises(ValueError, match=r"dataset 'x': label value 'one' is not an integer"):
        LabelDeclaration.from_config("x", {"values": {"one": "bag"}})


@pytest.mark.parametrize("value", [256, -1])
def test_value_out_of_range(value):
    with pytest.raises(ValueError, match=rf"dataset 'x': label value {value} is not an integer"):
        LabelDeclaration("x", {value: "bag"})


def test_255_as_class():
    with pytest.raises(ValueError, match=r"dataset 'x': value 255 is reserved for 'ignore'"):
        LabelDeclaration.from_config("x", {"values": {"0": "background", "255": "border"}})


def test_bad_vocabulary():
    with pytest.raises(ValueError, match=r"dataset 'x': vocabulary 'new' is not one of"):
        LabelDeclaration.from_config("x", {"values": {0: "bag"}, "vocabulary": "new"})


@pytest.mark.parametrize("values", [{}, None, [0, 1]])
def test_empty_or_missing_values(values):
    with pytest.raises(ValueError, match=r"dataset 'x': ('values' must map|no label values)"):
        LabelDeclaration.from_config("x", {"values": values})


def test_missing_values_key():
    with pytest.raises(ValueError, match=r"dataset 'x': 'values' must map"):
        LabelDeclaration.from_config("x", {"vocabulary": "old"})


@pytest.mark.parametrize("exhaustive", ["yes", 1, 0.5])
def test_bad_exhaustive_type(exhaustive):
    with pytest.raises(ValueError, match=r"dataset 'x': exhaustive must be true, false or a list"):
        LabelDeclaration.from_config("x", {"values": {0: "bag"}, "exhaustive": exhaustive})


def test_unknown_key():
    with pytest.raises(ValueError, match=r"dataset 'x': unknown key\(s\) \['exhaustiv'\]"):
        LabelDeclaration.from_config("x", {"values": {0: "bag"}, "exhaustiv": False})


@pytest.mark.parametrize("meaning", [(), "", ("bag", ""), 3])
def test_bad_meaning(meaning):
    with pytest.raises(ValueError, match=r"dataset 'x': value 4: meaning .* must be a class name"):
        LabelDeclaration("x", {4: meaning})


@pytest.mark.parametrize("special", [UNLABELED, IGNORE])
def test_special_inside_list(special):
    with pytest.raises(ValueError, match=r"value 2: 'unlabeled'/'ignore' cannot be part of a list"):
        LabelDeclaration("x", {2: ("bag", special)})
