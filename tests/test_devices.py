"""Every loss, score, head expansion, training step and prediction on every available device.

``cpu`` always runs; ``cuda`` runs where a GPU is (``benchmarks/gpu_check.sh``), skipped with a
reason elsewhere. On CUDA, fp32 values and gradients must equal the CPU's within 1e-5; under
bf16 autocast (on either device) the losses must stay finite and close to fp32.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from incremental.data.core import SampleDataset
from incremental.data.datamodule import pad_collate
from incremental.labels import Split, TeacherMap, Transition
from incremental.losses import (
    local_pod_loss,
    partial_cross_entropy,
    pseudo_label_candidates,
    refine_candidates,
    set_distillation,
    unbiased_cross_entropy,
    unbiased_distillation,
)
from incremental.metrics import merge_confusion, segmentation_scores
from incremental.models import create_model, expand_head
from incremental.strategies import create_strategy, list_strategies
from incremental.workflow import build_step

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]

TRANSITION = Transition(
    ("background", "coat", "car"), new_classes=("bag",), splits=(Split.of("car", ["police_car"]),)
)
T = TeacherMap(TRANSITION).matrix  # (3, 5)


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


def _inputs(seed: int = 0, b: int = 2, h: int = 8, w: int = 8) -> dict[str, torch.Tensor]:
    """Student logits (B, 5, H, W), teacher logits (B, 3, H, W), candidate sets with singletons,
    pairs, "anything but bag" and full sets, features of two layers."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, 5, h, w, generator=gen) * 3
    teacher = torch.randn(b, 3, h, w, generator=gen) * 3
    kind = torch.randint(0, 4, (b, h, w), generator=gen)
    label = torch.randint(0, 5, (b, h, w), generator=gen)
    one_hot = torch.nn.functional.one_hot(label, 5).permute(0, 3, 1, 2).bool()
    every = torch.ones_like(one_hot)
    but_bag = every.clone()
    but_bag[:, 3] = False
    pair = torch.zeros_like(one_hot)
    pair[:, [2, 4]] = True
    choices = torch.stack([one_hot, every, but_bag, pair])  # (4, B, C, H, W)
    candidates = choices.gather(0, kind[None, :, None].expand(1, b, 5, h, w))[0]
    features = [
        torch.randn(b, 4, h, w, generator=gen),
        torch.randn(b, 6, h // 2, w // 2, generator=gen),
    ]
    return {"logits": logits, "teacher": teacher, "candidates": candidates, "features": features,
            "labels": label}  # fmt: skip


def _losses(x: dict, device: torch.device) -> dict[str, torch.Tensor]:
    """Every loss on ``device``, with the student logits (and student features) as leaves."""
    logits = x["logits"].to(device).requires_grad_(True)
    feats = [f.to(device).requires_grad_(True) for f in x["features"]]
    teacher, candidates = x["teacher"].to(device), x["candidates"].to(device)
    sets, weight = T.to(device), torch.tensor([1.0, 2.0, 0.5, 3.0, 1.5], device=device)
    out = {
        "partial_ce": partial_cross_entropy(logits, candidates),
        "partial_ce_weighted_focal": partial_cross_entropy(logits, candidates, weight, gamma=2.0),
        "set_kd": set_distillation(logits, teacher, sets, temperature=2.0),
        "set_kd_label": set_distillation(logits, teacher, sets, candidates=candidates),
        "local_pod": local_pod_loss(feats, [f.to(device) for f in x["features"]])
        + 0 * sum(f.sum() for f in feats),
        "mib_unce": unbiased_cross_entropy(logits, x["labels"].to(device).clamp(max=4), 3),
        "mib_unkd": unbiased_distillation(logits, teacher),
    }
    grads = {}
    for name, loss in out.items():
        leaves = feats if name == "local_pod" else [logits]
        grads[name] = torch.autograd.grad(loss, leaves, allow_unused=True, retain_graph=True)
    return {k: (v.detach(), grads[k]) for k, v in out.items()}


def test_losses_and_gradients_match_the_cpu(device):
    x = _inputs()
    ours, cpu = _losses(x, device), _losses(x, torch.device("cpu"))
    for name, (value, grads) in ours.items():
        torch.testing.assert_close(value.cpu(), cpu[name][0], atol=1e-5, rtol=1e-5, msg=name)
        for g, g_cpu in zip(grads, cpu[name][1], strict=True):
            if g is not None:
                torch.testing.assert_close(g.cpu(), g_cpu, atol=1e-5, rtol=1e-5, msg=name)


def test_candidate_transforms_match_the_cpu(device):
    x = _inputs(1)
    teacher, candidates = x["teacher"].to(device), x["candidates"].to(device)
    refined = refine_candidates(candidates, teacher, T.to(device), 0.5)
    assert torch.equal(refined.cpu(), refine_candidates(x["candidates"], x["teacher"], T, 0.5))
    thresholds, representatives = torch.tensor([0.9, 0.5, 0.7]), torch.tensor([0, 1, 2])
    pseudo, factor = pseudo_label_candidates(
        candidates, teacher, thresholds.to(device), representatives.to(device)
    )
    pseudo_cpu, factor_cpu = pseudo_label_candidates(
        x["candidates"], x["teacher"], thresholds, representatives
    )
    assert torch.equal(pseudo.cpu(), pseudo_cpu)
    torch.testing.assert_close(factor.cpu(), factor_cpu)


def test_losses_under_bf16_autocast(device):
    """Mixed precision: logits come out of a bf16 layer; every loss stays finite, its
    gradient too, and within a few percent of fp32."""
    x = _inputs(2)
    layer = torch.nn.Conv2d(5, 5, 1).to(device)
    teacher, candidates = x["teacher"].to(device), x["candidates"].to(device)
    sets = T.to(device)
    inputs = x["logits"].to(device)

    def losses(autocast: bool) -> dict[str, torch.Tensor]:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = layer(inputs)
            if autocast:
                assert logits.dtype == torch.bfloat16
            return {
                "partial_ce": partial_cross_entropy(logits, candidates, gamma=2.0),
                "set_kd": set_distillation(logits, teacher, sets),
                "set_kd_label": set_distillation(logits, teacher, sets, candidates=candidates),
            }

    mixed, full = losses(True), losses(False)
    for name, loss in mixed.items():
        assert loss.dtype == torch.float32, name  # computed in fp32 whatever the logits
        assert torch.isfinite(loss), name
        (grad,) = torch.autograd.grad(loss, layer.weight, retain_graph=True)
        assert torch.isfinite(grad).all(), name
        torch.testing.assert_close(loss, full[name].detach(), rtol=0.05, atol=0.02, msg=name)


@pytest.mark.parametrize("dtype", [torch.long, torch.int32, torch.float32, torch.float64])
def test_scores_on_device(device, dtype):
    """Scores from integer or float confusion matrices, parent merges included (CUDA has no
    integer matmul: the merge must not need one)."""
    confusion = torch.tensor([[8, 0, 1, 0], [0, 4, 0, 1], [1, 0, 2, 2], [0, 0, 2, 2]])
    classes = ["background", "coat", "car_other", "police_car"]
    parents = {"car_other": "car", "police_car": "car"}
    merged = merge_confusion(confusion.to(device, dtype), [0, 1, 2, 2])
    assert merged.dtype == dtype and merged.device.type == device.type
    assert merged.cpu().tolist() == [[8, 0, 1], [0, 4, 1], [1, 0, 8]]
    expected = segmentation_scores(confusion, classes, ["car_other", "police_car"], parents)
    ours = segmentation_scores(confusion.to(device, dtype), classes, ["car_other", "police_car"],
                               parents)  # fmt: skip
    assert ours.keys() == expected.keys()
    for key, value in expected.items():
        assert ours[key] == pytest.approx(value, abs=1e-12), key


def test_expand_head_preserves_mass(device):
    torch.manual_seed(0)
    teacher = create_model("tiny-unet", 3).to(device).eval()
    student = expand_head(teacher, TeacherMap(TRANSITION)).eval()
    assert next(student.parameters()).device.type == device.type
    images = torch.randn(2, 3, 32, 32, device=device)
    with torch.no_grad():
        p_teacher = teacher(images).softmax(dim=1)
        p_student = student(images).softmax(dim=1)
    p_sets = torch.einsum("kc,bchw->bkhw", T.to(device).float(), p_student)
    assert (p_sets - p_teacher).abs().max() <= 1e-5


@pytest.mark.parametrize("name", [*list_strategies(), "candidate-sets+replay"])
def test_training_step_every_strategy(device, split_scenario, name):
    torch.manual_seed(0)
    teacher = create_model("tiny-unet", split_scenario.transition.num_old_classes).eval()
    module, data = build_step(split_scenario, teacher, {"name": "tiny-unet"}, create_strategy(name))
    module.to(device).train()
    for callback in module.configure_callbacks():
        if hasattr(callback, "freeze_before_training"):
            callback.freeze_before_training(module)
    if "entropy_thresholds" in module.strategy_state.names:
        module.strategy_state["entropy_thresholds"].fill_(0.5)
    samples = [SampleDataset(s, row)[i] for row, s in enumerate(data.sources) for i in range(2)]
    batch = {k: v.to(device) for k, v in pad_collate(samples).items()}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*self.log.*")
        loss = module.training_step(batch, 0)["loss"]
    assert loss.device.type == device.type and torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None for p in module.student.parameters())


def test_predict_on_device(device, tmp_path, new_class_scenario):
    from PIL import Image

    from incremental.models import save_model_file
    from incremental.predict import predict_folder

    classes = new_class_scenario.transition.student_classes
    model = create_model("tiny-unet", len(classes))
    path = save_model_file(tmp_path / "m.pt", model, {"name": "tiny-unet"}, classes)
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.fromarray(new_class_scenario.test.load(i)[0]).save(images / f"{i}.png")
    written = predict_folder(path, images, tmp_path / "out", device=str(device), progress=False)
    cpu = predict_folder(path, images, tmp_path / "cpu", device="cpu", progress=False)
    for ours, theirs in zip(written, cpu, strict=True):
        a, b = (torch.from_numpy(__import__("numpy").array(Image.open(p))) for p in (ours, theirs))
        assert (a != b).float().mean() < 1e-3  # argmax ties may differ across devices


def _no_accelerator_but(monkeypatch, available: str | None) -> None:
    """Lightning's accelerators all unavailable but ``available`` (a class name)."""
    from lightning.pytorch import accelerators

    for name in ("XLAAccelerator", "MPSAccelerator", "CUDAAccelerator"):
        on = name == available
        monkeypatch.setattr(
            getattr(accelerators, name), "is_available", staticmethod(lambda o=on: o)
        )


def test_precision_auto_is_bf16_on_a_cpu_with_native_bf16_only(monkeypatch):
    from lightning.pytorch.accelerators import CPUAccelerator

    from incremental import devices

    _no_accelerator_but(monkeypatch, None)
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    assert devices.resolve_precision("auto") == "bf16-mixed"
    assert devices.resolve_precision("auto", "cpu") == "bf16-mixed"
    assert devices.resolve_precision("auto", CPUAccelerator()) == "bf16-mixed"
    for accelerator in ("gpu", "cuda", "mps", "tpu"):  # opt-in off the CPU
        assert devices.resolve_precision("auto", accelerator) == "32-true"
    assert devices.resolve_precision("32-true", "cpu") == "32-true"  # asked for: kept
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    assert devices.resolve_precision("auto", "cpu") == "32-true"
    assert devices.resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    for present in ("CUDAAccelerator", "MPSAccelerator", "XLAAccelerator"):
        _no_accelerator_but(monkeypatch, present)  # "auto" accelerator: not the CPU
        assert devices.resolve_precision("auto") == "32-true", present
        assert devices.resolve_precision("auto", "cpu") == "bf16-mixed", present


def test_native_bf16_reads_the_cpu_probes(monkeypatch):
    from incremental import devices

    for amx, avx512_bf16, expected in [(False, False, False), (True, False, True),
                                       (False, True, True)]:  # fmt: skip
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v, raising=False)
        monkeypatch.setattr(
            torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v, raising=False
        )
        assert devices.cpu_has_native_bf16() is expected
    # A PyTorch without the (private) probes counts as no.
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    assert devices.cpu_has_native_bf16() is False


@pytest.mark.parametrize("native", [True, False])
def test_a_run_at_precision_auto_trains_and_records_what_it_resolved_to(
    tmp_path, split_scenario, monkeypatch, native
):
    """Both branches train for real (bfloat16 autocast runs on any x86 CPU, emulated where the
    CPU lacks it) and the result says which ran."""
    from incremental import devices
    from incremental.train_config import TrainConfig
    from incremental.workflow import train_step

    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: native)
    torch.manual_seed(0)
    teacher = create_model("tiny-unet", split_scenario.transition.num_old_classes).eval()
    config = TrainConfig(epochs=1, batch_size=2, progress_bar=False, precision="auto",
                         limit_train_batches=1, limit_val_batches=1, accelerator="cpu")  # fmt: skip
    result = train_step(split_scenario, teacher, {"name": "tiny-unet"},
                        create_strategy("candidate-sets"), config, 0, tmp_path)  # fmt: skip
    assert result.precision == ("bf16-mixed" if native else "32-true")


def test_cpu_threads_sets_and_restores_the_count():
    from incremental.devices import cpu_threads

    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with cpu_threads(other):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), cpu_threads(other):  # restored after an error too
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads: expected an integer >= 1"):
            with cpu_threads(bad):
                pass


def test_the_environment_record_names_what_decides_the_bits():
    from incremental.devices import describe_environment

    environment = describe_environment()
    assert environment["packages"]["torch"] == torch.__version__
    assert environment["threads"] == torch.get_num_threads()
    assert environment["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert environment["cpu"] and environment["python"].count(".") == 2
    assert (environment["gpu"] is None) == (not torch.cuda.is_initialized())
