"""Prediction into indexed PNGs and export to ONNX / TorchScript, through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from incremental.__main__ import main
from incremental.models import create_model, load_model_file, save_model_file

CLASSES = ["background", "coat", "car_other", "police_car"]
PARENTS = {"car_other": "car", "police_car": "car"}


@pytest.fixture
def model_path(tmp_path):
    torch.manual_seed(0)
    model = create_model("tiny-unet", len(CLASSES)).eval()
    return save_model_file(tmp_path / "m.pt", model, {"name": "tiny-unet"}, CLASSES, PARENTS)


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in {"a.png": (40, 50), "b.jpg": (40, 50), "c.png": (70, 33)}.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / name)
    return folder


def test_predict_writes_indexed_masks_of_any_size(tmp_path, model_path, images):
    out = tmp_path / "out"
    assert (
        main(
            [
                "predict",
                "--model",
                str(model_path),
                "--images",
                str(images),
                "--out",
                str(out),
                "--overlay",
                "--batch-size",
                "2",
            ]
        )
        == 0
    )
    model = load_model_file(model_path).build()
    for stem, (h, w) in {"a": (40, 50), "c": (70, 33)}.items():
        mask = Image.open(out / f"{stem}.png")
        assert mask.mode == "P" and mask.size == (w, h)
        assert (out / "overlays" / f"{stem}.png").exists()
        # Same prediction as the model on the padded, normalised image.
        from incremental.data.transforms import eval_transform

        image = np.asarray(Image.open(images / f"{stem}.png").convert("RGB"))
        x = torch.from_numpy(eval_transform()(image=image)["image"].transpose(2, 0, 1))[None]
        padded = torch.zeros(1, 3, -(-h // 32) * 32, -(-w // 32) * 32)
        padded[..., :h, :w] = x
        expected = model(padded)[0, :, :h, :w].argmax(0).numpy()
        np.testing.assert_array_equal(np.asarray(mask), expected)
    assert json.loads((out / "classes.json").read_text())["classes"] == CLASSES


def test_predict_parent_level_and_no_silent_overwrite(tmp_path, model_path, images, capsys):
    out = tmp_path / "out"
    args = ["predict", "--model", str(model_path), "--images", str(images), "--out", str(out)]
    assert main([*args, "--level", "parent"]) == 0
    assert json.loads((out / "classes.json").read_text())["classes"] == [
        "background",
        "coat",
        "car",
    ]
    assert np.asarray(Image.open(out / "a.png")).max() <= 2
    before = (out / "a.png").read_bytes()
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "a.png").read_bytes() == before
    assert main([*args, "--overwrite"]) == 0


def test_predict_errors(tmp_path, model_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (
        main(
            [
                "predict",
                "--model",
                str(model_path),
                "--images",
                str(empty),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "no images" in capsys.readouterr().err


def test_onnx_export_matches_pytorch(tmp_path, model_path):
    import onnx
    import onnxruntime

    out = tmp_path / "m.onnx"
    assert main(["export", "--model", str(model_path), "--out", str(out)]) == 0
    meta = {p.key: json.loads(p.value) for p in onnx.load(str(out)).metadata_props}
    assert meta["classes"] == CLASSES and meta["parents"] == PARENTS
    session = onnxruntime.InferenceSession(str(out))
    model = load_model_file(model_path).build()
    x = torch.randn(2, 3, 64, 96)
    onnx_out = session.run(None, {"image": x.numpy()})[0]
    np.testing.assert_allclose(onnx_out, model(x).detach().numpy(), atol=1e-4)
    assert main(["export", "--model", str(model_path), "--out", str(out)]) == 2  # exists


def test_torchscript_export_matches_pytorch(tmp_path, model_path):
    out = tmp_path / "m.ts"
    assert (
        main(["export", "--model", str(model_path), "--out", str(out), "--format", "torchscript"])
        == 0
    )
    extra = {"classes.json": ""}
    scripted = torch.jit.load(str(out), _extra_files=extra)
    assert json.loads(extra["classes.json"])["classes"] == CLASSES
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(scripted(x), load_model_file(model_path).build()(x))
