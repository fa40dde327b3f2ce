"""Write a tiny "your own data" dataset tree: ``images/``, ``masks/`` and a YAML.

The tests import :func:`make_folder_dataset` and then break one thing at a time. Run as a
script to look at the tree: ``python tests/data/make_folder_dataset.py OUT_DIR``.

Masks hold 0 (unlabeled), a rectangle of 1 (bag) and a top row of 255 (ignore); images are
seeded noise, non-square so that a transposed (H, W) shows.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

DEFAULT_LABELS: dict[str, Any] = {
    "vocabulary": "student",
    "exhaustive": True,
    "values": {0: "unlabeled", 1: "bag", 255: "ignore"},
}


@dataclass
class FolderDatasetFiles:
    """What :func:`make_folder_dataset` wrote; ``images[i]`` is (H, W, 3), ``masks[i]`` (H, W)."""

    yaml_path: Path
    root: Path
    stems: list[str]
    images: list[np.ndarray]
    masks: list[np.ndarray]
    image_suffix: str = ".png"

    def image_path(self, stem: str) -> Path:
        return self.root / "images" / f"{stem}{self.image_suffix}"

    def mask_path(self, stem: str) -> Path:
        return self.root / "masks" / f"{stem}.png"


def make_folder_dataset(
    root: str | Path,
    *,
    name: str | None = "new_bags",
    num_images: int = 3,
    height: int = 12,
    width: int = 16,
    labels: Mapping[str, Any] | None = None,
    yaml_name: str = "dataset.yaml",
    image_format: str = "PNG",
    mask_mode: str = "L",
    seed: int = 0,
) -> FolderDatasetFiles:
    """Write ``num_images`` image/mask pairs and a YAML under ``root``.

    Args:
        name: the YAML's ``name``; None leaves it out (the YAML's stem is used).
        labels: the YAML's ``labels`` block; default :data:`DEFAULT_LABELS`.
        image_format: "PNG" or "JPEG" (JPEG images are lossy: compare them approximately).
        mask_mode: "L" (grayscale) or "P" (indexed, with a palette).
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    suffix = ".jpg" if image_format == "JPEG" else ".png"
    files = FolderDatasetFiles(root / yaml_name, root, [], [], [], suffix)
    for i in range(num_images):
        stem = f"img_{i:03d}"
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        mask = np.zeros((height, width), dtype=np.uint8)
        mask[2 + i % 3 : 8, 3 : 9 + i] = 1
        mask[0] = 255
        Image.fromarray(image).save(files.image_path(stem), format=image_format)
        save_mask(files.mask_path(stem), mask, mask_mode)
        files.stems.append(stem)
        files.images.append(image)
        files.masks.append(mask)
    config: dict[str, Any] = {} if name is None else {"name": name}
    config["labels"] = dict(DEFAULT_LABELS if labels is None else labels)
    write_yaml(files.yaml_path, config)
    return files


def save_mask(path: Path, mask: np.ndarray, mode: str = "L") -> None:
    """Save (H, W) uint8 values as a grayscale or an indexed PNG."""
    if mode == "P":
        image = Image.frombytes("P", (mask.shape[1], mask.shape[0]), mask.tobytes())
        # Colours unrelated to the indices: the value is the index, never the colour.
        image.putpalette([c for v in range(256) for c in (v, (v * 7) % 256, 255 - v)])
    else:
        image = Image.fromarray(mask)
    image.save(path, format="PNG")


def write_yaml(path: Path, config: Mapping[str, Any]) -> None:
    path.write_text(yaml.safe_dump(dict(config), sort_keys=False), encoding="utf-8")


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "folder_dataset")
    print(make_folder_dataset(out).yaml_path)
