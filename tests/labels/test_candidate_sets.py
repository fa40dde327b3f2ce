"""Tests of :class:`incremental.labels.CandidateSetTable`: the candidate-set table of DESIGN §2
(case 1: "bag" hidden under background; case 2: "car" split into car_other + police_car)."""

import pytest
import torch

from incremental.labels import (
    IGNORE,
    UNLABELED,
    CandidateSetTable,
    LabelDeclaration,
    Split,
    TeacherMap,
    Transition,
)

C = ("background", "coat", "car_other", "bag", "police_car")


def transition() -> Transition:
    return Transition(
        ("background", "coat", "car"),
        new_classes=("bag",),
        splits=(Split.of("car", ["police_car"]),),
    )


def old_images(**kwargs) -> LabelDeclaration:
    """Images labeled before the step, in the teacher's vocabulary."""
    values = {0: "background", 1: "coat", 2: "car", 255: IGNORE}
    return LabelDeclaration("old", values, vocabulary="old", **kwargs)


def bag_images(**kwargs) -> LabelDeclaration:
    """New images labeled for "bag" only."""
    return LabelDeclaration("bags", {0: UNLABELED, 1: "bag", 255: IGNORE}, **kwargs)


def police_images(**kwargs) -> LabelDeclaration:
    """New images labeled for "police_car" only."""
    return LabelDeclaration("police", {0: UNLABELED, 1: "police_car"}, **kwargs)


def full_images() -> LabelDeclaration:
    return LabelDeclaration("full", {i: c for i, c in enumerate(C)})


def table(*declarations, **kwargs) -> CandidateSetTable:
    if not declarations:
        declarations = (old_images(), bag_images(), police_images())
    return CandidateSetTable(list(declarations), transition(), **kwargs)


def everything_but(*names):
    return frozenset(C) - set(names)


class TestDesignTable:
    def test_smoke(self):
        t = table()
        assert t.classes == C
        assert t.dataset_names == ("old", "bags", "police")
        assert t.sets.shape == (3, 256, 5) and t.sets.dtype == torch.bool
        assert t.declared.shape == (3, 256)

    def test_fully_labeled(self):
        t = table(old_images(), bag_images(), police_images(), full_images())
        for value, name in enumerate(C):
            assert t.candidate_set("full", value) == {name}

    def test_new_image_label(self):
        assert table().candidate_set("bags", 1) == {"bag"}
        assert table().candidate_set("police", 1) == {"police_car"}

    def test_unlabeled_exhaustive(self):
        assert table().candidate_set("bags", 0) == everything_but("bag")
        assert table().candidate_set("police", 0) == everything_but("police_car")

    def test_unlabeled_not_exhaustive(self):
        t = table(old_images(), bag_images(exhaustive=False), police_images(), full_images())
        assert t.candidate_set("bags", 0) == frozenset(C)

    def test_unlabeled_not_exhaustive_leaves_background_unteachable(self):
        # Old "background" is {background, bag}; no dataset any longer tells them apart.
        with pytest.raises(ValueError, match=r"\['background'\] can never be taught"):
            table(old_images(), bag_images(exhaustive=False), police_images())

    def test_unlabeled_exhaustive_subset(self):
        d = LabelDeclaration("both", {0: UNLABELED, 1: "bag", 2: "coat"}, exhaustive=("bag",))
        t = table(old_images(), d, police_images())
        assert t.candidate_set("both", 0) == everything_but("bag")

    def test_old_image_split_class(self):
        assert table().candidate_set("old", 2) == {"car_other", "police_car"}

    def test_old_image_background(self):
        assert table().candidate_set("old", 0) == {"background", "bag"}
        assert table().candidate_set("old", 1) == {"coat"}

    def test_ignore(self):
        t = table()
        assert t.candidate_set("old", 255) == frozenset(C)
        assert t.candidate_set("bags", 255) == frozenset(C)
        # 255 counts as declared (padding) even where a dataset does not declare it.
        assert t.candidate_set("police", 255) == frozenset(C)

    def test_old_name_in_student_vocabulary(self):
        # "car" is no student class: it resolves through T, even in a student-vocabulary dataset.
        d = LabelDeclaration("mixed", {0: UNLABELED, 1: "car", 2: ["coat", "bag"]})
        t = table(old_images(), bag_images(), police_images(), d)
        assert t.candidate_set("mixed", 1) == {"car_other", "police_car"}
        assert t.candidate_set("mixed", 2) == {"coat", "bag"}
        assert t.candidate_set("mixed", 0) == {"background"}

    def test_not_split_aware(self):
        unaware = TeacherMap(transition(), split_aware=False)
        t = table(old_images(), bag_images(), police_images(), full_images(), teacher_map=unaware)
        assert t.candidate_set("old", 0) == {"background", "bag", "police_car"}
        assert t.candidate_set("old", 2) == {"car_other"}


class TestOptions:
    def test_unlabeled_as_class(self):
        t = table(
            old_images(), bag_images(), police_images(), full_images(), unlabeled="background"
        )
        assert t.candidate_set("bags", 0) == {"background"}
        assert t.candidate_set("bags", 1) == {"bag"}

    def test_unlabeled_ignore(self):
        t = table(old_images(), bag_images(), police_images(), full_images(), unlabeled="ignore")
        assert t.candidate_set("bags", 0) == frozenset(C)
        assert t.candidate_set("police", 0) == frozenset(C)

    def test_unlabeled_unknown(self):
        with pytest.raises(ValueError, match=r"unlabeled='sky': expected 'candidates', 'ignore'"):
            table(unlabeled="sky")

    def test_old_labels_representative(self):
        t = table(old_labels="representative")
        assert t.candidate_set("old", 2) == {"car_other"}
        assert t.candidate_set("old", 0) == {"background"}

    def test_old_labels_unknown(self):
        with pytest.raises(ValueError, match=r"old_labels must be 'sets' or 'representative'"):
            table(old_labels="naive")

    def test_absent(self):
        t = table(old_images(), bag_images(absent=("police_car",)), police_images())
        assert t.candidate_set("bags", 0) == everything_but("bag", "police_car")
        assert t.candidate_set("bags", 1) == {"bag"}

    def test_absent_old_name_resolves_through_t(self):
        t = table(old_images(), bag_images(absent=("car",)), police_images())
        assert t.candidate_set("bags", 0) == {"background", "coat"}

    def test_old_images_can_say_a_new_class_is_absent(self):
        """Old images known to hold no bag: their background is background, not
        {background, bag} (negative evidence for bag when replayed)."""
        t = table(old_images(absent=("bag",)), bag_images(), police_images())
        assert t.candidate_set("old", 0) == {"background"}
        assert t.candidate_set("old", 2) == {"car_other", "police_car"}
        assert table().candidate_set("old", 0) == {"background", "bag"}

    def test_absent_unknown_name(self):
        with pytest.raises(ValueError, match=r"absent: 'boat' is neither one of the student's"):
            table(old_images(absent=("boat",)), bag_images(), police_images())


class TestErrors:
    def test_no_declarations(self):
        with pytest.raises(ValueError, match="no dataset declarations"):
            CandidateSetTable([], transition())

    def test_empty_set_from_absent(self):
        d = LabelDeclaration("bags", {1: "bag"}, absent=("bag",))
        with pytest.raises(ValueError, match=r"dataset 'bags', value 1 \('bag'\): empty candidate"):
            table(old_images(), d, police_images())

    def test_empty_set_from_exhaustive(self):
        values = {0: UNLABELED, **{i + 1: c for i, c in enumerate(C)}}
        d = LabelDeclaration("all", values)
        with pytest.raises(ValueError, match=r"dataset 'all', value 0 \('unlabeled'\): empty"):
            table(old_images(), d)

    def test_unknown_student_class(self):
        d = LabelDeclaration("boats", {0: UNLABELED, 3: "boat"})
        with pytest.raises(ValueError, match=r"dataset 'boats', value 3: 'boat' is not one of the"):
            table(old_images(), bag_images(), police_images(), d)

    def test_unknown_old_class(self):
        d = LabelDeclaration("older", {0: "background", 7: "police_car"}, vocabulary="old")
        with pytest.raises(ValueError, match=r"dataset 'older', value 7: 'police_car' is not one"):
            table(d, bag_images(), police_images())

    def test_unknown_exhaustive_name(self):
        d = LabelDeclaration("bags", {0: UNLABELED, 1: "bag"}, exhaustive=("bga",))
        with pytest.raises(ValueError, match=r"dataset 'bags', value exhaustive: 'bga'"):
            table(old_images(), d, police_images())

    def test_duplicate_dataset_names(self):
        with pytest.raises(ValueError, match=r"dataset name\(s\) \['bags'\] declared twice"):
            table(old_images(), bag_images(), bag_images(exhaustive=False))

    def test_unteachable(self):
        # Without the police images nothing separates car_other from police_car.
        with pytest.raises(ValueError, match=r"\['car_other', 'police_car'\] can never be taught"):
            table(old_images(), bag_images())

    def test_unteachable_check_can_be_disabled(self):
        t = table(old_images(), bag_images(), check_teachable=False)
        assert t.candidate_set("old", 2) == {"car_other", "police_car"}

    def test_candidate_set_undeclared(self):
        with pytest.raises(KeyError, match="dataset 'bags': value 7 is not declared"):
            table().candidate_set("bags", 7)


class TestLookup:
    def test_shape_and_values(self):
        t = table()
        mask = torch.tensor(
            [
                [[0, 1, 2], [255, 0, 1]],  # dataset 0 (old)
                [[0, 1, 255], [1, 1, 0]],  # dataset 1 (bags)
            ],
            dtype=torch.uint8,
        )
        dataset = torch.tensor([0, 1])
        sets = t.lookup(mask, dataset)
        assert sets.shape == (2, 5, 2, 3) and sets.dtype == torch.bool
        for b, name in enumerate(("old", "bags")):
            for i in range(2):
                for j in range(3):
                    got = {C[c] for c in range(5) if sets[b, c, i, j]}
                    assert got == t.candidate_set(name, int(mask[b, i, j]))
        # Spot-check one pixel against the design table directly.
        assert sets[0, :, 0, 0].tolist() == [True, False, False, True, False]

    def test_lookup_long_mask_and_dataset_order(self):
        t = table()
        mask = torch.ones(3, 4, 4, dtype=torch.long)
        sets = t.lookup(mask, torch.tensor([2, 0, 1]))
        assert sets[0, :, 0, 0].tolist() == [False, False, False, False, True]  # police
        assert sets[1, :, 0, 0].tolist() == [False, True, False, False, False]  # old: coat
        assert sets[2, :, 0, 0].tolist() == [False, False, False, True, False]  # bags

    def test_undeclared_values(self):
        t = table()
        mask = torch.tensor([[0, 1, 7], [255, 9, 7]])
        assert t.undeclared_values(1, mask) == [7, 9]
        assert t.undeclared_values(0, torch.tensor([[0, 2, 255]])) == []
        assert t.undeclared_values(2, torch.tensor([[0, 2, 300]])) == [2, 300]
