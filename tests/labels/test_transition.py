"""Tests of :class:`incremental.labels.Transition`: student classes, the teacher map T and
validation of transitions built in code or from a config mapping."""

import pytest
import torch

from incremental.labels import Split, TeacherMap, Transition

OLD = ("background", "coat", "car")


def both_cases() -> Transition:
    """Case 1 (new class "bag" hidden under background) and case 2 (car -> police_car)."""
    return Transition(OLD, new_classes=("bag",), splits=(Split.of("car", ["police_car"]),))


class TestStudentClasses:
    def test_smoke_no_change(self):
        t = Transition(OLD)
        assert t.student_classes == OLD
        assert t.hidden_under == "background"
        assert t.num_old_classes == 3 and t.num_student_classes == 3

    def test_order_old_then_new_then_children(self):
        t = both_cases()
        # The split parent is replaced in place by its remainder: old indices keep their meaning.
        assert t.student_classes == ("background", "coat", "car_other", "bag", "police_car")
        assert t.num_student_classes == 5

    def test_order_several_splits_and_named_remainder(self):
        t = Transition(
            ("background", "coat", "car", "shoe"),
            new_classes=("bag", "hat"),
            splits=(
                Split.of("shoe", ["sneaker", "boot"], remainder="other_shoe"),
                Split.of("car", ["police_car"]),
            ),
        )
        assert t.student_classes == (
            "background",
            "coat",
            "car_other",
            "other_shoe",
            "bag",
            "hat",
            "sneaker",
            "boot",
            "police_car",
        )
        assert t.created_classes == (
            "bag",
            "hat",
            "other_shoe",
            "sneaker",
            "boot",
            "car_other",
            "police_car",
        )
        assert t.unchanged_classes == ("background", "coat")

    def test_representative_and_parents(self):
        t = both_cases()
        assert t.representative("car") == "car_other"
        assert t.representative("coat") == "coat"
        assert t.parent_classes() == {
            "background": "background",
            "coat": "coat",
            "car_other": "car",
            "bag": "bag",
            "police_car": "car",
        }


class TestTeacherSets:
    def test_split_aware(self):
        assert both_cases().teacher_sets(split_aware=True) == {
            "background": ("background", "bag"),
            "coat": ("coat",),
            "car": ("car_other", "police_car"),
        }

    def test_not_split_aware(self):
        # MiB/PLOP view: children hide under background like new classes; car -> remainder only.
        assert both_cases().teacher_sets(split_aware=False) == {
            "background": ("background", "bag", "police_car"),
            "coat": ("coat",),
            "car": ("car_other",),
        }

    def test_hidden_under_other_class(self):
        t = Transition(OLD, new_classes=("bag",), hidden_under="coat")
        assert t.teacher_sets() == {
            "background": ("background",),
            "coat": ("coat", "bag"),
            "car": ("car",),
        }

    @pytest.mark.parametrize("split_aware", [True, False])
    def test_matrix_matches_sets(self, split_aware):
        t = both_cases()
        m = TeacherMap(t, split_aware).matrix
        assert m.shape == (3, 5) and m.dtype == torch.bool
        expected = {
            True: [[1, 0, 0, 1, 0], [0, 1, 0, 0, 0], [0, 0, 1, 0, 1]],
            False: [[1, 0, 0, 1, 1], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0]],
        }[split_aware]
        assert torch.equal(m, torch.tensor(expected, dtype=torch.bool))
        # Every student class belongs to exactly one teacher set (T partitions C).
        assert torch.equal(m.sum(dim=0), torch.ones(5, dtype=torch.long))


class TestConfig:
    def test_from_config_list_and_mapping_forms(self):
        t = Transition.from_config(
            {
                "old_classes": list(OLD),
                "add": ["bag"],
                "split": {"car": {"children": ["police_car"], "remainder": "civil_car"}},
            }
        )
        assert t.student_classes == ("background", "coat", "civil_car", "bag", "police_car")
        t2 = Transition.from_config({"old_classes": list(OLD), "split": {"car": ["police_car"]}})
        assert t2.splits == (Split("car", ("police_car",), "car_other"),)

    @pytest.mark.parametrize(
        "transition",
        [
            Transition(OLD),
            both_cases(),
            Transition(OLD, new_classes=("bag", "hat"), hidden_under="coat"),
        ],
    )
    def test_round_trip(self, transition):
        config = transition.to_config()
        assert Transition.from_config(config) == transition
        # Plain types only (saved beside results as YAML/JSON).
        assert isinstance(config["old_classes"], list) and isinstance(config["add"], list)

    def test_unknown_key(self):
        with pytest.raises(ValueError, match=r"unknown key\(s\) \['adds'\]"):
            Transition.from_config({"old_classes": list(OLD), "adds": ["bag"]})

    def test_unknown_split_key(self):
        with pytest.raises(ValueError, match=r"transition.split.car: unknown key\(s\) \['kids'\]"):
            Transition.from_config({"old_classes": list(OLD), "split": {"car": {"kids": ["x"]}}})

    def test_bad_split_spec(self):
        with pytest.raises(ValueError, match=r"transition.split.car: expected a list"):
            Transition.from_config({"old_classes": list(OLD), "split": {"car": "police_car"}})

    def test_missing_old_classes(self):
        with pytest.raises(ValueError, match="missing key 'old_classes'"):
            Transition.from_config({"add": ["bag"]})


class TestValidation:
    def test_empty_old_classes(self):
        with pytest.raises(ValueError, match="old_classes is empty"):
            Transition(())

    def test_duplicate_old(self):
        with pytest.raises(ValueError, match=r"transition.old_classes: duplicate.*\['coat'\]"):
            Transition(("background", "coat", "coat"))

    def test_duplicate_new(self):
        with pytest.raises(ValueError, match=r"transition.add: duplicate.*\['bag'\]"):
            Transition(OLD, new_classes=("bag", "bag"))

    def test_empty_name(self):
        with pytest.raises(ValueError, match="non-empty strings, got ''"):
            Transition(OLD, new_classes=("",))

    def test_unknown_parent(self):
        with pytest.raises(ValueError, match="'truck' is not an old class"):
            Transition(OLD, splits=(Split.of("truck", ["fire_truck"]),))

    def test_empty_children(self):
        with pytest.raises(ValueError, match=r"transition.split.car: children is empty"):
            Transition(OLD, splits=(Split.of("car", []),))

    def test_split_twice(self):
        with pytest.raises(ValueError, match="'car' is split twice"):
            Transition(OLD, splits=(Split.of("car", ["a"]), Split.of("car", ["b"], "c")))

    def test_unknown_hidden_under(self):
        with pytest.raises(ValueError, match="hidden_under: 'sky' is not an old class"):
            Transition(OLD, new_classes=("bag",), hidden_under="sky")

    def test_hidden_under_split_parent(self):
        with pytest.raises(ValueError, match="'background' is both split and"):
            Transition(OLD, new_classes=("bag",), splits=(Split.of("background", ["sky"]),))

    def test_split_hidden_under_without_new_classes_is_fine(self):
        t = Transition(OLD, splits=(Split.of("background", ["sky"]),))
        assert t.teacher_sets()["background"] == ("background_other", "sky")

    @pytest.mark.parametrize(
        "kwargs, clash",
        [
            ({"new_classes": ("coat",)}, "coat"),  # new class named like an old one
            ({"new_classes": ("car_other",), "splits": (Split.of("car", ["x"]),)}, "car_other"),
            ({"splits": (Split.of("car", ["coat"]),)}, "coat"),  # child named like an old one
        ],
    )
    def test_name_clash(self, kwargs, clash):
        with pytest.raises(ValueError, match=rf"class name\(s\) \['{clash}'\] used twice"):
            Transition(OLD, **kwargs)
