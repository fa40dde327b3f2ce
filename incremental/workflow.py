"""Training a step end to end: the old model (step 0) and a strategy's step 1.

Thin functions over the LightningModule and DataModule that the experiment runner, the
notebook and users' scripts share. Checkpoints are selected on the validation split; test
scores come from the best checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import Logger
from torch import nn

from incremental.data.class_weights import class_weights
from incremental.data.core import DatasetError, SegmentationSource, largest_image
from incremental.data.datamodule import IncrementalDataModule
from incremental.data.scenario import Scenario, as_sources
from incremental.devices import resolve_device
from incremental.labels import StepLabels
from incremental.memory import check_batch_fits
from incremental.models import build_model, expand_head
from incremental.module import IncrementalSegmenter, Optimization
from incremental.strategies import Strategy
from incremental.trainer import StepResult, TrainConfig, evaluate, fit_and_test

__all__ = [
    "StepData",
    "StepResult",
    "TrainConfig",
    "build_step",
    "build_student",
    "epoch_size",
    "replay_shares",
    "step_data",
    "train_old_model",
    "train_step",
]


def _learner_settings(config: TrainConfig) -> dict[str, Any]:
    """The module arguments that come from the loop settings, for step 0 and step 1 alike."""
    return {
        "optimization": Optimization(config.lr, config.weight_decay, config.optimizer),
        "on_non_finite": config.on_non_finite,
        "max_skipped_share": config.max_skipped_share,
    }


def train_old_model(
    scenario: Scenario,
    model_spec: dict[str, Any],
    config: TrainConfig,
    seed: int,
    out_dir: str | Path,
    loggers: list[Logger] | None = None,
    resume_from: str | None = None,
    checkpoint_tag: str | None = None,
) -> StepResult:
    """Step 0: train the teacher on the old images in the old classes (continuing from the
    Lightning checkpoint ``resume_from`` when given; ``checkpoint_tag``, written into the
    checkpoints, says which settings they belong to).

    Validation and test both use ``scenario.old_val`` (old classes; the step-1 test scenes
    hold classes the old model does not know). Where the scenario has them, the step's test
    scenes labeled in the old classes score the model too (``test_scenes/...`` scores).
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
    result = fit_and_test(module, datamodule, config, out_dir, loggers, resume_from, checkpoint_tag)
    if scenario.old_test is not None:  # the step's own test scenes, in the old labels
        scores = evaluate(module, scenario.old_test, config)
        result.scores.update({f"test_scenes/{k}": v for k, v in scores.items()})
    return result


@dataclass
class StepData:
    """A strategy's step-1 training data.

    Attributes:
        sources: the training sources; source d is row d of ``labels.table``.
        shares: each source's share of an epoch (replay), or None: proportional to size.
        labels: the step's label space as the strategy reads it.
        num_new: the first ``num_new`` sources are the new images (the rest the old ones).
    """

    sources: list[SegmentationSource]
    shares: list[float] | None
    labels: StepLabels
    num_new: int = 0


def step_data(scenario: Scenario, strategy: Strategy) -> StepData:
    """New images, old images when replaying, full labels for the oracle; and their labels.

    When replaying (the oracle too), the old images take ``strategy.old_share`` of each epoch
    and the new ones the rest, whatever the sizes of the two (see :func:`epoch_size`).
    """
    reading = strategy.reading
    if reading.full_labels:
        missing = [n for n in ("new_train_full", "old_train_full") if getattr(scenario, n) is None]
        if missing:
            raise ValueError(
                f"scenario {scenario.name!r}: the oracle needs fully labeled data ({missing})"
            )
        new, old = [scenario.new_train_full], [scenario.old_train_full]
    else:
        new, old = as_sources(scenario.new_train), as_sources(scenario.old_train)
    sources = new + old if strategy.replay else new
    shares = None
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
    return StepData(sources, shares, labels, num_new=len(new))


def epoch_size(data: StepData, strategy: Strategy, config: TrainConfig) -> int:
    """Training samples per epoch: ``config.epoch_size`` (default: the new images' number) new
    samples, and when replaying as many more old ones as ``old_share`` asks, so that replay
    (and the oracle) add old images instead of taking the new images' place in the budget."""
    new = config.epoch_size or sum(len(s) for s in data.sources[: data.num_new])
    if not strategy.replay:
        return new
    return round(new / (1.0 - strategy.old_share))


def build_student(
    teacher: nn.Module, model_spec: dict[str, Any], labels: StepLabels, strategy: Strategy
) -> nn.Module:
    """The step's student: the teacher with its head expanded by ``labels.teacher_map`` as the
    strategy says, or a new network (``init="scratch"``)."""
    if strategy.init == "scratch":
        return build_model(model_spec, labels.num_classes, allow_factory=True)
    return expand_head(
        teacher,
        labels.teacher_map,
        init=strategy.init,
        classifier=model_spec.get("classifier"),
        remainder_share=strategy.remainder_share,
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
    student = build_student(teacher, model_spec, data.labels, strategy)
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
    check_memory(module.student, data.sources, config)
    datamodule = _datamodule(
        data.sources, scenario.val, scenario.test, data.shares, config, seed,
        epoch_size(data, strategy, config),
    )  # fmt: skip
    return fit_and_test(module, datamodule, config, Path(out_dir), loggers, resume_from)


def check_memory(model: nn.Module, sources: list[SegmentationSource], config: TrainConfig) -> None:
    """Refuse, before training, a batch that would not fit in memory (the largest training
    image, after the shrink to ``max_image_side`` or the crop, in a full batch)."""
    sizes = [largest_image(s) for s in sources]
    if not sizes or any(size is None for size in sizes):
        return  # sizes unknown without reading every file (paper datasets): nothing to say
    if config.crop_size is not None:
        height = width = config.crop_size
    else:
        height, width = max(h for h, _ in sizes), max(w for _, w in sizes)
        side = config.max_image_side
        if side is not None and max(height, width) > side:
            scale = side / max(height, width)
            height, width = round(height * scale), round(width * scale)
    accelerator = str(config.accelerator)
    kind = "cuda" if accelerator in ("gpu", "cuda") else "auto" if accelerator == "auto" else "cpu"
    try:
        check_batch_fits(model, config.batch_size, height, width, resolve_device(kind))
    except ValueError as error:
        raise DatasetError(f"{error} (the largest training image is {width}x{height})") from None


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
    samples_per_epoch: int | None = None,
) -> IncrementalDataModule:
    return IncrementalDataModule(
        [(s, i) for i, s in enumerate(sources)],
        val,
        test,
        shares=shares,
        epoch_size=samples_per_epoch or config.epoch_size,
        batch_size=config.batch_size,
        eval_batch_size=config.eval_batch_size,
        num_workers=config.num_workers,
        seed=seed,
        crop_size=config.crop_size,
        augment=config.augment,
        eval_crop=config.eval_crop,
        max_image_side=config.max_image_side,
    )
