"""Training a step end to end: the old model (step 0) and a strategy's step 1.

Thin functions over the LightningModule and DataModule that the experiment runner, the
notebook and users' scripts share. Checkpoints are selected on the validation split; test
scores come from the best checkpoint.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger
from torch import nn

from incremental.checkpoint_io import SafeCheckpointIO
from incremental.data.core import SegmentationSource
from incremental.data.datamodule import IncrementalDataModule
from incremental.data.scenario import Scenario, as_sources
from incremental.devices import describe_device
from incremental.labels import CandidateSetTable, StepLabels
from incremental.models import build_model, expand_head
from incremental.module import IncrementalSegmenter, Optimization
from incremental.strategies import Strategy

MONITOR = "val/miou_all"


@dataclass
class TrainConfig:
    """Loop settings of one training run.

    Attributes:
        epochs: maximum epochs (early stopping may end sooner).
        epoch_size: training samples per epoch (default: the sources' total).
        batch_size, eval_batch_size: loader batch sizes.
        lr, weight_decay, optimizer: ``"adamw"`` or ``"sgd"``; the learning rate decays
            polynomially to 0.
        num_workers: data loader processes.
        accelerator, devices, strategy, num_nodes: Lightning's; ``accelerator="auto"`` (the
            default) is the GPU when there is one, the CPU otherwise; ``strategy="ddp"`` for
            several processes.
        precision: Lightning precision; ``"32-true"`` unless asked (mixed precision is opt-in).
        early_stopping_patience: validation epochs without improvement before stopping; None
            disables early stopping.
        deterministic: ``torch.use_deterministic_algorithms``. ``"warn"`` (the default) uses
            the deterministic kernels wherever they exist and warns where a CUDA op has none
            (``True`` would stop there); on the CPU every op is deterministic either way.
        progress_bar: Lightning's progress bar.
        on_non_finite: ``"raise"`` or ``"skip"`` a batch whose loss is not finite.
        crop_size: random training crop (None: whole images).
        augment: ``"none"``, ``"flip"`` or ``"full"`` training augmentation.
        limit_train_batches, limit_val_batches: Lightning's, for smoke runs.
    """

    epochs: int = 4
    epoch_size: int | None = None
    batch_size: int = 16
    eval_batch_size: int | None = None
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    num_workers: int = 0
    accelerator: str = "auto"
    devices: Any = 1
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"
    early_stopping_patience: int | None = None
    deterministic: Any = "warn"
    progress_bar: bool = True
    on_non_finite: str = "raise"
    crop_size: int | None = None
    augment: str = "full"
    limit_train_batches: Any = 1.0
    limit_val_batches: Any = 1.0


@dataclass
class StepResult:
    """A trained model and its scores on the test split (fractions in [0, 1]).

    Attributes:
        device: where it trained (``"cpu"``, ``"cuda (NVIDIA H100 80GB HBM3)"``); empty for a
            model that was not trained here.
    """

    model: nn.Module
    scores: dict[str, float]
    best_checkpoint: str | None
    device: str = ""


def make_trainer(
    config: TrainConfig, out_dir: Path, loggers: list[Logger] | None = None
) -> L.Trainer:
    """A Trainer that keeps the best checkpoint on validation mIoU and the last one."""
    callbacks: list[L.Callback] = [
        ModelCheckpoint(
            dirpath=out_dir / "checkpoints",
            filename="best",
            monitor=MONITOR,
            mode="max",
            save_last=True,
        )
    ]
    if config.early_stopping_patience is not None:
        callbacks.append(
            EarlyStopping(MONITOR, mode="max", patience=config.early_stopping_patience)
        )
    return L.Trainer(
        default_root_dir=out_dir,
        max_epochs=config.epochs,
        accelerator=config.accelerator,
        devices=config.devices,
        strategy=config.strategy,
        num_nodes=config.num_nodes,
        precision=config.precision,
        deterministic=config.deterministic,
        logger=loggers if loggers else [CSVLogger(out_dir, name="logs")],
        callbacks=callbacks,
        # Atomic checkpoint writes; weights_only loads (resume, testing the best checkpoint).
        plugins=[SafeCheckpointIO()],
        enable_progress_bar=config.progress_bar,
        enable_model_summary=False,
        log_every_n_steps=10,
        limit_train_batches=config.limit_train_batches,
        limit_val_batches=config.limit_val_batches,
        num_sanity_val_steps=0,
    )


def _fit_and_test(
    module: IncrementalSegmenter,
    datamodule: IncrementalDataModule,
    config: TrainConfig,
    out_dir: Path,
    loggers: list[Logger] | None,
    resume_from: str | None = None,
) -> StepResult:
    trainer = make_trainer(config, out_dir, loggers)
    with warnings.catch_warnings():
        # Lightning suggests workers on every CPU run; num_workers is the user's choice.
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*is smaller than the logging interval.*")
        # Epoch metrics come from confusion matrices that torchmetrics syncs across processes.
        warnings.filterwarnings("ignore", ".*when logging on epoch level in distributed.*")
        # The frozen teacher is in eval mode on purpose (IncrementalSegmenter.train keeps it).
        warnings.filterwarnings("ignore", ".*module\\(s\\) in eval mode at the start of training.*")
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
        best = trainer.checkpoint_callback.best_model_path or None
        trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False)
    device = describe_device(trainer.strategy.root_device)
    return StepResult(module.student, dict(module.test_scores), best, device)


def _learner_settings(config: TrainConfig) -> dict[str, Any]:
    """The module arguments that come from the loop settings, for step 0 and step 1 alike."""
    return {
        "optimization": Optimization(config.lr, config.weight_decay, config.optimizer),
        "on_non_finite": config.on_non_finite,
    }


def train_old_model(
    scenario: Scenario,
    model_spec: dict[str, Any],
    config: TrainConfig,
    seed: int,
    out_dir: str | Path,
    loggers: list[Logger] | None = None,
) -> StepResult:
    """Step 0: train the teacher on the old images in the old classes.

    Validation and test both use ``scenario.old_val`` (old classes; the step-1 test scenes
    hold classes the old model does not know).
    """
    if scenario.old_val is None:
        raise ValueError(
            f"scenario {scenario.name!r}: training the old model needs old_val (validation "
            "images in the old classes)"
        )
    L.seed_everything(seed, workers=True, verbose=False)
    out_dir = Path(out_dir)
    old_sources = as_sources(scenario.old_train)
    labels = StepLabels.identity(
        scenario.transition.old_classes, [s.declaration for s in old_sources]
    )
    model = build_model(model_spec, labels.num_classes, allow_factory=True)
    module = IncrementalSegmenter(model, labels, **_learner_settings(config))
    datamodule = _datamodule(old_sources, scenario.old_val, scenario.old_val, None, config, seed)
    return _fit_and_test(module, datamodule, config, out_dir, loggers)


@dataclass
class StepData:
    """A strategy's step-1 training data.

    Attributes:
        sources: the training sources; source d is row d of ``labels.table``.
        shares: each source's share of an epoch (replay), or None: proportional to size.
        labels: the step's label space as the strategy reads it.
    """

    sources: list[SegmentationSource]
    shares: list[float] | None
    labels: StepLabels


def step_data(scenario: Scenario, strategy: Strategy) -> StepData:
    """New images, old images when replaying, full labels for the oracle; and their labels."""
    reading = strategy.reading
    shares = None
    if reading.full_labels:
        missing = [n for n in ("new_train_full", "old_train_full") if getattr(scenario, n) is None]
        if missing:
            raise ValueError(
                f"scenario {scenario.name!r}: the oracle needs fully labeled data ({missing})"
            )
        sources = [scenario.new_train_full]
        if strategy.replay:
            sources.append(scenario.old_train_full)
    else:
        new, old = as_sources(scenario.new_train), as_sources(scenario.old_train)
        sources = new + old if strategy.replay else new
        if strategy.replay:
            shares = replay_shares([len(s) for s in new], [len(s) for s in old], strategy.old_share)
    labels = StepLabels(
        scenario.transition,
        [s.declaration for s in sources],
        reading,
        report_new_classes=scenario.report_new_classes,
        # Naive baselines (fine-tuning, freezing) may leave a class untaught: that is the
        # failure they exist to show, not a configuration error.
        check_teachable=strategy.uses_teacher or reading.full_labels,
    )
    return StepData(sources, shares, labels)


def build_student(
    teacher: nn.Module, model_spec: dict[str, Any], labels: StepLabels, init: str
) -> nn.Module:
    """The step's student: the teacher with its head expanded by ``labels.teacher_map``, or a
    new network (``init="scratch"``)."""
    if init == "scratch":
        return build_model(model_spec, labels.num_classes, allow_factory=True)
    return expand_head(
        teacher, labels.teacher_map, init=init, classifier=model_spec.get("classifier")
    )


def build_step(
    scenario: Scenario,
    teacher: nn.Module,
    model_spec: dict[str, Any],
    strategy: Strategy,
    config: TrainConfig | None = None,
) -> tuple[IncrementalSegmenter, StepData]:
    """The LightningModule of a strategy's step (student expanded from ``teacher``) and its
    training data, as :func:`train_step` trains them."""
    config = config or TrainConfig()
    data = step_data(scenario, strategy)
    student = build_student(teacher, model_spec, data.labels, strategy.init)
    weights = class_weights(data.sources, data.labels.table) if strategy.class_weighting else None
    module = IncrementalSegmenter(
        student,
        data.labels,
        strategy,
        # Only a strategy that uses the teacher holds it (and saves it in its checkpoints).
        teacher=teacher if strategy.uses_teacher else None,
        class_weights=weights,
        **_learner_settings(config),
    )
    return module, data


def train_step(
    scenario: Scenario,
    teacher: nn.Module,
    model_spec: dict[str, Any],
    strategy: Strategy,
    config: TrainConfig,
    seed: int,
    out_dir: str | Path,
    loggers: list[Logger] | None = None,
    resume_from: str | None = None,
) -> StepResult:
    """Step 1: expand the teacher's head and train with ``strategy``; test on the best
    validation checkpoint."""
    L.seed_everything(seed, workers=True, verbose=False)
    module, data = build_step(scenario, teacher, model_spec, strategy, config)
    datamodule = _datamodule(data.sources, scenario.val, scenario.test, data.shares, config, seed)
    return _fit_and_test(module, datamodule, config, Path(out_dir), loggers, resume_from)


def replay_shares(new_lengths: list[int], old_lengths: list[int], old_share: float) -> list[float]:
    """Each training source's share of an epoch when replaying: the old sources together get
    ``old_share``, the new ones the rest; within each group, in proportion to their sizes."""
    new_total, old_total = sum(new_lengths), sum(old_lengths)
    return [(1.0 - old_share) * n / new_total for n in new_lengths] + [
        old_share * n / old_total for n in old_lengths
    ]


def _datamodule(
    sources: list[SegmentationSource],
    val: SegmentationSource,
    test: SegmentationSource | None,
    shares: list[float] | None,
    config: TrainConfig,
    seed: int,
) -> IncrementalDataModule:
    return IncrementalDataModule(
        [(s, i) for i, s in enumerate(sources)],
        val,
        test,
        shares=shares,
        epoch_size=config.epoch_size,
        batch_size=config.batch_size,
        eval_batch_size=config.eval_batch_size,
        num_workers=config.num_workers,
        seed=seed,
        crop_size=config.crop_size,
        augment=config.augment,
    )


def class_weights(
    sources: list[SegmentationSource], table: CandidateSetTable, max_images: int = 2000
) -> torch.Tensor:
    """Median-frequency class weights from the pixels whose candidate set is one class.

    ``w_c = median(f) / f_c`` over classes seen as singletons; unseen classes get weight 1.
    At most ``max_images`` images per source are read.
    """
    counts = torch.zeros(len(table.classes), dtype=torch.float64)
    for row, source in enumerate(sources):
        for i in range(min(len(source), max_images)):
            _, mask = source.load(i)
            sets = table.sets[row][torch.from_numpy(mask).long()]  # (H, W, C)
            single = sets.sum(dim=-1) == 1
            counts += sets[single].sum(dim=0).double()
    seen = counts > 0
    weights = torch.ones_like(counts)
    if bool(seen.any()):
        freq = counts / counts.sum()
        weights[seen] = freq[seen].median() / freq[seen]
    logging.getLogger(__name__).info("class weights: %s", weights.tolist())
    return weights.float()
