"""``python -m incremental check``, run in-process through ``main``: output and exit codes."""

from __future__ import annotations

import runpy
import sys
import warnings

import numpy as np
import pytest

from incremental.__main__ import main
from incremental.data.folders.check import check_dataset
from tests.scripts import load_test_data

generator = load_test_data("make_folder_dataset")


@pytest.fixture
def clean(tmp_path):
    return generator.make_folder_dataset(tmp_path / "clean", name="clean")


@pytest.fixture
def broken(tmp_path):
    files = generator.make_folder_dataset(tmp_path / "broken", name="broken")
    mask = files.masks[0].copy()
    mask[3, 3] = 42
    generator.save_mask(files.mask_path("img_000"), mask)
    files.image_path("img_002").unlink()
    return files


def test_clean_dataset_exits_0_with_a_summary(clean, capsys):
    assert main(["check", str(clean.yaml_path)]) == 0
    out = capsys.readouterr().out
    assert f"{clean.yaml_path}: dataset 'clean', 3 image(s)" in out
    masks = np.stack(clean.masks)
    for value, meaning in ((0, "unlabeled"), (1, "bag"), (255, "ignore")):
        row = next(
            line.split() for line in out.splitlines() if line.split()[:2] == [str(value), meaning]
        )
        assert int(row[2].replace(",", "")) == (masks == value).sum()
        assert row[4] == "3"
    assert out.rstrip().endswith("1 dataset(s) OK")


def test_problems_exit_1_one_per_line(broken, capsys):
    assert main(["check", str(broken.yaml_path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    problems = check_dataset(broken.yaml_path)
    assert len(problems) == 2
    for problem in problems:
        assert f"{problem.path}: {problem.message}" in lines
    assert any(
        "42 (1 px)" in line and line.startswith(str(broken.mask_path("img_000"))) for line in lines
    )
    assert lines[-1] == "2 problem(s) in 1 dataset(s)"


def test_several_datasets_any_problem_exits_1(clean, broken, capsys):
    assert main(["check", str(clean.yaml_path), str(broken.yaml_path)]) == 1
    out = capsys.readouterr().out
    assert "dataset 'clean', 3 image(s)" in out and "dataset 'broken', 2 image(s)" in out


def test_duplicate_dataset_names_are_a_problem(clean, tmp_path, capsys):
    other = generator.make_folder_dataset(tmp_path / "other", name="clean")
    assert main(["check", str(clean.yaml_path), str(other.yaml_path)]) == 1
    out = capsys.readouterr().out
    assert f"{other.yaml_path}: dataset name 'clean' is also used by {clean.yaml_path}" in out


def test_classes_option(clean, capsys):
    assert main(["check", str(clean.yaml_path), "--classes", "background, bag"]) == 0
    assert main(["check", str(clean.yaml_path), "--classes", "background,coat"]) == 1
    out = capsys.readouterr().out
    assert f"{clean.yaml_path}: labels: value 1: class 'bag' is not one of" in out


def test_missing_yaml_is_a_problem(tmp_path, capsys):
    path = tmp_path / "nope.yaml"
    assert main(["check", str(path)]) == 1
    assert f"{path}: cannot read the dataset YAML" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [[], ["check"], ["nope"], ["check", "x.yaml", "--classes", "a,,b"], ["check", "--bad", "x"]],
)
def test_usage_errors_exit_2(argv, capsys):
    assert main(argv) == 2
    assert "usage:" in capsys.readouterr().err


def test_help_exits_0(capsys):
    assert main(["check", "--help"]) == 0
    assert "DATASET.yaml" in capsys.readouterr().out


def test_module_entry_point(clean, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["incremental", "check", str(clean.yaml_path)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # __main__ is already imported above
        with pytest.raises(SystemExit) as caught:
            runpy.run_module("incremental", run_name="__main__")
    assert caught.value.code == 0
    assert "1 dataset(s) OK" in capsys.readouterr().out
