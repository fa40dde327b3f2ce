"""The LightningModule: strategies as loss compositions, a teacher that never moves."""

from __future__ import annotations

import warnings

import pytest
import torch

from incremental.data.base import SampleDataset
from incremental.data.datamodule import pad_collate
from incremental.models import create_model, expand_head
from incremental.module import IncrementalSegmenter, NonFiniteLossError
from incremental.strategies import PRESETS, resolve_strategy
from incremental.workflow import strategy_table, training_sources


def _setup(scenario, name, **overrides):
    strategy = resolve_strategy(name, overrides or None)
    teacher = create_model("tiny-unet", scenario.transition.num_old_classes).eval()
    sources = training_sources(scenario, strategy)
    table = strategy_table(sources, scenario.transition, strategy)
    student = expand_head(teacher, scenario.transition, split_aware=strategy.split_aware)
    module = IncrementalSegmenter(student, scenario.transition, table, strategy, teacher=teacher)
    samples = [SampleDataset(s, row)[i] for row, s in enumerate(sources) for i in range(2)]
    return module, pad_collate(samples)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*self.log.*")
        yield


@pytest.mark.parametrize("name", [p for p in PRESETS] + ["candidate-sets+replay"])
def test_training_step_every_strategy(split_scenario, name):
    module, batch = _setup(split_scenario, name)
    if module.strategy.pseudo_labels:
        module.pseudo_thresholds.fill_(0.5)
    module.train()
    teacher_before = {k: v.clone() for k, v in module.teacher.state_dict().items()}
    loss = module.training_step(batch, 0)
    assert torch.isfinite(loss) and loss.requires_grad
    loss.backward()
    grads = [p.grad for p in module.student.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for p in module.teacher.parameters())
    assert not module.teacher.training  # train() keeps the teacher in eval mode
    for k, v in module.teacher.state_dict().items():
        assert torch.equal(v, teacher_before[k]), k  # BatchNorm statistics untouched too


def test_freeze_trains_only_created_rows(new_class_scenario):
    module, batch = _setup(new_class_scenario, "freeze")
    optimizer = torch.optim.AdamW(
        [p for p in module.student.parameters() if p.requires_grad], lr=0.1, weight_decay=0.0
    )
    before = {k: v.clone() for k, v in module.student.state_dict().items()}
    module.train()
    module.training_step(batch, 0).backward()
    optimizer.step()
    bag = module.classes.index("bag")
    for key, value in module.student.state_dict().items():
        if key.startswith("segmentation_head.0."):
            changed = (
                (value != before[key]).flatten(1).any(dim=1)
                if value.dim() > 1
                else (value != before[key])
            )
            assert changed.nonzero().flatten().tolist() == [bag], key
        else:
            assert torch.equal(value, before[key]), key  # BatchNorm stats included


def test_non_finite_loss_names_step_and_term(new_class_scenario):
    module, batch = _setup(new_class_scenario, "candidate-sets")
    batch["image"][0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"batch 3: term\(s\) \['ce', 'kd'\]"):
        module.training_step(batch, 3)
    module.on_non_finite = "skip"
    assert module.training_step(batch, 3) is None
    assert int(module.skipped_batches) == 1


def test_strategy_needing_a_teacher_requires_one(new_class_scenario):
    module, _ = _setup(new_class_scenario, "mib")
    with pytest.raises(ValueError, match="uses a teacher"):
        IncrementalSegmenter(module.student, module.transition, module.table, module.strategy)


def test_strategies_in_a_row_train_the_whole_student(new_class_scenario, tmp_path):
    """Several strategies share one teacher object; each student must train all its layers."""
    from incremental.workflow import TrainConfig, train_step

    teacher = create_model("tiny-unet", new_class_scenario.transition.num_old_classes)
    fast = TrainConfig(epochs=1, batch_size=4, progress_bar=False, limit_train_batches=1)
    for name in ("candidate-sets", "mib"):
        spec = {"name": "tiny-unet"}
        train_step(new_class_scenario, teacher, spec, resolve_strategy(name), fast, 0, tmp_path)
        student = expand_head(teacher, new_class_scenario.transition)
        assert all(p.requires_grad for p in student.parameters()), name
    assert not any(p.requires_grad for p in teacher.parameters())  # the teacher stays frozen


def test_plop_thresholds_sum_histograms_over_processes(split_scenario):
    """Under DDP each process sees half the data; the thresholds must be those of all of it.
    A stand-in strategy whose reduce adds the other process's counts plays the second one."""
    from types import SimpleNamespace

    from incremental.losses import EntropyHistogram
    from incremental.losses.pseudo_labels import unlabeled_pixels

    torch.manual_seed(0)  # a fixed random teacher: its halves' medians differ (checked below)
    module, batch = _setup(split_scenario, "plop")
    halves = [{k: v[i::2] for k, v in batch.items()} for i in range(2)]

    def fit(batches, strategy):
        module._trainer = SimpleNamespace(train_dataloader=batches, strategy=strategy)
        try:
            return module._fit_pseudo_thresholds()
        finally:
            module._trainer = None

    class OneProcess:
        def reduce(self, tensor, reduce_op):
            return tensor

    class OtherHalfToo:  # sums this process's counts with those of the other half
        def reduce(self, tensor, reduce_op):
            assert reduce_op == "sum"
            other = EntropyHistogram(split_scenario.transition.num_old_classes)
            with torch.no_grad():
                other.update(module.teacher(halves[1]["image"]),
                             unlabeled_pixels(module._candidates(halves[1])))  # fmt: skip
            return tensor + other.counts

    whole = fit([batch], OneProcess())
    torch.testing.assert_close(fit([halves[0]], OtherHalfToo()), whole)
    assert not torch.equal(fit([halves[0]], OneProcess()), whole)  # half the data differs
