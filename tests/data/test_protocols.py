"""Tests of the MiB paper protocols (VOC 2012, ADE20K) on tiny generated trees with the real
directory layout: task definitions, image filtering, label remapping, declarations, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from incremental.constants import IGNORE_INDEX
from incremental.data.core import SampleDataset, SegmentationSource
from incremental.data.paper.ade import ADE_CLASSES, ADE20KSegmentation
from incremental.data.paper.protocols import (
    PaperStepSource,
    compute_label_sets,
    eval_declaration,
    filter_indices,
    paper_step_datasets,
    step_lut,
    train_declaration,
)
from incremental.data.paper.tasks import TASKS, seen_classes, step_transition, task_steps
from incremental.data.paper.voc import VOC_CLASSES, VOCSegmentation
from incremental.labels import CandidateSetTable
from tests.scripts import load_test_data

trees = load_test_data("make_paper_trees")


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory) -> Path:
    return trees.make_voc_tree(tmp_path_factory.mktemp("paper"))


@pytest.fixture(scope="module")
def ade_root(tmp_path_factory) -> Path:
    return trees.make_ade_tree(tmp_path_factory.mktemp("paper"))


def stems(source: PaperStepSource) -> list[str]:
    return sorted(source.stems)


# ------------------------------------------------------------------------------ tasks
class TestTasks:
    @pytest.mark.parametrize(
        ("dataset", "task", "sizes"),
        [
            ("voc", "19-1", [20, 1]),
            ("voc", "15-5", [16, 5]),
            ("voc", "15-1", [16, 1, 1, 1, 1, 1]),
            ("voc", "10-1", [11] + [1] * 10),
            ("voc", "offline", [21]),
            ("ade", "100-50", [101, 50]),
            ("ade", "100-10", [101] + [10] * 5),
            ("ade", "50-50", [51, 50, 50]),
        ],
    )
    def test_step_sizes_and_order(self, dataset, task, sizes):
        steps = task_steps(dataset, task)
        assert [len(s) for s in steps] == sizes
        # Every class exactly once, added in index order (MiB's default order).
        num_classes = len(VOC_CLASSES if dataset == "voc" else ADE_CLASSES)
        assert [c for s in steps for c in s] == list(range(num_classes))

    def test_voc_15_1_steps(self):
        assert task_steps("voc", "15-1") == [list(range(16)), [16], [17], [18], [19], [20]]
        assert task_steps("voc", "15-5s") == task_steps("voc", "15-1")  # MiB's name

    def test_ade_100_10_ranges(self):
        steps = task_steps("ade", "100-10")
        assert steps[1] == list(range(101, 111)) and steps[-1] == list(range(141, 151))
        assert task_steps("ade", "50") == task_steps("ade", "50-50")

    def test_task_steps_is_a_copy(self):
        task_steps("voc", "19-1")[1].append(99)
        assert TASKS["voc"]["19-1"][1] == [20]

    def test_class_names(self):
        assert len(VOC_CLASSES) == 21 and VOC_CLASSES[15] == "person"
        assert VOC_CLASSES[20] == "tvmonitor"
        assert len(ADE_CLASSES) == 151 and len(set(ADE_CLASSES)) == 151
        assert ADE_CLASSES[:3] == ("background", "wall", "building")
        assert ADE_CLASSES[45] == "chest_of_drawers" and ADE_CLASSES[150] == "flag"

    def test_unknown_names_list_known_ones(self):
        with pytest.raises(ValueError, match=r"unknown voc task '15-2'.*'15-1'"):
            task_steps("voc", "15-2")
        with pytest.raises(ValueError, match=r"unknown dataset 'cityscapes'.*'voc', 'ade'"):
            task_steps("cityscapes", "15-1")
        with pytest.raises(ValueError, match=r"steps 0\.\.1; got step 2"):
            step_transition("voc", "19-1", 2)
        with pytest.raises(ValueError, match="unknown mode 'mixed'"):
            filter_indices([{1}], [1], [1], "mixed")


class TestTransition:
    def test_later_step(self):
        t = step_transition("voc", "15-1", 2)
        assert t.old_classes == VOC_CLASSES[:17]
        assert t.new_classes == ("sheep",)
        assert t.hidden_under == "background"
        # Student class i is label value i: the masks need no re-indexing.
        assert t.student_classes == VOC_CLASSES[:18]

    def test_step_zero_is_base_training(self):
        t = step_transition("ade", "100-50", 0)
        assert t.student_classes == ADE_CLASSES[:101] and t.new_classes == ()

    def test_seen_classes(self):
        assert seen_classes("voc", "15-5", 1) == list(range(21))
        assert seen_classes("ade", "50-50", 1) == list(range(101))


# ------------------------------------------------------------------------------ filtering
class TestFilterIndices:
    def test_hand_example(self):
        sets = [{0, 255}, {0, 1}, {0, 2}, {1, 3}, {2, 255}]
        assert filter_indices(sets, [2], [0, 1, 2], "overlap") == [2, 4]
        assert filter_indices(sets, [1], [0, 1], "overlap") == [1, 3]
        assert filter_indices(sets, [1], [0, 1], "disjoint") == [1]  # image 3 shows future 3

    def test_background_and_ignore_never_select(self):
        assert filter_indices([{0}, {255}, {0, 255}], [0, 1], [0, 1]) == []


VOC_EXPECTED = [
    # task, step, overlap stems, disjoint stems (worked out from make_paper_trees.VOC_TRAIN)
    ("15-1", 0, "b c e g j l", "b c j"),
    ("15-1", 1, "d e i", "d e"),
    ("15-1", 2, "f i l", "f i l"),
    ("15-1", 5, "g k", "g k"),
    ("15-5", 1, "d e f g h i k l", "d e f g h i k l"),
    ("19-1", 0, "b c d e f g h i j l", "b c d e f h i j l"),
    ("19-1", 1, "g k", "g k"),
]


def _voc_stems(letters: str) -> list[str]:
    return sorted(s for s in trees.VOC_TRAIN if s[0] in letters.split())


class TestFilteringOnTrees:
    @pytest.mark.parametrize(("task", "step", "overlap", "disjoint"), VOC_EXPECTED)
    def test_voc(self, voc_root, task, step, overlap, disjoint):
        for mode, expected in (("overlap", overlap), ("disjoint", disjoint)):
            got = paper_step_datasets("voc", voc_root, task, step, mode)
            assert stems(got.train) == _voc_stems(expected), mode

    @pytest.mark.parametrize(
        ("task", "step", "overlap", "disjoint"),
        [
            ("50-50", 0, [1, 3, 7], [1]),
            ("50-50", 1, [4], [4]),
            ("100-10", 1, [2, 7], [2, 7]),
            ("100-10", 2, [3, 8], [3, 8]),
            ("100-50", 1, [2, 3, 5, 7, 8], [2, 3, 5, 7, 8]),
        ],
    )
    def test_ade(self, ade_root, task, step, overlap, disjoint):
        for mode, expected in (("overlap", overlap), ("disjoint", disjoint)):
            got = paper_step_datasets("ade", ade_root, task, step, mode)
            assert stems(got.train) == [f"ADE_train_{i:08d}" for i in expected], mode

    def test_label_sets_cached(self, voc_root, tmp_path, monkeypatch):
        source = VOCSegmentation(voc_root, "train")
        first = compute_label_sets(source, tmp_path)
        cached = json.loads((tmp_path / "voc-train-label-sets.json").read_text())
        assert cached["stems"] == source.stems
        assert first[source.stems.index("c_cat_dog")] == {0, 8, 12, 255}

        def no_reading(index):
            raise AssertionError("masks read again although the cache is valid")

        monkeypatch.setattr(source, "load_mask", no_reading)
        assert compute_label_sets(source, tmp_path) == first
        # A different image list invalidates the cache.
        monkeypatch.undo()
        source.stems = source.stems[:-1] + ["renamed"]
        assert compute_label_sets(source, tmp_path) == first
        assert json.loads((tmp_path / "voc-train-label-sets.json").read_text())["stems"][-1] == (
            "renamed"
        )


# ------------------------------------------------------------------------------ remapping
class TestRemapping:
    def test_lut(self):
        lut = step_lut([0, 16], num_classes=21)
        assert lut.dtype == np.uint8 and lut.shape == (256,)
        assert lut[16] == 16 and lut[15] == 0 and lut[20] == 0 and lut[0] == 0
        assert lut[IGNORE_INDEX] == IGNORE_INDEX and lut[21] == IGNORE_INDEX

    def test_training_sample(self, voc_root):
        step = paper_step_datasets("voc", voc_root, "15-1", 1)
        raw = VOCSegmentation(voc_root, "train")
        i = step.train.stems.index("e_person_plant")
        image, mask = step.train.load(i)
        raw_image, raw_mask = raw.load(raw.stems.index("e_person_plant"))
        assert image.shape == (24, 32, 3) and image.dtype == np.uint8
        assert mask.shape == (24, 32) and mask.dtype == np.uint8
        np.testing.assert_array_equal(image, raw_image)
        # The current class is kept, the old class (person) becomes 0, 255 stays ignore.
        np.testing.assert_array_equal(mask == 16, raw_mask == 16)
        np.testing.assert_array_equal(mask == IGNORE_INDEX, raw_mask == IGNORE_INDEX)
        assert set(np.unique(raw_mask)) == {0, 15, 16, 255}
        assert set(np.unique(mask)) == {0, 16, 255}
        assert (mask[raw_mask == 15] == 0).all()

    def test_step_zero_hides_future_classes(self, voc_root):
        step = paper_step_datasets("voc", voc_root, "15-1", 0)
        _, mask = step.train.load(step.train.stems.index("g_cat_tv"))
        assert set(np.unique(mask)) == {0, 8, 255}

    def test_eval_keeps_seen_classes(self, voc_root):
        at_start = paper_step_datasets("voc", voc_root, "15-1", 0)
        # Images showing no seen class are left out, as in MiB's test set.
        assert stems(at_start.eval) == ["v_cat_tv", "v_person"]
        _, mask = at_start.eval.load(at_start.eval.stems.index("v_cat_tv"))
        assert set(np.unique(mask)) == {0, 8, 255}  # tvmonitor (20) not seen yet
        at_end = paper_step_datasets("voc", voc_root, "15-1", 5)
        assert stems(at_end.eval) == ["v_cat_tv", "v_person", "v_plant"]
        _, mask = at_end.eval.load(at_end.eval.stems.index("v_cat_tv"))
        assert set(np.unique(mask)) == {0, 8, 20, 255}

    def test_ade_zero_is_background(self, ade_root):
        step = paper_step_datasets("ade", ade_root, "100-50", 1)
        _, mask = step.eval.load(step.eval.stems.index("ADE_val_00000001"))
        assert set(np.unique(mask)) == {0, 1, 150}
        _, mask = step.train.load(step.train.stems.index("ADE_train_00000003"))
        assert set(np.unique(mask)) == {0, 120}  # person (13) is old: unlabeled

    def test_sample_dataset(self, voc_root):
        step = paper_step_datasets("voc", voc_root, "19-1", 1)
        assert isinstance(step.train, SegmentationSource)
        sample = SampleDataset(step.train, dataset_index=0)[0]
        assert sample["image"].shape == (3, 24, 32) and sample["mask"].shape == (24, 32)


# ------------------------------------------------------------------------------ declarations
class TestDeclarations:
    def test_training_declarations(self):
        d = train_declaration("voc", "15-1", 1)
        assert d.vocabulary == "student" and d.exhaustive is True
        assert dict(d.values) == {0: "unlabeled", 16: "pottedplant", 255: "ignore"}
        base = train_declaration("voc", "15-1", 0)
        assert base.vocabulary == "old" and base.values[0] == "background"
        assert base.values[15] == "person" and 16 not in base.values

    def test_candidate_sets_at_a_step(self, voc_root):
        step = paper_step_datasets("voc", voc_root, "15-1", 2)
        table = CandidateSetTable(
            [s.declaration for s in (step.train, step.eval, *step.replay)],
            step.transition,
        )
        classes = set(step.transition.student_classes)
        assert len(classes) == 18
        train, evaluation = step.train.declaration.name, step.eval.declaration.name
        # MiB's unbiased CE: an unlabeled pixel is the background or an old class.
        assert table.candidate_set(train, 0) == classes - {"sheep"}
        assert table.candidate_set(train, 17) == {"sheep"}
        assert table.candidate_set(evaluation, 0) == {"background"}
        assert table.candidate_set(evaluation, 16) == {"pottedplant"}
        replay0, replay1 = (r.declaration.name for r in step.replay)
        # Old images labeled at step 0 may hide any later class under 0.
        assert table.candidate_set(replay0, 0) == {"background", "pottedplant", "sheep"}
        assert table.candidate_set(replay1, 0) == classes - {"pottedplant"}
        assert [len(r) for r in step.replay] == [6, 3]
        assert step.info["n_train"] == 3 and step.info["mode"] == "overlap"

    def test_step_zero_table(self):
        t = step_transition("voc", "15-5", 0)
        d = train_declaration("voc", "15-5", 0)
        table = CandidateSetTable([d, eval_declaration("voc", "15-5", 0)], t)
        assert table.candidate_set(d.name, 0) == {"background"}
        # The same base data read at step 1: the new classes may hide in its background.
        # (Alone it cannot teach the new classes, hence no teachability check.)
        table = CandidateSetTable([d], step_transition("voc", "15-5", 1), check_teachable=False)
        assert table.candidate_set(d.name, 0) == {"background", *VOC_CLASSES[16:]}


# ------------------------------------------------------------------------------ errors
class TestMissingPaths:
    def test_voc_missing_root_and_folders(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="Pascal VOC 2012 folder"):
            VOCSegmentation(tmp_path / "nowhere")
        with pytest.raises(FileNotFoundError, match="JPEGImages"):
            VOCSegmentation(tmp_path)
        (tmp_path / "JPEGImages").mkdir()
        with pytest.raises(FileNotFoundError, match=r"train_aug\.txt.*one image stem per line"):
            VOCSegmentation(tmp_path, "train")
        (tmp_path / "splits").mkdir()  # MiB keeps its lists here
        (tmp_path / "splits" / "val.txt").write_text("2007_000001\n")
        with pytest.raises(FileNotFoundError, match="SegmentationClassAug.*label PNGs"):
            VOCSegmentation(tmp_path, "val")
        (tmp_path / "SegmentationClassAug").mkdir()
        with pytest.raises(FileNotFoundError, match=r"1 image\(s\) not found: .*2007_000001\.jpg"):
            VOCSegmentation(tmp_path, "val")
        with pytest.raises(ValueError, match="VOC split 'test'"):
            VOCSegmentation(tmp_path, "test")

    def test_voc_missing_mask(self, voc_root, tmp_path):
        listing = tmp_path / "list.txt"
        listing.write_text("b_person\n/JPEGImages/b_person.jpg /SegmentationClassAug/gone.png\n")
        with pytest.raises(FileNotFoundError, match=r"mask\(s\) not found: .*gone\.png"):
            VOCSegmentation(voc_root, list_file=listing)

    def test_voc_colour_mask(self, voc_root, tmp_path):
        root = tmp_path / "VOC2012"
        (root / "JPEGImages").mkdir(parents=True)
        (root / "SegmentationClassAug").mkdir()
        Image.new("RGB", (32, 24)).save(root / "JPEGImages" / "x.jpg")
        Image.new("RGB", (32, 24)).save(root / "SegmentationClassAug" / "x.png")
        (root / "list.txt").write_text("x\n")
        source = VOCSegmentation(root, list_file=root / "list.txt")
        with pytest.raises(ValueError, match="mask mode is 'RGB'"):
            source.load(0)

    def test_ade_missing(self, ade_root, tmp_path):
        with pytest.raises(FileNotFoundError, match="ADEChallengeData2016"):
            ADE20KSegmentation(tmp_path / "nowhere")
        (tmp_path / "images" / "training").mkdir(parents=True)
        with pytest.raises(FileNotFoundError, match=r"annotations/training.*values 0-150"):
            ADE20KSegmentation(tmp_path)
        (tmp_path / "annotations" / "training").mkdir(parents=True)
        with pytest.raises(FileNotFoundError, match="no .jpg images"):
            ADE20KSegmentation(tmp_path)
        Image.new("RGB", (32, 24)).save(tmp_path / "images" / "training" / "ADE_x.jpg")
        with pytest.raises(FileNotFoundError, match=r"mask\(s\) not found: .*ADE_x\.png"):
            ADE20KSegmentation(tmp_path)
        assert len(ADE20KSegmentation(ade_root, "val")) == len(trees.ADE_VAL)

    def test_no_images_for_a_step(self, voc_root):
        # No fake image shows diningtable (11), the class of 10-1's step 1.
        with pytest.raises(ValueError, match="no images in the overlap training split"):
            paper_step_datasets("voc", voc_root, "10-1", 1)
