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

from incremental.devices import with_resolved_precision

#: Bump when a change makes cached old models stale.
CACHE_VERSION = 1
#: Step-0 settings that do not change the trained model (``channels_last`` changes only
#: floating-point rounding).
NON_SEMANTIC = ("progress_bar", "num_workers", "channels_last")
#: The shipped old models.
SHIPPED_DIR = Path(__file__).resolve().parent / "old_models"


#: Scenario settings that change only the new images, not the old ones nor the test scenes:
#: variants that differ only in them share their old model.
NEW_IMAGES_ONLY = ("name", "sibling_rate", "new_items_per_scene")
NEW_IMAGE_SIZES = ("new_train", "val")


def old_data_config(scenario_config: dict[str, Any]) -> dict[str, Any]:
    """The part of a Fashion scenario's config that decides its old model."""
    if scenario_config.get("kind") != "fashion":
        return scenario_config
    kept = {k: v for k, v in scenario_config.items() if k not in NEW_IMAGES_ONLY}
    sizes = {k: v for k, v in dict(kept.get("sizes") or {}).items() if k not in NEW_IMAGE_SIZES}
    return {**kept, "sizes": sizes}


def cache_payload(
    scenario_config: dict[str, Any],
    fashion_mnist: str | None,
    model: dict[str, Any],
    train: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    """What decides an old model (what its hash is made of). Precision ``auto`` enters as what
    it resolves to on this machine (a bfloat16 model is not a float32 one)."""
    train = with_resolved_precision(train)
    return {
        "version": CACHE_VERSION,
        "scenario": old_data_config(scenario_config),
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


def find_old_model(cache_dir: str | Path, seed: int, key: str) -> Path | None:
    """The cached or shipped old model of this key (whichever scenario variant trained it),
    if there is one: the newest, so that a model retrained (``--retrain-old``) under another
    variant's name is the one read."""
    for folder in (Path(cache_dir), SHIPPED_DIR):
        found = list(folder.glob(f"old-*-seed{seed}-{key}.pt")) if folder.is_dir() else []
        if found:
            return max(found, key=lambda path: (path.stat().st_mtime_ns, path.name))
    return None
