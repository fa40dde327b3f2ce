"""The oracle: every image fully labeled, trained from the old model (an upper bound)."""

from __future__ import annotations

from incremental.labels import LabelReading
from incremental.strategies.components import PartialCE
from incremental.strategies.composition import Strategy
from incremental.strategies.registry import register_strategy


@register_strategy("joint")
def joint(init: str = "mass_preserving") -> Strategy:
    """Old and new images with complete labels, cross-entropy only; ``init="scratch"``
    trains a new network instead of expanding the old one."""
    return Strategy(
        "joint", LabelReading(full_labels=True), init=init, terms=(PartialCE(),), replay=True
    )
