"""Loading the user's trained model: every file kind, and every refusal naming what is wrong."""

from __future__ import annotations

import textwrap

import pytest
import torch
from torch import nn

from incremental.models import (
    create_model,
    load_existing_model,
    load_model_file,
    save_model_file,
)

CLASSES = ["background", "coat", "car"]
SPEC = {"name": "tiny-unet"}


@pytest.fixture
def smp_model():
    torch.manual_seed(0)
    return create_model(num_classes=len(CLASSES), **SPEC).eval()


def _same_output(a: nn.Module, b: nn.Module) -> bool:
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        return torch.allclose(a.eval()(x), b.eval()(x), atol=1e-6)


def test_model_file_gives_classes_and_spec(tmp_path, smp_model):
    save_model_file(tmp_path / "old.pt", smp_model, SPEC, CLASSES)
    loaded = load_existing_model({"path": "old.pt"}, tmp_path)
    assert loaded.classes == CLASSES and loaded.spec == SPEC
    assert _same_output(loaded.model, smp_model)


def test_model_file_classes_must_match_the_declared_ones(tmp_path, smp_model):
    save_model_file(tmp_path / "old.pt", smp_model, SPEC, CLASSES)
    with pytest.raises(ValueError, match=r"old_classes .* differ from the classes of"):
        load_existing_model({"path": "old.pt"}, tmp_path, ["background", "car", "coat"])


def test_smp_save_pretrained_folder(tmp_path, smp_model):
    smp_model.save_pretrained(tmp_path / "smp")
    loaded = load_existing_model({"path": "smp"}, tmp_path, CLASSES)
    assert loaded.spec["arch"] == "Unet" and loaded.spec["encoder"] == "tu-test_resnet"
    assert _same_output(loaded.model, smp_model)


def test_lightning_style_checkpoint_with_prefix(tmp_path, smp_model):
    state = {f"student.{k}": v for k, v in smp_model.state_dict().items()}
    torch.save({"epoch": 3, "state_dict": state}, tmp_path / "last.ckpt")
    loaded = load_existing_model(
        {
            "path": "last.ckpt",
            "spec": {
                "arch": "Unet",
                "encoder": "tu-test_resnet",
                "decoder_channels": [64, 32, 16, 8, 8],
            },
        },
        tmp_path,
        CLASSES,
    )
    assert _same_output(loaded.model, smp_model)


def test_any_module_through_a_factory(tmp_path, monkeypatch):
    (tmp_path / "user_models.py").write_text(
        textwrap.dedent(
            """
            from torch import nn

            def build(classes):
                return nn.Sequential(
                    nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, classes, 1)
                )
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import user_models

    net = user_models.build(3)
    torch.save(net.state_dict(), tmp_path / "w.pth")
    config = {"path": "w.pth", "factory": "user_models:build", "factory_kwargs": {"classes": 3}}
    loaded = load_existing_model(config, tmp_path, CLASSES)
    assert _same_output(loaded.model, net)
    # Its model files record the factory; rebuilding them runs user code only when allowed.
    save_model_file(tmp_path / "m.pt", loaded.model, loaded.spec, CLASSES)
    with pytest.raises(ValueError, match="allow_factory=True"):
        load_model_file(tmp_path / "m.pt").build()
    assert _same_output(load_model_file(tmp_path / "m.pt").build(allow_factory=True), net)


def test_weights_that_do_not_fit_name_a_key(tmp_path):
    torch.save(
        create_model(num_classes=3, arch="Unet", encoder="tu-test_resnet").state_dict(),
        tmp_path / "w.pth",
    )
    with pytest.raises(ValueError, match=r"w.pth: the weights do not fit .* of another shape"):
        load_existing_model({"path": "w.pth", "spec": SPEC}, tmp_path, CLASSES)


def test_output_count_must_match_the_old_classes(tmp_path, smp_model):
    smp_model.save_pretrained(tmp_path / "smp")
    with pytest.raises(ValueError, match="outputs 3 classes but 4 old classes"):
        load_existing_model({"path": "smp"}, tmp_path, [*CLASSES, "bag"])


def test_pickled_code_is_refused(tmp_path):
    torch.save(nn.Conv2d(3, 3, 1), tmp_path / "module.pt")  # a whole pickled module
    with pytest.raises(ValueError, match="refused to load"):
        load_existing_model({"path": "module.pt", "spec": SPEC}, tmp_path, CLASSES)


@pytest.mark.parametrize(
    "config, message",
    [
        ({"path": "w.pth", "weights": 1}, r"unknown key\(s\) \['weights'\]"),
        ({}, "missing key 'path'"),
        ({"path": "nowhere.pt"}, "old_model.path: not found"),
        ({"path": "w.pth", "format": "keras"}, "old_model.format: 'keras' is not one of"),
        ({"path": "w.pth"}, "holds weights only; say how to build"),
    ],
)
def test_bad_old_model_config(tmp_path, smp_model, config, message):
    torch.save(smp_model.state_dict(), tmp_path / "w.pth")
    with pytest.raises(ValueError, match=message):
        load_existing_model(config, tmp_path, CLASSES)
