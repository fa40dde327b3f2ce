"""Tests of the model file: round trip, and refusal of anything but plain data."""

import pytest
import torch

from incremental.models import create_model, load_model_file, save_model_file
from incremental.models.model_file import FORMAT


class Payload:
    """A custom class: pickling an instance stores a reference to code to run on load."""

    def __init__(self):
        self.x = 1


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("tiny-unet", num_classes=3).eval()


def test_round_trip(tmp_path, model):
    path = tmp_path / "sub" / "model.pt"
    classes = ("background", "car_other", "police_car")
    out = save_model_file(
        path,
        model,
        {"name": "tiny-unet", "decoder_channels": (64, 32, 16, 8, 8)},
        classes,
        parents={"car_other": "car", "police_car": "car"},
        metadata={"seed": 3, "scenario": ("a", "b")},
    )
    assert out == path and path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temporary left
    loaded = load_model_file(path)
    assert loaded.classes == list(classes)
    assert loaded.parents == {"car_other": "car", "police_car": "car"}
    assert loaded.metadata == {"seed": 3, "scenario": ["a", "b"]}
    assert loaded.spec == {"name": "tiny-unet", "decoder_channels": [64, 32, 16, 8, 8]}
    rebuilt = loaded.build()
    assert not rebuilt.training
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), model(x), atol=1e-6)


def test_arch_spec_round_trip(tmp_path):
    spec = {
        "arch": "FPN",
        "encoder": "tu-test_resnet",
        "decoder_pyramid_channels": 32,
        "decoder_segmentation_channels": 32,
    }
    model = create_model(num_classes=2, **spec).eval()
    path = save_model_file(tmp_path / "fpn.pt", model, spec, ["a", "b"])
    x = torch.randn(1, 3, 64, 64)  # FPN's GroupNorm needs more than a 1x1 deepest map
    with torch.no_grad():
        assert torch.allclose(load_model_file(path).build()(x), model(x), atol=1e-6)


def test_refuses_pickled_object(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save(
        {"format": FORMAT, "spec": {}, "classes": [], "state_dict": {}, "x": Payload()}, path
    )
    with pytest.raises(ValueError, match=r"evil.pt: refused to load"):
        load_model_file(path)


def test_refuses_wrong_format(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"format": "something-else/2", "state_dict": {}}, path)
    with pytest.raises(
        ValueError, match=r"other.pt: not an incremental model file \(format 'something-else/2'"
    ):
        load_model_file(path)


def test_refuses_bare_state_dict_and_tensor(tmp_path, model):
    path = tmp_path / "sd.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(ValueError, match=r"not an incremental model file \(format None"):
        load_model_file(path)
    torch.save(torch.zeros(3), path)
    with pytest.raises(ValueError, match=r"not an incremental model file \(format 'Tensor'"):
        load_model_file(path)


def test_refuses_garbage(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"hello, this is not a model file")
    with pytest.raises(ValueError, match=r"garbage.pt: not a readable model file"):
        load_model_file(path)


def test_refuses_truncated(tmp_path, model):
    path = save_model_file(tmp_path / "cut.pt", model, {"name": "tiny-unet"}, ["a", "b", "c"])
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ValueError, match=r"cut.pt: not a readable model file"):
        load_model_file(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model file not found: .*missing.pt"):
        load_model_file(tmp_path / "missing.pt")
