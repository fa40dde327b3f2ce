"""Shared fixtures: tiny generated scenarios (32x32 scenes, a few dozen images)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")

TINY_SIZES = {"old_train": 24, "new_train": 16, "val": 8, "test": 8, "old_val": 8}


def tiny_scenario_config(name: str, **overrides) -> dict:
    """A shipped scenario config shrunk for tests."""
    from experiments.config import load_scenario_config

    return load_scenario_config(
        name, {"sizes": TINY_SIZES, "image_size": 32, "items_per_scene": [1, 2], **overrides}
    )


@pytest.fixture(scope="session")
def new_class_scenario():
    from incremental.data import build_scenario

    return build_scenario(tiny_scenario_config("fashion-new-class"))


@pytest.fixture(scope="session")
def split_scenario():
    from incremental.data import build_scenario

    return build_scenario(tiny_scenario_config("fashion-split"))
