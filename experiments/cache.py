"""Trained old models, cached by a hash of everything that decides them.

The old model of (scenario config, Fashion-MNIST source, model, step-0 settings, seed) is
trained once and saved as a model file under the cache folder; later experiments load it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

#: Bump when a change makes cached old models stale.
CACHE_VERSION = 1
#: Step-0 settings that do not change the trained model.
NON_SEMANTIC = ("progress_bar", "num_workers")


def cache_key(
    scenario_config: dict[str, Any],
    fashion_mnist: str | None,
    model: dict[str, Any],
    train: dict[str, Any],
    seed: int,
) -> str:
    """A 16-hex-digit hash of what decides an old model."""
    payload = {
        "version": CACHE_VERSION,
        "scenario": scenario_config,
        "fashion_mnist": fashion_mnist,
        "model": model,
        "train": {k: v for k, v in train.items() if k not in NON_SEMANTIC},
        "seed": seed,
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_model_path(cache_dir: str | Path, scenario: str, seed: int, key: str) -> Path:
    return Path(cache_dir) / f"old-{scenario}-seed{seed}-{key}.pt"
