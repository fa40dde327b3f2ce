"""The naive answers a practitioner tries first (DESIGN §3): fine-tune with the unlabeled
pixels read as background or ignored, or freeze the old network and train the new rows only."""

from __future__ import annotations

from incremental.labels import LabelReading
from incremental.strategies.components import PartialCE
from incremental.strategies.composition import Strategy
from incremental.strategies.registry import register_strategy


@register_strategy("finetune")
def finetune(unlabeled: str = "background") -> Strategy:
    """Expand the head (random rows for the created classes) and fine-tune with plain
    cross-entropy; unlabeled pixels are ``unlabeled`` (a class name, or ``"ignore"``), old
    labels mean the class that keeps their index."""
    reading = LabelReading(unlabeled=unlabeled, old_labels="representative")
    return Strategy("finetune", reading, init="random", terms=(PartialCE(),))


@register_strategy("finetune-ignore")
def finetune_ignore() -> Strategy:
    """Fine-tuning with the unlabeled pixels ignored ("everything labeled is the new class")."""
    return finetune(unlabeled="ignore")


@register_strategy("freeze")
def freeze(unlabeled: str = "background") -> Strategy:
    """Train only the created classes' classifier rows; the rest of the network, batch-norm
    statistics included, stays the old model's."""
    reading = LabelReading(unlabeled=unlabeled, old_labels="representative")
    return Strategy("freeze", reading, init="random", terms=(PartialCE(),), freeze=True)
