"""Where two experiment configs differ: one comparison for ``--resume`` and for
``experiments.merge``.

Configs are compared as plain trees (``OmegaConf.to_container``), key by key and with their
type: ``limit_train_batches`` 1 is one batch and 1.0 all of them, so they differ.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from pathlib import Path
from typing import Any

#: Loop settings (in ``train``, ``train_old`` and each ``strategy_train`` entry) that change
#: what is printed or sent to W&B, not what is trained: they may differ.
DISPLAY_SETTINGS = frozenset({"progress_bar", "progress_refresh_rate", "log_images"})
#: A key one config has and the other lacks (an older config: equal to an explicit null).
ABSENT = "<absent>"
#: The config key under which a missing block equals a block of nulls (``differing_keys``).
NULL_BLOCKS = "strategy_overrides"


def comparable_settings(
    config: dict[str, Any],
    ignored: Collection[str],
    old_model_display: Collection[str] = DISPLAY_SETTINGS,
) -> dict[str, Any]:
    """``config`` without the top-level keys ``ignored`` and without the display settings
    (in ``train_old`` only those of ``old_model_display``)."""

    def loop(settings: Any, display: Collection[str] = DISPLAY_SETTINGS) -> Any:
        if not isinstance(settings, dict):
            return settings
        return {k: v for k, v in settings.items() if k not in display}

    kept = {k: v for k, v in config.items() if k not in ignored}
    if "train" in kept:
        kept["train"] = loop(kept["train"])
    if "train_old" in kept:
        kept["train_old"] = loop(kept["train_old"], old_model_display)
    if isinstance(kept.get("strategy_train"), dict):
        kept["strategy_train"] = {k: loop(v) for k, v in kept["strategy_train"].items()}
    return kept


def _all_null(tree: Any) -> bool:
    """Whether ``tree`` is None or a mapping whose every leaf is None."""
    if isinstance(tree, dict):
        return all(_all_null(v) for v in tree.values())
    return tree is None


def differing_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys at which two plain config trees differ; values of another type differ (a
    NaN equals a NaN: a YAML ``.nan`` read twice is the same setting).

    A key one tree lacks equals an explicit null. Under ``strategy_overrides`` a missing block
    also equals a block of nulls (``{candidate-sets: {contrast: null}}`` against none): an older
    config lacks what a newer one pins to the former defaults. Where such a null overrides a
    default that changed (a strategy's replay defaults), the strategies record
    (``strategies.yaml``) tells the two apart, not the config. Elsewhere a block of nulls is a
    difference: ``strategy_train.<name>: {epochs: null}`` would override ``train``'s value."""
    if prefix.startswith(f"{NULL_BLOCKS}.") and (
        (a is None and _all_null(b)) or (b is None and _all_null(a))
    ):
        return []
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [d for k in keys for d in differing_keys(a.get(k), b.get(k), f"{prefix}{k}.")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):  # [2] is not [2.0]
        pairs = enumerate(zip(a, b, strict=True))
        return [d for i, (x, y) in pairs for d in differing_keys(x, y, f"{prefix}{i}.")]
    same = type(a) is type(b) and (
        a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))
    )
    return [] if same else [prefix.rstrip(".")]


def value_at(tree: Any, dotted: str) -> Any:
    """The value at a dotted key of a plain tree (a list's part is its index, as
    :func:`differing_keys` writes it), ``ABSENT`` where there is none."""
    for part in dotted.split("."):
        if isinstance(tree, list) and part.isdigit() and int(part) < len(tree):
            tree = tree[int(part)]
        elif isinstance(tree, dict) and part in tree:
            tree = tree[part]
        else:
            return ABSENT
    return tree


def describe_differences(
    a: dict[str, Any],
    b: dict[str, Any],
    keys: list[str],
    where_a: Path | str,
    where_b: Path | str,
    shown: int = 5,
) -> str:
    """``key (value in A, value in B), ...`` for the first ``shown`` keys, for an error."""
    text = ", ".join(
        f"{key} ({value_at(a, key)!r} in {where_a}, {value_at(b, key)!r} in {where_b})"
        for key in keys[:shown]
    )
    return text + (f" and {len(keys) - shown} more" if len(keys) > shown else "")
