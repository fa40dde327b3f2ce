"""Tests of model creation by preset or smp architecture, and of feature extraction."""

import pytest
import torch
from torch import nn

from incremental.models import (
    PRESETS,
    create_model,
    find_classifier,
    list_models,
    segment_with_features,
)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_model("tiny-unet", num_classes=4).eval()


class TestCreate:
    def test_presets_listed(self):
        assert list_models() == sorted(PRESETS)
        assert {"tiny-unet", "deeplabv3-resnet101"} <= set(list_models())
        for spec in PRESETS.values():
            assert {"arch", "encoder"} <= set(spec)

    def test_tiny_unet_output(self, tiny):
        with torch.no_grad():
            out = tiny(torch.randn(2, 3, 32, 32))
        assert out.shape == (2, 4, 32, 32) and torch.isfinite(out).all()
        assert sum(p.numel() for p in tiny.parameters()) < 1_000_000

    @pytest.mark.parametrize("name", ["unet-resnet18", "deeplabv3plus-resnet50"])
    def test_other_presets_build_offline(self, name):
        # Weights are off by default: building must not download anything.
        model = create_model(name, num_classes=3)
        _, head = find_classifier(model)
        assert head.out_channels == 3

    def test_arch_and_encoder(self):
        model = create_model(
            arch="DeepLabV3Plus", encoder="tu-test_resnet", num_classes=5, decoder_channels=32
        )
        assert type(model).__name__ == "DeepLabV3Plus"
        with torch.no_grad():
            assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 5, 32, 32)

    def test_in_channels(self):
        model = create_model("tiny-unet", num_classes=2, in_channels=1).eval()
        with torch.no_grad():
            assert model(torch.randn(1, 1, 32, 32)).shape == (1, 2, 32, 32)

    def test_unknown_name(self):
        with pytest.raises(ValueError, match=r"unknown model 'tiny-unet2'; known: \["):
            create_model("tiny-unet2")

    def test_missing_arch(self):
        with pytest.raises(ValueError, match="give a preset name, or both arch and encoder"):
            create_model(arch="Unet")

    def test_local_encoder_weights(self, tmp_path, tiny):
        path = tmp_path / "encoder.pt"
        torch.save(tiny.encoder.state_dict(), path)
        model = create_model("tiny-unet", num_classes=4, weights=str(path))
        for key, value in tiny.encoder.state_dict().items():
            assert torch.equal(model.encoder.state_dict()[key], value), key

    def test_local_encoder_weights_missing(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="encoder weights file not found: .*nope.pt"):
            create_model("tiny-unet", weights=str(tmp_path / "nope.pt"))

    def test_local_encoder_weights_mismatch(self, tmp_path):
        path = tmp_path / "other.pt"
        torch.save({"foo.weight": torch.zeros(2)}, path)
        with pytest.raises(ValueError, match=r"other.pt: does not match encoder 'tu-test_resnet'"):
            create_model("tiny-unet", weights=str(path))


class TestFindClassifier:
    def test_tiny_unet(self, tiny):
        name, conv = find_classifier(tiny)
        assert name == "segmentation_head.0"
        assert conv is tiny.segmentation_head[0] and conv.out_channels == 4
        assert find_classifier(tiny, 4) == (name, conv)

    def test_same_width_as_decoder(self):
        # tiny-unet's last decoder block has 8 channels: the head must still win.
        model = create_model("tiny-unet", num_classes=8)
        assert find_classifier(model, 8)[0] == "segmentation_head.0"

    def test_not_found(self, tiny):
        with pytest.raises(ValueError, match="Unet: no Conv2d classifier with 99 output channels"):
            find_classifier(tiny, 99)
        with pytest.raises(ValueError, match="Linear: no Conv2d classifier found"):
            find_classifier(nn.Linear(2, 2))


class TestSegmentWithFeatures:
    def test_shapes(self, tiny):
        x = torch.randn(2, 3, 64, 64)
        with torch.no_grad():
            logits, feats = segment_with_features(tiny, x)
            direct = tiny(x)
        assert logits.shape == (2, 4, 64, 64)
        assert torch.allclose(logits, direct, atol=1e-6)
        # Encoder stages at strides 4, 8, 16, 32, then the decoder output at full resolution.
        assert [tuple(f.shape[2:]) for f in feats] == [(16, 16), (8, 8), (4, 4), (2, 2), (64, 64)]
        assert all(f.shape[0] == 2 and f.dim() == 4 for f in feats)
        assert feats[-1].shape[1] == 8  # last decoder channel count

    def test_gradients_reach_features(self, tiny):
        logits, feats = segment_with_features(tiny, torch.randn(1, 3, 32, 32))
        assert all(f.requires_grad for f in feats) and logits.requires_grad

    def test_not_smp(self):
        with pytest.raises(TypeError, match="Conv2d has no encoder/decoder/segmentation_head"):
            segment_with_features(nn.Conv2d(3, 2, 1), torch.randn(1, 3, 8, 8))

    @pytest.mark.parametrize("encoder", ["tu-test_resnet", "resnet18"])  # timm's, torchvision's
    def test_plop_layers_are_stage_preactivations(self, encoder):
        """PLOP's layers: each stage before its last activation (so with negative values, whose
        ReLU is the stage output smp returns), the decoder output, the logits before upsampling."""
        torch.manual_seed(0)
        model = create_model(arch="DeepLabV3", encoder=encoder, num_classes=4).eval()
        x = torch.randn(2, 3, 64, 64)
        with torch.no_grad():
            logits, feats = segment_with_features(model, x, "plop")
            stages = model.encoder(x)[2:]
            direct = model(x)
        torch.testing.assert_close(logits, direct)  # the hooks change nothing
        assert len(feats) == 6
        for pre, post in zip(feats[:4], stages, strict=True):
            torch.testing.assert_close(pre.relu(), post)
        assert any(bool((pre < 0).any()) for pre in feats[:4])  # not the activations themselves
        assert feats[5].shape == (2, 4, 8, 8)  # DeepLabV3 upsamples 8x after its classifier
        torch.testing.assert_close(model.segmentation_head[1](feats[5]), logits)

    def test_plop_layers_unknown(self, tiny):
        with pytest.raises(ValueError, match="layers: 'pod'"):
            segment_with_features(tiny, torch.randn(1, 3, 32, 32), "pod")
