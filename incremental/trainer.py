"""The Lightning Trainer of one training run: its loop settings, its callbacks and loggers,
and the fit-then-test that every step runs (checkpoints selected on validation mIoU, test
scores from the best checkpoint)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger
from torch import nn
from torch.utils.data import DataLoader

from incremental.callbacks import LogValidationImages
from incremental.checkpoint_io import SafeCheckpointIO
from incremental.data.core import SampleDataset, SegmentationSource
from incremental.data.datamodule import IncrementalDataModule, pad_collate
from incremental.data.transforms import eval_transform
from incremental.devices import describe_device
from incremental.module import IncrementalSegmenter

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
        progress_refresh_rate: redraw it every N batches (a log file of redraws grows less).
        log_images: validation images logged each epoch with ground truth and prediction
            masks, to the loggers that take them (W&B); 0: none.
        on_non_finite: ``"raise"`` or ``"skip"`` a batch whose loss is not finite.
        crop_size: random training crop (None: whole images).
        augment: ``"none"``, ``"flip"``, ``"full"`` or ``"paper"`` (MiB's and PLOP's random
            resized crop to ``crop_size`` and flip) training augmentation.
        eval_crop: evaluate on the central ``eval_crop`` square after resizing the shorter side
            to it (the papers' protocol, 512); None: whole images.
        limit_train_batches, limit_val_batches: Lightning's, for smoke runs.
        trainer: any other ``lightning.Trainer`` argument (``accumulate_grad_batches``,
            ``gradient_clip_val``, ``max_steps``, ``log_every_n_steps``...), checked against
            its signature.
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
    progress_refresh_rate: int = 1
    log_images: int = 4
    on_non_finite: str = "raise"
    crop_size: int | None = None
    augment: str = "full"
    eval_crop: int | None = None
    limit_train_batches: Any = 1.0
    limit_val_batches: Any = 1.0
    trainer: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepResult:
    """A trained model and its scores on the test split (fractions in [0, 1]).

    Attributes:
        device: where it trained (``"cpu"``, ``"cuda (NVIDIA H100 80GB HBM3)"``); empty for a
            model that was not trained here.
        metadata: plain data about the model (its id, where it came from).
    """

    model: nn.Module
    scores: dict[str, float]
    best_checkpoint: str | None
    device: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


#: TrainConfig fields that set Trainer arguments: the ``trainer`` mapping may not set these.
TRAINER_FIELDS = {
    "max_epochs": "epochs",
    "accelerator": "accelerator",
    "devices": "devices",
    "strategy": "strategy",
    "num_nodes": "num_nodes",
    "precision": "precision",
    "deterministic": "deterministic",
    "enable_progress_bar": "progress_bar",
    "limit_train_batches": "limit_train_batches",
    "limit_val_batches": "limit_val_batches",
}
#: Trainer arguments the framework owns (where checkpoints and logs go, its callbacks).
TRAINER_OWNED = ("default_root_dir", "logger", "callbacks", "plugins", "enable_checkpointing")
#: The framework's defaults for other Trainer arguments; the ``trainer`` mapping may override.
TRAINER_DEFAULTS = {
    "enable_model_summary": False,
    "log_every_n_steps": 10,
    "num_sanity_val_steps": 0,
}


def check_trainer_arguments(arguments: dict[str, Any], where: str = "train.trainer") -> None:
    """Every key names an argument of ``lightning.Trainer`` that the config does not set
    elsewhere; errors name the key."""
    import inspect

    accepted = set(inspect.signature(L.Trainer.__init__).parameters) - {"self"}
    for key in arguments:
        if key in TRAINER_FIELDS:
            raise ValueError(f"{where}.{key}: set train.{TRAINER_FIELDS[key]} instead")
        if key in TRAINER_OWNED:
            raise ValueError(f"{where}.{key}: set by the framework, not configurable")
        if key not in accepted:
            raise ValueError(
                f"{where}.{key}: not an argument of lightning.Trainer; accepted: "
                f"{sorted(accepted - set(TRAINER_FIELDS) - set(TRAINER_OWNED))}"
            )


def make_trainer(
    config: TrainConfig, out_dir: Path, loggers: list[Logger] | None = None
) -> L.Trainer:
    """A Trainer that keeps the best checkpoint on validation mIoU and the last one; any other
    Trainer argument comes from ``config.trainer``."""
    check_trainer_arguments(config.trainer)
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
    if config.progress_bar:
        callbacks.append(TQDMProgressBar(refresh_rate=config.progress_refresh_rate))
    if config.log_images > 0 and any(type(lg).__name__ == "WandbLogger" for lg in loggers or []):
        callbacks.append(LogValidationImages(config.log_images))
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
        limit_train_batches=config.limit_train_batches,
        limit_val_batches=config.limit_val_batches,
        **{**TRAINER_DEFAULTS, **config.trainer},
    )


def fit_and_test(
    module: IncrementalSegmenter,
    datamodule: IncrementalDataModule,
    config: TrainConfig,
    out_dir: Path,
    loggers: list[Logger] | None,
    resume_from: str | None = None,
) -> StepResult:
    """Fit (resuming from ``resume_from`` when given), then test the best validation
    checkpoint; returns the student, its test scores, the checkpoint and the device."""
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


def evaluate(
    module: IncrementalSegmenter, source: SegmentationSource, config: TrainConfig
) -> dict[str, float]:
    """The module's test scores on ``source`` (mask value = class index), one process."""
    loader = DataLoader(
        SampleDataset(source, -1, eval_transform(config.eval_crop)),
        batch_size=config.eval_batch_size or config.batch_size,
        collate_fn=pad_collate,
    )
    trainer = L.Trainer(
        accelerator=config.accelerator,
        devices=1,
        precision=config.precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        trainer.test(module, dataloaders=loader, verbose=False)
    return dict(module.test_scores)
