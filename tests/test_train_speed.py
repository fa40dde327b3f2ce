"""A cheap teacher: inference mode, shared features for a frozen body, and the speed benchmark."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from incremental.callbacks import FreezeOldNetwork
from incremental.data.core import SampleDataset
from incremental.data.datamodule import pad_collate
from incremental.models import create_model
from incremental.module import IncrementalSegmenter
from incremental.strategies import create_strategy
from incremental.workflow import build_step
from tests.scripts import load_benchmark

FROZEN = {"freeze": True}  # candidate sets, the old network frozen but the classifier


def _module(scenario, teacher: nn.Module, **overrides) -> IncrementalSegmenter:
    strategy = create_strategy("candidate-sets", overrides)
    module, _ = build_step(scenario, teacher.eval(), {"name": "tiny-unet"}, strategy)
    module.train()
    for callback in module.configure_callbacks():  # freezing, as the Trainer would
        if isinstance(callback, FreezeOldNetwork):
            callback.freeze_before_training(module)
    return module


def _batch(scenario) -> dict[str, torch.Tensor]:
    return pad_collate([SampleDataset(scenario.new_train, 0)[i] for i in range(2)])


def _count_calls(module: nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


class _SmallCNN(nn.Sequential):
    """Not an smp model: the classifier is the last layer."""

    def __init__(self, num_classes: int) -> None:
        super().__init__(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, num_classes, 1))


class _Rescaled(nn.Module):
    """Transforms its logits after the classifier: features cannot be shared."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.net = _SmallCNN(num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return 2.0 * self.net(images)


MODELS = {
    "tiny-unet": lambda k: create_model("tiny-unet", k),
    # DeepLabV3 upsamples after its classifier, inside smp's segmentation_head.
    "deeplabv3": lambda k: create_model(arch="DeepLabV3", encoder="tu-test_resnet", num_classes=k),
    "plain-cnn": _SmallCNN,
}


@pytest.mark.parametrize("model", MODELS)
def test_shared_features_give_the_two_forwards_logits(new_class_scenario, model):
    torch.manual_seed(0)
    teacher = MODELS[model](new_class_scenario.transition.num_old_classes)
    module = _module(new_class_scenario, teacher, **FROZEN)
    body = teacher.encoder if hasattr(teacher, "encoder") else teacher[0]
    body_calls = _count_calls(body)
    images = _batch(new_class_scenario)["image"]
    out = module.forwards(images)
    assert body_calls == [0]  # the teacher's body never ran: the features were shared
    with torch.no_grad():
        assert torch.equal(out.teacher_logits, teacher(images))
        assert torch.equal(out.logits, module.student(images))
    assert out.logits.requires_grad


def test_shared_features_train_as_two_forwards(new_class_scenario):
    torch.manual_seed(0)
    teacher = create_model("tiny-unet", new_class_scenario.transition.num_old_classes)
    module = _module(new_class_scenario, teacher, **FROZEN)
    batch = _batch(new_class_scenario)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*self.log.*")
        shared = module.training_step(batch, 0)["loss"]
        module.forwards.shared = None  # the two-forward path
        separate = module.training_step(batch, 0)["loss"]
    assert torch.equal(shared, separate)


def test_no_sharing_for_a_trainable_body(new_class_scenario):
    teacher = create_model("tiny-unet", new_class_scenario.transition.num_old_classes)
    module = _module(new_class_scenario, teacher)  # student == teacher now, not after a step
    calls = _count_calls(teacher.encoder)
    module.forwards(_batch(new_class_scenario)["image"])
    assert calls == [1]


def test_no_teacher_output_for_a_strategy_without_teacher(new_class_scenario):
    teacher = create_model("tiny-unet", new_class_scenario.transition.num_old_classes)
    # What the `freeze` preset does: neither distillation nor refinement.
    module = _module(new_class_scenario, teacher, distillation="none", refine=False, **FROZEN)
    assert module.forwards(_batch(new_class_scenario)["image"]).teacher_logits is None


def test_output_transformed_after_the_head_falls_back(new_class_scenario):
    teacher = _Rescaled(new_class_scenario.transition.num_old_classes)
    module = _module(new_class_scenario, teacher, **FROZEN)
    images = _batch(new_class_scenario)["image"]
    with pytest.warns(UserWarning, match="own forward"):
        out = module.forwards(images)
    with torch.no_grad():
        assert torch.equal(out.teacher_logits, teacher(images))
    assert module.forwards(images).teacher_logits is not None  # no second warning needed


@pytest.mark.parametrize("overrides", [{}, FROZEN], ids=["trainable", "frozen"])
def test_teacher_holds_no_autograd_state(new_class_scenario, overrides):
    teacher = create_model("tiny-unet", new_class_scenario.transition.num_old_classes)
    module = _module(new_class_scenario, teacher, **overrides)
    out = module.forwards(_batch(new_class_scenario)["image"])
    assert out.teacher_logits.is_inference()
    assert not out.teacher_logits.requires_grad and out.teacher_logits.grad_fn is None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*self.log.*")
        module.training_step(_batch(new_class_scenario), 0)["loss"].backward()
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())


def test_benchmark_runs_and_returns_its_numbers(capsys):
    bench = load_benchmark("train_speed")
    argv = ["--steps", "3", "--size", "32", "--batch-size", "2", "--rounds", "1", "--warmup", "1"]
    report = bench.main(argv + ["--strategy", "freeze"])
    row = report["strategies"]["freeze"]
    for key in ("lightning_ms", "plain_ms", "student_only_ms", "teacher_ms", "two_forwards_ms"):
        assert row[key] > 0, key
    assert row["ratio"] == pytest.approx(row["lightning_ms"] / row["plain_ms"])
    assert 0 < row["teacher_share"] < 1 and report["peak_rss_mib"] > 0
    assert "L/plain" in capsys.readouterr().out
