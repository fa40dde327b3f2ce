"""Bad inputs and faults, as a user meets them: each is a named error (exit code 2, nothing
written) or a warning, never a traceback, and nothing already there is lost."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from experiments.run import main
from incremental.__main__ import main as cli
from incremental.models import create_model, save_model_file

FAST = {"epochs": 1, "batch_size": 4, "progress_bar": False, "limit_train_batches": 2}
TINY = {
    "name": "bad",
    "scenarios": ["fashion-new-class"],
    "strategies": ["finetune"],
    "wandb": "disabled",
    "jobs": 1,
    "model": {"name": "tiny-unet"},
    "train_old": FAST,
    "train": FAST,
    "scenario_overrides": {
        "fashion": {
            "sizes": {"old_train": 12, "new_train": 8, "val": 4, "test": 4, "old_val": 4},
            "image_size": 32,
            "items_per_scene": [1, 2],
        }
    },
}


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**TINY, "cache_dir": str(tmp_path / "cache")}))
    return path


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# ---------------------------------------------------------------------- data loss
def test_overwrite_with_a_typo_keeps_the_previous_experiment(tmp_path, config, capsys):
    out = tmp_path / "out"
    assert main([str(config), "--output", str(out)]) == 0
    before = _snapshot(out)
    typo = ["--overwrite", "--strategies", "finetunee"]
    assert main([str(config), "--output", str(out), *typo]) == 2
    assert "unknown strategy 'finetunee'" in capsys.readouterr().err
    assert _snapshot(out) == before  # byte-identical, nothing moved, nothing written


def test_overwrite_moves_the_previous_experiment_aside(tmp_path, config, capsys):
    out = tmp_path / "out"
    assert main([str(config), "--output", str(out)]) == 0
    results = (out / "results.csv").read_bytes()
    assert main([str(config), "--output", str(out), "--overwrite"]) == 0
    assert "previous experiment is now in" in capsys.readouterr().out
    assert (out / "previous" / "results.csv").read_bytes() == results
    assert (out / "results.csv").is_file()


def test_a_failed_start_leaves_nothing(tmp_path, config):
    out = tmp_path / "out"
    assert main([str(config), "--output", str(out), "--set", "train.epochs=0"]) == 2
    assert not out.exists()


def test_a_second_run_into_a_busy_folder_is_refused(tmp_path, config, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".lock").write_text(f"{os.getppid()} {socket.gethostname()}")  # a live process
    assert main([str(config), "--output", str(out)]) == 2
    assert f"in use by process {os.getppid()}" in capsys.readouterr().err
    (out / ".lock").write_text(f"999999999 {socket.gethostname()}")  # a process that ended
    assert main([str(config), "--output", str(out)]) == 0
    assert "taking over" in capsys.readouterr().out
    assert not (out / ".lock").exists()


# ---------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seeds", "0,0"], "seeds: expected distinct integers"),
        (["--set", "train.epochs=0"], "train.epochs: 0 must be a number >= 1"),
        (["--set", "train.epochs=-1"], "train.epochs: -1"),
        (["--set", "train.lr=0"], "train.lr: 0.0 must be > 0"),
        (["--set", "train.batch_size=0"], "train.batch_size: 0"),
        (["--set", "train.epoch_size=0"], "train.epoch_size: 0"),
        (["--set", "model.name=nope"], "model: unknown model 'nope'"),
        (["--set", "train.optimizer=adam"], "train.optimizer: 'adam' is not one of"),
        (["--set", "train.augment=flipp"], "train.augment: 'flipp' is not one of"),
        (["--set", "train.on_non_finite=ignore"], "train.on_non_finite: 'ignore'"),
        (["--set", "train_old.max_skipped_share=1.5"], "train_old.max_skipped_share"),
    ],
)
def test_config_errors_name_the_key(tmp_path, config, capsys, args, message):
    out = tmp_path / "out"
    assert main([str(config), "--output", str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_asked_for_without_one(tmp_path, config, capsys):
    args = ["--set", "train.accelerator=gpu"]
    assert main([str(config), "--output", str(tmp_path / "o"), *args]) == 2
    message = "train.accelerator: 'gpu' asked for, but this machine has no CUDA"
    assert message in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(tmp_path, config, capsys):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        assert main([str(config), "--output", str(out / "run")]) == 2
        assert str(out / "run") in capsys.readouterr().err
    finally:
        out.chmod(0o700)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_full_disk_or_read_only_is_one_line_naming_the_file(
    tmp_path, config, capsys, monkeypatch, code
):
    """A full disk, or a folder that turns read-only (root writes through permissions, so the
    file system's refusal is simulated where the files are written)."""
    import incremental.io

    real = os.fsync

    def refuse(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(incremental.io.os, "fsync", refuse)
    assert main([str(config), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and os.strerror(code) in err[0] and "cannot write" in err[0]
    assert str(tmp_path) in err[0]  # the file it was writing
    monkeypatch.setattr(incremental.io.os, "fsync", real)
    assert not list(tmp_path.rglob("*.tmp"))  # no temporary file left behind


# ---------------------------------------------------------------------- non-finite training
def test_a_diverging_run_is_no_result(tmp_path, config, capsys):
    """With on_non_finite=skip, a run that skips more than max_skipped_share of an epoch stops
    with a named error; no model full of NaN is written."""
    out = tmp_path / "out"
    args = ["--set", "train.on_non_finite=skip", "--set", "train.lr=1e30",
            "--set", "train.limit_train_batches=4", "--set", "train.optimizer=sgd"]  # fmt: skip
    status = main([str(config), "--output", str(out), *args])
    err = capsys.readouterr().err
    assert status == 2 and "batches skipped for a non-finite loss" in err
    assert not list((out / "models").rglob("*.pt")) if (out / "models").exists() else True


# ---------------------------------------------------------------------- model files
def _model_file(tmp_path: Path) -> Path:
    model = create_model("tiny-unet", 3)
    return save_model_file(tmp_path / "m.pt", model, {"name": "tiny-unet"}, ["a", "b", "c"])


def test_damaged_model_file_is_refused(tmp_path, capsys):
    path = _model_file(tmp_path)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    path.write_bytes(bytes(data))
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(images / "a.png")
    assert cli(["predict", "--model", str(path), "--images", str(images), "--out",
                str(tmp_path / "p")]) == 2  # fmt: skip
    assert "damaged: its weights do not match the checksum" in capsys.readouterr().err


def test_text_file_named_pt(tmp_path, capsys):
    path = tmp_path / "notes.pt"
    path.write_text("hello\n")
    assert cli(["export", "--model", str(path), "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "not a file written by torch.save" in err
    assert "weights_only" not in err and "possibly code" not in err


def test_pickled_object_refusal_never_suggests_loading_it(tmp_path, capsys):
    path = tmp_path / "pickled.pt"
    torch.save({"format": "x", "model": torch.nn.Linear(2, 2)}, path)
    assert cli(["export", "--model", str(path), "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "refused to load" in err and "weights_only" not in err


def test_non_finite_weights_are_never_saved(tmp_path):
    model = create_model("tiny-unet", 3)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("nan")
    with pytest.raises(ValueError, match="not saved: 1 tensor"):
        save_model_file(tmp_path / "m.pt", model, {"name": "tiny-unet"}, ["a", "b", "c"])
    assert not (tmp_path / "m.pt").exists()


def test_batch_larger_than_the_data_is_said(caplog):
    from incremental.data.core import ArraySource
    from incremental.data.datamodule import IncrementalDataModule
    from incremental.labels import LabelDeclaration

    declaration = LabelDeclaration("d", {0: "unlabeled", 1: "bag"})
    source = ArraySource(np.zeros((3, 32, 32, 3), np.uint8), np.ones((3, 32, 32), np.uint8),
                         declaration)  # fmt: skip
    with caplog.at_level("WARNING"):
        IncrementalDataModule([(source, 0)], source, batch_size=8).train_dataloader()
    assert "batch_size 8 is larger than the 3 training samples" in caplog.text


def test_predict_writes_masks_in_the_displayed_orientation(tmp_path):
    from incremental.predict import predict_folder

    path = _model_file(tmp_path)
    image = Image.fromarray(np.zeros((32, 64, 3), np.uint8))
    exif = image.getexif()
    exif[0x0112] = 6
    (tmp_path / "images").mkdir()
    image.save(tmp_path / "images" / "a.jpg", exif=exif.tobytes())
    (written,) = predict_folder(path, tmp_path / "images", tmp_path / "out", progress=False)
    assert Image.open(written).size == (32, 64)  # width x height as displayed, not as stored


def test_old_model_file_without_checksum_loads_with_a_warning(tmp_path):
    from incremental.models import load_model_file

    path = _model_file(tmp_path)
    payload = torch.load(path, weights_only=True)
    del payload["checksum"]
    torch.save(payload, path)
    with pytest.warns(UserWarning, match="without a checksum"):
        load_model_file(path)


# ---------------------------------------------------------------------- data
def _folder(root: Path, masks: list[np.ndarray], images: list[np.ndarray] | None = None,
            values: dict | None = None) -> Path:  # fmt: skip
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, mask in enumerate(masks):
        image = images[i] if images else np.full((*mask.shape, 3), 128, np.uint8)
        Image.fromarray(image).save(root / "images" / f"{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i}.png")
    labels = {"values": values or {0: "unlabeled", 1: "bag", 255: "ignore"}}
    (root / "data.yaml").write_text(yaml.safe_dump({"labels": labels}))
    return root / "data.yaml"


def _check(path: Path, capsys, *extra) -> tuple[int, str]:
    status = cli(["check", str(path), *extra])
    return status, capsys.readouterr().out


def test_new_class_with_no_pixel_is_an_error(tmp_path, capsys):
    """A dataset labeled for the step's class whose masks hold none of it: 0/255 binary masks
    get the fix in the message."""
    from incremental.data import DatasetError
    from incremental.data.folders import FolderDataset
    from incremental.labels import Transition

    mask = np.zeros((16, 16), np.uint8)
    mask[4:8, 4:8] = 255  # drawn as 255: that is 'ignore'
    path = _folder(tmp_path / "d", [mask, mask])
    transition = Transition(("background", "coat"), new_classes=("bag",))
    with pytest.raises(DatasetError, match=r"value 1 \(bag\): no pixel.*re-save the masks"):
        FolderDataset(path, transition=transition)
    status, out = _check(path, capsys)
    assert status == 0 and "warning: value 1 (bag): no pixel" in out  # no transition: warn


def test_16_bit_images_are_scaled_not_white(tmp_path):
    from incremental.data import read_image

    wide = (np.arange(256, dtype=np.uint16).reshape(16, 16) * 256).astype(np.uint16)
    Image.fromarray(wide).save(tmp_path / "wide.png")
    assert Image.open(tmp_path / "wide.png").mode == "I;16"
    image = read_image(tmp_path / "wide.png")
    assert image.dtype == np.uint8 and image.min() == 0 and 250 <= image.max() <= 255
    assert len(np.unique(image)) > 200  # a gradient, not a white square


def test_exif_orientation_is_applied_and_reported(tmp_path, capsys):
    from incremental.data import read_image

    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :10] = 255
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # rotated a quarter turn for display
    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    image.save(root / "images" / "a.jpg", exif=exif.tobytes())
    Image.fromarray(np.ones((40, 20), np.uint8)).save(root / "masks" / "a.png")  # displayed view
    labels = {"labels": {"values": {0: "unlabeled", 1: "bag"}}}
    (root / "data.yaml").write_text(yaml.safe_dump(labels))
    assert read_image(root / "images" / "a.jpg").shape == (40, 20, 3)
    status, out = _check(root / "data.yaml", capsys)
    assert status == 0 and "EXIF orientation 6: read as displayed" in out


def test_sub_folders_and_size_outliers_are_warned_about(tmp_path, capsys):
    small = [np.ones((32, 32), np.uint8)] * 3
    path = _folder(tmp_path / "d", small)
    (tmp_path / "d" / "images" / "more").mkdir()
    nested = tmp_path / "d" / "images" / "more" / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(nested)
    big_mask = np.ones((300, 400), np.uint8)
    Image.fromarray(np.zeros((300, 400, 3), np.uint8)).save(tmp_path / "d" / "images" / "big.png")
    Image.fromarray(big_mask).save(tmp_path / "d" / "masks" / "big.png")
    status, out = _check(path, capsys)
    assert status == 0
    assert "1 image file(s) in sub-folders are not used" in out
    assert "image 400x300 is far larger than the others" in out


def test_huge_images_are_shrunk_and_the_memory_estimate_refuses(monkeypatch):
    """Training shrinks images above max_image_side; a batch that cannot fit is refused, with
    the sizes, before training."""
    from incremental.data.core import ArraySource, SampleDataset
    from incremental.labels import LabelDeclaration
    from incremental.memory import check_batch_fits

    declaration = LabelDeclaration("d", {0: "unlabeled", 1: "bag"})
    source = ArraySource(np.zeros((1, 300, 400, 3), np.uint8), np.ones((1, 300, 400), np.uint8),
                         declaration)  # fmt: skip
    sample = SampleDataset(source, 0, max_side=100)[0]
    assert tuple(sample["image"].shape) == (3, 75, 100)
    assert set(sample["mask"].unique().tolist()) == {1}
    import incremental.memory

    monkeypatch.setattr(incremental.memory, "available_bytes", lambda device: 2**20)
    with pytest.raises(ValueError, match=r"batch of 16 images of 400x300 needs about .* GiB"):
        check_batch_fits(create_model("tiny-unet", 2), 16, 300, 400, torch.device("cpu"))
