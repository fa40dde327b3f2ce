"""Trained old models, cached by a hash of everything that decides them, and shipped.

The old model of (scenario config, Fashion-MNIST source, model, step-0 settings, seed) is
trained once and saved as a model file under the cache folder; later experiments load it.
``experiments/old_models/`` holds the shipped ones (the quick profile's, trained by
``python -m experiments.ship_old_models``): a read-only second cache, used when its file
name carries the same hash. Each file records what its hash was made of.
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
#: The shipped old models.
SHIPPED_DIR = Path(__file__).resolve().parent / "old_models"


def cache_payload(
    scenario_config: dict[str, Any],
    fashion_mnist: str | None,
    model: dict[str, Any],
    train: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    """What decides an old model (what its hash is made of)."""
    return {
        "version": CACHE_VERSION,
        "scenario": scenario_config,
        "fashion_mnist": fashion_mnist,
        "model": model,
        "train": {k: v for k, v in train.items() if k not in NON_SEMANTIC},
        "seed": seed,
    }


def cache_key(payload: dict[str, Any]) -> str:
    """A 16-hex-digit hash of a :func:`cache_payload`."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def model_file_name(scenario: str, seed: int, key: str) -> str:
    return f"old-{scenario}-seed{seed}-{key}.pt"


def find_old_model(cache_dir: str | Path, scenario: str, seed: int, key: str) -> Path | None:
    """The cached or shipped old model of this key, if there is one."""
    for folder in (Path(cache_dir), SHIPPED_DIR):
        path = folder / model_file_name(scenario, seed, key)
        if path.is_file():
            return path
    return None
