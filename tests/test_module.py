"""The LightningModule: a step is the strategy's composition, the teacher never moves, freezing
and threshold fitting are callbacks."""

from __future__ import annotations

import copy
import warnings

import lightning as L
import pytest
import torch

from incremental.callbacks import FitEntropyThresholds, FreezeOldNetwork, fit_entropy_thresholds
from incremental.data.core import SampleDataset
from incremental.data.datamodule import pad_collate
from incremental.losses import EntropyHistogram, unlabeled_pixels
from incremental.models import create_model
from incremental.module import IncrementalSegmenter, NonFiniteLossError
from incremental.strategies import create_strategy, list_strategies
from incremental.workflow import TrainConfig, build_step, train_step


def _setup(scenario, name, **overrides):
    strategy = create_strategy(name, overrides or None)
    teacher = create_model("tiny-unet", scenario.transition.num_old_classes).eval()
    module, data = build_step(scenario, teacher, {"name": "tiny-unet"}, strategy)
    samples = [SampleDataset(s, row)[i] for row, s in enumerate(data.sources) for i in range(2)]
    return module, pad_collate(samples)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*self.log.*")
        yield


@pytest.mark.parametrize("name", [*list_strategies(), "candidate-sets+replay"])
def test_training_step_every_strategy(split_scenario, name):
    module, batch = _setup(split_scenario, name)
    if "entropy_thresholds" in module.strategy_state.names:
        module.strategy_state["entropy_thresholds"].fill_(0.5)
    module.train()
    teacher = module.teacher
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()} if teacher else {}
    loss = module.training_step(batch, 0)["loss"]
    assert torch.isfinite(loss) and loss.requires_grad
    loss.backward()
    grads = [p.grad for p in module.student.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    if teacher is not None:
        assert all(p.grad is None for p in teacher.parameters())
        assert not teacher.training  # train() keeps the teacher in eval mode
        for k, v in teacher.state_dict().items():
            assert torch.equal(v, teacher_before[k]), k  # BatchNorm statistics untouched too


def test_training_step_is_the_strategy_loss(new_class_scenario):
    """The module adds nothing to the strategy's terms: its loss is their sum on its context."""
    module, batch = _setup(new_class_scenario, "candidate-sets")
    module.train()
    terms = module.strategy.loss_terms(module.step_context(batch))
    assert list(terms) == ["ce", "kd"]
    torch.testing.assert_close(module.training_step(batch, 0)["loss"], terms["ce"] + terms["kd"])


@pytest.mark.parametrize("teacher", [True, False])
def test_family_contrast_reads_the_students_decoder_output(split_scenario, teacher):
    """The contrast term is computed on the decoder output of the student's forward (with or
    without a teacher), and its gradient reaches the body, not the classifier alone."""
    overrides = {"contrast": 1.0} if teacher else {"contrast": 1.0, "distillation": "none"}
    module, batch = _setup(split_scenario, "candidate-sets", refine=teacher, **overrides)
    module.train()
    step = module.step_context(batch)
    assert (step.teacher_logits is not None) == teacher
    # A random teacher refines nothing: narrow some unlabeled pixels of the new images to
    # {footwear_other} by hand, as a teacher confident of "footwear" would.
    classes = list(module.classes)
    child, remainder = classes.index("sneaker"), classes.index("footwear_other")
    unlabeled = step.candidates[:, remainder] & ~step.candidates[:, child]
    footwear = unlabeled & (torch.arange(unlabeled.shape[-1]) % 2 == 0)
    assert footwear.any()
    narrowed = step.candidates.clone()
    narrowed.permute(0, 2, 3, 1)[footwear] = torch.nn.functional.one_hot(
        torch.tensor(remainder), len(classes)
    ).bool()
    step = step.replace(candidates=narrowed)
    decoded = module.student.decoder(module.student.encoder(batch["image"]))
    torch.testing.assert_close(step.student_features[-1], decoded)
    terms = module.strategy.loss_terms(step)
    assert list(terms) == (["ce", "kd", "contrast"] if teacher else ["ce", "contrast"])
    assert terms["contrast"] > 0, "the batch has both a labeled child and a remainder anchor"
    terms["contrast"].backward()
    decoder_grads = [p.grad for p in module.student.decoder.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in decoder_grads)
    head = module.student.segmentation_head.parameters()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in head)


def test_freeze_trains_only_created_rows(new_class_scenario):
    module, batch = _setup(new_class_scenario, "freeze")
    (callback,) = [c for c in module.configure_callbacks() if isinstance(c, FreezeOldNetwork)]
    callback.freeze_before_training(module)
    optimizer = torch.optim.AdamW(
        [p for p in module.student.parameters() if p.requires_grad], lr=0.1, weight_decay=0.0
    )
    before = {k: v.clone() for k, v in module.student.state_dict().items()}
    module.training_step(batch, 0)["loss"].backward()
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


def test_freeze_in_a_real_fit_keeps_the_body(new_class_scenario, tmp_path):
    """Through Lightning's loop (validation included), the frozen body and its batch-norm
    statistics stay the old model's, and only the new row of the classifier moves."""
    teacher = create_model("tiny-unet", new_class_scenario.transition.num_old_classes).eval()
    config = TrainConfig(epochs=2, batch_size=4, progress_bar=False, limit_train_batches=2)
    result = train_step(
        new_class_scenario, teacher, {"name": "tiny-unet"}, create_strategy("freeze"), config,
        0, tmp_path,
    )  # fmt: skip
    ours, theirs = result.model.state_dict(), teacher.state_dict()
    for key, value in theirs.items():
        if not key.startswith("segmentation_head."):
            assert torch.equal(ours[key], value), key


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
    with pytest.raises(ValueError, match="'mib' uses a teacher"):
        IncrementalSegmenter(module.student, module.labels, module.strategy)


def test_strategies_in_a_row_train_the_whole_student(new_class_scenario, tmp_path):
    """Several strategies share one teacher object; each student must train all its layers
    (a regression: every strategy after the first once trained only its head)."""
    teacher = create_model("tiny-unet", new_class_scenario.transition.num_old_classes)
    before = {k: v.clone() for k, v in teacher.named_parameters()}
    fast = TrainConfig(epochs=1, batch_size=4, progress_bar=False, limit_train_batches=1)
    for name in ("candidate-sets", "mib", "candidate-sets"):
        result = train_step(new_class_scenario, teacher, {"name": "tiny-unet"},
                            create_strategy(name), fast, 0, tmp_path / name)  # fmt: skip
        trained = dict(result.model.named_parameters())
        moved = [k for k in before if "encoder" in k and not torch.equal(trained[k], before[k])]
        assert len(moved) > 10, name
    assert all(torch.equal(v, before[k]) for k, v in teacher.named_parameters())
    assert not any(p.requires_grad for p in teacher.parameters())  # the teacher stays frozen


def test_plop_thresholds_sum_histograms_over_processes(split_scenario):
    """Under DDP each process sees half the data; the thresholds must be those of all of it.
    A stand-in reduce that adds the other process's counts plays the second process."""
    torch.manual_seed(0)  # a fixed random teacher: its halves' medians differ (checked below)
    module, batch = _setup(split_scenario, "plop")
    halves = [{k: v[i::2] for k, v in batch.items()} for i in range(2)]

    def candidates(b):
        return module.lookup(b["mask"], b["dataset"])[0]

    def fit(batches, reduce_sum=lambda counts: counts):
        return fit_entropy_thresholds(module.teacher, batches, candidates, 6, 0.001, reduce_sum)

    def other_half_too(counts):  # this process's counts plus those of the other half
        other = EntropyHistogram(6)
        with torch.no_grad():
            other.update(
                module.teacher(halves[1]["image"]), unlabeled_pixels(candidates(halves[1]))
            )
        return counts + other.counts

    whole = fit([batch])
    torch.testing.assert_close(fit([halves[0]], other_half_too), whole)
    assert not torch.equal(fit([halves[0]]), whole)  # half the data differs


def test_plop_thresholds_fitted_once_before_training(split_scenario, tmp_path):
    teacher = create_model("tiny-unet", split_scenario.transition.num_old_classes).eval()
    module, data = build_step(split_scenario, teacher, {"name": "tiny-unet"},
                              create_strategy("plop"))  # fmt: skip
    (callback,) = [c for c in module.configure_callbacks() if isinstance(c, FitEntropyThresholds)]
    thresholds = module.strategy_state["entropy_thresholds"]
    assert bool((thresholds < 0).all())  # not fitted yet
    from incremental.data.datamodule import IncrementalDataModule

    datamodule = IncrementalDataModule([(s, i) for i, s in enumerate(data.sources)],
                                       split_scenario.val, batch_size=4)  # fmt: skip
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(module, datamodule=datamodule)
    fitted = module.strategy_state["entropy_thresholds"].clone()
    assert bool((fitted >= 0.001).all())
    callback.on_train_start(trainer, module)  # fitted thresholds (a resumed run) are kept
    assert torch.equal(module.strategy_state["entropy_thresholds"], fitted)


def test_self_training_from_a_moving_average_of_the_student(split_scenario, tmp_path):
    """``self_training_ema``: the module keeps an exponential moving average of the student
    (weights and batch-norm statistics) that starts as the student, follows it after each
    optimiser step (ema = d·ema + (1 − d)·student; torch's first update copies the student),
    stays in eval mode, and gives the step its
    logits; a real fit checkpoints it and tests on the best checkpoint."""
    settings = {"self_training": 0.8, "self_training_ema": 0.9, "replay": True}
    module, batch = _setup(split_scenario, "candidate-sets", **settings)
    assert module.strategy.ema_decay == 0.9
    module.train()
    assert not module.ema.training
    start = {k: v.clone() for k, v in module.ema.module.state_dict().items()}
    assert all(torch.equal(start[k], v) for k, v in module.student.state_dict().items())
    with torch.no_grad():  # before the step's train-mode forward moves the student's statistics
        expected = copy.deepcopy(module.student).eval()(batch["image"])
    context = module.step_context(batch)
    torch.testing.assert_close(context.ema_logits, expected)
    module.on_train_batch_end(None, batch, 0)  # torch's first update copies the student
    start = {k: v.clone() for k, v in module.student.state_dict().items()}
    with torch.no_grad():
        for p in module.student.parameters():
            p.add_(1.0)
    module.on_train_batch_end(None, batch, 1)
    pairs = zip(module.student.named_parameters(), module.ema.module.parameters(), strict=True)
    for (name, p), q in pairs:
        torch.testing.assert_close(q, 0.9 * start[name] + 0.1 * p, msg=name)
    assert _setup(split_scenario, "candidate-sets", self_training=0.8)[0].ema is None
    config = TrainConfig(epochs=1, batch_size=4, progress_bar=False, limit_train_batches=2)
    teacher = create_model("tiny-unet", split_scenario.transition.num_old_classes).eval()
    strategy = create_strategy("candidate-sets", settings)
    result = train_step(
        split_scenario, teacher, {"name": "tiny-unet"}, strategy, config, 0, tmp_path
    )
    (checkpoint,) = tmp_path.rglob("last.ckpt")
    state = torch.load(checkpoint, weights_only=False)["state_dict"]
    assert any(k.startswith("ema.module.") for k in state) and result.scores
