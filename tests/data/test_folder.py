"""Folder datasets (``incremental.data.folders``) and their check (``folders.check``).

Each problem test writes a tiny tree with the committed generator, breaks one thing and checks
that the problem names the file and the value.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from incremental.data import DatasetError, Problem
from incremental.data.core import SampleDataset, SegmentationSource
from incremental.data.folders import FolderDataset
from incremental.data.folders.check import check_dataset, inspect_dataset
from incremental.labels import Split, Transition
from tests.scripts import load_test_data

generator = load_test_data("make_folder_dataset")
make_folder_dataset, save_mask, write_yaml = (
    generator.make_folder_dataset,
    generator.save_mask,
    generator.write_yaml,
)

CLASSES = ["background", "coat", "bag"]
TRANSITION = Transition(("background", "coat"), new_classes=("bag",))


@pytest.fixture
def toy(tmp_path):
    return make_folder_dataset(tmp_path / "toy")


def only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, "\n".join(map(str, problems))
    return problems[0]


def set_labels(files, labels) -> None:
    config = yaml.safe_load(files.yaml_path.read_text())
    config["labels"] = labels
    write_yaml(files.yaml_path, config)


def cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# ---------------------------------------------------------------------------------- clean data
def test_clean_dataset_has_no_problems(toy):
    assert check_dataset(toy.yaml_path) == []
    assert check_dataset(toy.yaml_path, classes=CLASSES) == []
    assert check_dataset(toy.yaml_path, transition=TRANSITION) == []


def test_report_counts_values(toy):
    report = inspect_dataset(toy.yaml_path)
    assert report.num_images == 3
    masks = np.stack(toy.masks)
    for value in (0, 1, 255):
        assert report.pixel_counts[value] == (masks == value).sum()
        assert report.image_counts[value] == 3
    assert report.pixel_counts.sum() == masks.size


def test_loads_the_arrays_written(toy):
    dataset = FolderDataset(toy.yaml_path)
    assert isinstance(dataset, SegmentationSource)
    assert len(dataset) == 3 and dataset.stems == toy.stems
    assert dataset.name == dataset.declaration.name == "new_bags"
    assert dict(dataset.declaration.values) == {0: "unlabeled", 1: "bag", 255: "ignore"}
    for i in range(3):
        image, mask = dataset.load(i)
        assert image.shape == (12, 16, 3) and mask.shape == (12, 16)
        assert image.dtype == mask.dtype == np.uint8
        np.testing.assert_array_equal(image, toy.images[i])
        np.testing.assert_array_equal(mask, toy.masks[i])
    # DataLoader workers receive the dataset pickled.
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(dataset)).load(2)[1], toy.masks[2])
    sample = SampleDataset(dataset, dataset_index=0)[1]
    assert sample["image"].shape == (3, 12, 16) and sample["mask"].shape == (12, 16)


def test_files_sorted_by_stem(toy):
    for stem in ("b_late", "a_early"):
        shutil.copy(toy.image_path("img_000"), toy.root / "images" / f"{stem}.png")
        shutil.copy(toy.mask_path("img_000"), toy.root / "masks" / f"{stem}.png")
    dataset = FolderDataset(toy.yaml_path)
    assert dataset.stems == ["a_early", "b_late", *toy.stems]
    assert [p.stem for p in dataset.mask_paths] == dataset.stems


def test_grayscale_and_jpeg_images_become_rgb(tmp_path):
    files = make_folder_dataset(tmp_path, image_format="JPEG")
    gray = np.arange(12 * 16, dtype=np.uint8).reshape(12, 16)
    Image.fromarray(gray).save(files.image_path("img_001"), format="JPEG", quality=100)
    assert check_dataset(files.yaml_path) == []
    dataset = FolderDataset(files.yaml_path)
    image, _ = dataset.load(0)
    assert image.shape == (12, 16, 3) and image.dtype == np.uint8
    image, _ = dataset.load(1)
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
    assert np.abs(image[..., 0].astype(int) - gray).max() <= 3  # JPEG is lossy


def test_indexed_masks_read_as_palette_indices(tmp_path):
    files = make_folder_dataset(tmp_path, mask_mode="P")
    assert Image.open(files.mask_path("img_000")).mode == "P"
    assert check_dataset(files.yaml_path) == []
    np.testing.assert_array_equal(FolderDataset(files.yaml_path).load(2)[1], files.masks[2])


def test_name_defaults_to_yaml_stem_and_paths_are_relative_to_yaml(tmp_path, monkeypatch):
    files = make_folder_dataset(tmp_path / "data", name=None, yaml_name="my_set.yaml")
    config = yaml.safe_load(files.yaml_path.read_text())
    config.update(images="../data/images", masks="../data/masks")
    (tmp_path / "configs").mkdir()
    write_yaml(tmp_path / "configs" / "my_set.yaml", config)
    monkeypatch.chdir(tmp_path / "data")  # the working directory must not matter
    dataset = FolderDataset(tmp_path / "configs" / "my_set.yaml")
    assert dataset.name == dataset.declaration.name == "my_set"
    assert len(dataset) == 3


def test_hidden_and_system_files_are_skipped(toy):
    (toy.root / "images" / ".DS_Store").write_bytes(b"\0junk")
    (toy.root / "masks" / "Thumbs.db").write_bytes(b"\0junk")
    (toy.root / "images" / "sub").mkdir()
    assert check_dataset(toy.yaml_path) == []


# ---------------------------------------------------------------------------------- the YAML
@pytest.mark.parametrize(
    "text, expected",
    [
        (None, "cannot read the dataset YAML"),
        ("labels: [unclosed\n", "cannot read the dataset YAML"),
        ("- just\n- a list\n", "must be a mapping"),
        ("", "got empty"),
    ],
)
def test_yaml_unreadable(tmp_path, text, expected):
    path = tmp_path / "dataset.yaml"
    if text is not None:
        path.write_text(text)
    problem = only(check_dataset(path))
    assert problem.path == str(path) and expected in problem.message


def test_yaml_missing_labels(toy):
    write_yaml(toy.yaml_path, {"name": "x"})
    problem = only(check_dataset(toy.yaml_path))
    assert problem.path == str(toy.yaml_path) and "missing key 'labels'" in problem.message


def test_yaml_unknown_key_and_bad_folder_type(toy):
    config = yaml.safe_load(toy.yaml_path.read_text())
    config.update(mask="masks", images=3)
    write_yaml(toy.yaml_path, config)
    problems = check_dataset(toy.yaml_path)
    assert [p.path for p in problems] == [str(toy.yaml_path)] * 2
    assert "unknown key(s) ['mask']" in problems[0].message
    assert "'images' must be a non-empty string, got 3" in problems[1].message


@pytest.mark.parametrize(
    "labels, expected",
    [
        ({"values": {0: "unlabeled", 255: "bag"}}, "value 255 is reserved for 'ignore'"),
        ({"values": {0: "bag"}, "vocabulary": "new"}, "vocabulary 'new'"),
        ({"values": {"x": "bag"}}, "label value 'x' is not an integer"),
        ({"valuez": {0: "bag"}}, "unknown key(s) ['valuez']"),
        ("bag", "'labels' must be a mapping"),
    ],
)
def test_invalid_declaration(toy, labels, expected):
    set_labels(toy, labels)
    problem = only(check_dataset(toy.yaml_path))
    assert problem.path == str(toy.yaml_path) and expected in problem.message


# ---------------------------------------------------------------------------------- the folders
@pytest.mark.parametrize("folder", ["images", "masks"])
def test_missing_folder(toy, folder):
    shutil.rmtree(toy.root / folder)
    problem = only(check_dataset(toy.yaml_path))
    assert problem.path == str(toy.root / folder)
    assert f"{folder} folder not found" in problem.message


def test_empty_dataset(toy):
    for folder in ("images", "masks"):
        for path in (toy.root / folder).iterdir():
            path.unlink()
    problem = only(check_dataset(toy.yaml_path))
    assert problem.path == str(toy.root / "images") and "empty dataset" in problem.message


def test_image_without_mask_and_mask_without_image(toy):
    toy.mask_path("img_001").unlink()
    toy.image_path("img_002").unlink()
    problems = check_dataset(toy.yaml_path)
    assert [p.path for p in problems] == [
        str(toy.image_path("img_001")),
        str(toy.mask_path("img_002")),
    ]
    assert "image has no mask" in problems[0].message
    assert str(toy.mask_path("img_001")) in problems[0].message
    assert "mask has no image" in problems[1].message
    assert str(toy.root / "images" / "img_002.png") in problems[1].message


def test_no_pairs_at_all_is_empty(toy):
    for stem in toy.stems:
        toy.mask_path(stem).rename(toy.root / "masks" / f"other_{stem}.png")
    problems = check_dataset(toy.yaml_path)
    assert len(problems) == 7  # 3 images without masks, 3 masks without images, empty
    assert problems[-1].path == str(toy.root / "images") and "empty" in problems[-1].message


def test_jpeg_mask_stray_file_and_duplicate_stem(toy):
    shutil.copy(toy.image_path("img_000"), toy.root / "masks" / "img_009.jpg")
    (toy.root / "images" / "notes.txt").write_text("hello")
    shutil.copy(toy.image_path("img_001"), toy.root / "images" / "img_001.jpeg")
    problems = {Path(p.path).name: p.message for p in check_dataset(toy.yaml_path)}
    assert "not a mask file" in problems["img_009.jpg"] and "JPEG" in problems["img_009.jpg"]
    assert "not an image file" in problems["notes.txt"]
    assert "several images with stem 'img_001'" in problems["img_001.jpeg"]
    assert "img_001.png" in problems["img_001.jpeg"]


# ---------------------------------------------------------------------------------- the files
@pytest.mark.parametrize("kind", ["image", "mask"])
def test_truncated_file(toy, kind):
    path = toy.image_path("img_001") if kind == "image" else toy.mask_path("img_001")
    cut_in_half(path)
    Image.open(path)  # the header alone still opens: only decoding finds the cut
    problem = only(check_dataset(toy.yaml_path))
    assert problem.path == str(path) and f"cannot read {kind}" in problem.message
    assert "truncated" in problem.message or "broken" in problem.message


@pytest.mark.parametrize("kind", ["image", "mask"])
def test_unreadable_file(toy, kind):
    path = toy.image_path("img_002") if kind == "image" else toy.mask_path("img_002")
    path.write_bytes(b"this is not a PNG")
    problem = only(check_dataset(toy.yaml_path))
    assert problem.path == str(path) and f"cannot read {kind}" in problem.message


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_wrong_mask_mode(toy, mode):
    path = toy.mask_path("img_000")
    Image.open(path).convert(mode).save(path)
    problem = only(check_dataset(toy.yaml_path))
    assert problem.path == str(path) and f"mask mode is {mode!r}" in problem.message
    assert "'L'" in problem.message and "'P'" in problem.message


def test_size_mismatch(toy):
    path = toy.mask_path("img_002")
    save_mask(path, toy.masks[2][:10])
    problem = only(check_dataset(toy.yaml_path))
    assert problem.path == str(path)
    assert "mask size 16x10 does not match image size 16x12" in problem.message
    assert str(toy.image_path("img_002")) in problem.message


def test_transposed_size_hints_at_exif(toy):
    save_mask(toy.mask_path("img_000"), np.ascontiguousarray(toy.masks[0].T))
    assert "transposed" in only(check_dataset(toy.yaml_path)).message


def test_undeclared_values_listed_with_pixel_counts(toy):
    mask = toy.masks[1].copy()
    mask[-1, :5] = 2
    mask[-2, 0] = 7
    save_mask(toy.mask_path("img_001"), mask)
    problem = only(check_dataset(toy.yaml_path))
    assert problem.path == str(toy.mask_path("img_001"))
    assert "undeclared mask value(s) 2 (5 px), 7 (1 px)" in problem.message
    assert "declared: 0, 1, 255" in problem.message


def test_undeclared_255_explains_the_reserved_value(toy):
    set_labels(toy, {"values": {0: "unlabeled", 1: "bag"}})
    problems = check_dataset(toy.yaml_path)
    assert [p.path for p in problems] == [str(toy.mask_path(s)) for s in toy.stems]
    assert "255 (16 px)" in problems[0].message and "reserved for 'ignore'" in problems[0].message


# ---------------------------------------------------------------------------------- class names
def test_unknown_class_names_all_reported(toy):
    set_labels(
        toy,
        {"values": {0: "unlabeled", 1: "bagg", 255: "ignore"}, "absent": ["coat", "hat"]},
    )
    problems = check_dataset(toy.yaml_path, classes=CLASSES)
    assert [p.path for p in problems] == [str(toy.yaml_path)] * 2
    assert "value 1: class 'bagg' is not one of the experiment's classes" in problems[0].message
    assert "absent: class 'hat'" in problems[1].message
    assert check_dataset(toy.yaml_path) == []  # without classes, names are not checked


def test_unknown_names_with_a_transition(toy):
    # Old vocabulary: names are the teacher's, and 'bag' is new in this step.
    set_labels(toy, {"values": {0: "background", 1: "bag", 255: "ignore"}, "vocabulary": "old"})
    problem = only(check_dataset(toy.yaml_path, transition=TRANSITION))
    assert problem.path == str(toy.yaml_path)
    assert "value 1: class 'bag' is not one of the teacher's classes" in problem.message


def test_transition_resolution_errors_are_reported(toy):
    # Known names, but the value's candidate set is empty: the table says so.
    set_labels(toy, {"values": {0: "unlabeled", 1: "bag", 255: "ignore"}, "absent": ["bag"]})
    problem = only(check_dataset(toy.yaml_path, transition=TRANSITION))
    assert "value 1" in problem.message and "empty candidate set" in problem.message


def test_split_parent_name_resolves_in_student_vocabulary(toy):
    transition = Transition(("background", "bag"), splits=(Split.of("bag", ["tote"]),))
    assert check_dataset(toy.yaml_path, transition=transition) == []


# ---------------------------------------------------------------------------------- all at once
def test_every_problem_reported_at_once(toy):
    config = yaml.safe_load(toy.yaml_path.read_text())
    config["extra"] = 1
    config["labels"]["values"][1] = "bagg"
    write_yaml(toy.yaml_path, config)
    cut_in_half(toy.image_path("img_000"))
    mask = toy.masks[1].copy()
    mask[5, 5] = 9
    save_mask(toy.mask_path("img_001"), mask)
    toy.mask_path("img_002").unlink()
    problems = check_dataset(toy.yaml_path, classes=CLASSES)
    assert [p.path for p in problems] == [
        str(toy.yaml_path),
        str(toy.yaml_path),
        str(toy.image_path("img_002")),
        str(toy.image_path("img_000")),
        str(toy.mask_path("img_001")),
    ]
    assert "'extra'" in problems[0].message and "'bagg'" in problems[1].message
    assert "9 (1 px)" in problems[4].message


# ---------------------------------------------------------------------------------- refusal
def test_folder_dataset_refuses_bad_data_with_every_problem(toy):
    cut_in_half(toy.mask_path("img_000"))
    toy.image_path("img_002").unlink()
    expected = check_dataset(toy.yaml_path)
    assert len(expected) == 2
    with pytest.raises(DatasetError) as caught:
        FolderDataset(toy.yaml_path)
    assert isinstance(caught.value, ValueError)
    assert caught.value.problems == expected
    for problem in expected:
        assert str(problem) in str(caught.value)


def test_folder_dataset_refuses_unknown_class_names(toy):
    with pytest.raises(DatasetError, match="class 'bag' is not one of"):
        FolderDataset(toy.yaml_path, classes=["background"])
    assert len(FolderDataset(toy.yaml_path, transition=TRANSITION)) == 3


def test_without_validation_load_names_the_bad_file(toy):
    cut_in_half(toy.mask_path("img_001"))
    Image.open(toy.image_path("img_002")).convert("RGB").save(toy.mask_path("img_002"))
    dataset = FolderDataset(toy.yaml_path, validate=False)
    assert len(dataset) == 3
    with pytest.raises(DatasetError, match=r"img_001\.png: cannot read mask"):
        dataset.load(1)
    with pytest.raises(DatasetError, match=r"img_002\.png: mask mode is 'RGB'"):
        dataset.load(2)
    # The pairing costs no decoding and is checked even so.
    toy.mask_path("img_000").unlink()
    with pytest.raises(DatasetError, match="image has no mask"):
        FolderDataset(toy.yaml_path, validate=False)


def test_dataset_error_survives_pickling_and_plain_construction():
    problems = [Problem("a.png", "bad")]
    error = DatasetError.from_problems("dataset x", problems)
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error) == "dataset x: 1 problem(s):\n  a.png: bad"
    assert copy.problems == problems
    assert str(DatasetError("message only")) == "message only"  # as DataLoader re-raises it
