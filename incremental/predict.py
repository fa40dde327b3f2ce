"""Predict masks for a folder of images with a model file.

Writes one indexed PNG per image (palette, pixel value = class index), ``classes.json`` with the
class names beside them, and optional colour overlays. ``level="parent"`` merges split children
into their parent class. Refuses to overwrite existing outputs unless asked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from incremental.data.core import read_image
from incremental.data.datamodule import pad_collate
from incremental.data.transforms import eval_transform
from incremental.devices import resolve_device
from incremental.models import load_model_file
from incremental.palette import class_palette

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"images folder not found: {folder}")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ValueError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return images


def output_classes(
    classes: list[str], parents: dict[str, str], level: str
) -> tuple[list[str], np.ndarray]:
    """Output class names and the (C,) lookup from model class index to output index."""
    if level == "class":
        return list(classes), np.arange(len(classes))
    if level != "parent":
        raise ValueError(f"level must be 'class' or 'parent', got {level!r}")
    names = list(dict.fromkeys(parents.get(c, c) for c in classes))
    return names, np.array([names.index(parents.get(c, c)) for c in classes])


def _batches(paths: list[Path], batch_size: int) -> Iterator[list[tuple[Path, np.ndarray]]]:
    """Consecutive images of the same size, at most ``batch_size`` at a time."""
    batch: list[tuple[Path, np.ndarray]] = []
    for path in paths:
        # As training reads images: 16-bit scaled to 8, the EXIF orientation applied (the
        # masks come out in the orientation a viewer shows the image in).
        image = read_image(path)
        if batch and (len(batch) == batch_size or batch[0][1].shape != image.shape):
            yield batch
            batch = []
        batch.append((path, image))
    if batch:
        yield batch


@torch.no_grad()
def segment_images(
    model: torch.nn.Module, images: list[np.ndarray], transform, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Logits (B, C, H, W) of same-size images (H, W, 3) uint8, normalised like training by
    ``transform`` and padded to the network's size multiple, the padding cropped off."""
    samples = [
        {
            "image": torch.from_numpy(transform(image=image)["image"].transpose(2, 0, 1)),
            "mask": torch.zeros(image.shape[:2], dtype=torch.long),
            "dataset": 0,
        }
        for image in images
    ]
    logits = model(pad_collate(samples)["image"].to(device))
    h, w = images[0].shape[:2]
    return logits[:, :, :h, :w]


@torch.no_grad()
def predict_folder(
    model_path: str | Path,
    images: str | Path,
    out: str | Path,
    *,
    level: str = "class",
    overlay: bool = False,
    batch_size: int = 8,
    overwrite: bool = False,
    device: str = "auto",
    progress: bool = True,
    allow_factory: bool = False,
) -> list[Path]:
    """Predict every image of ``images``; returns the written mask paths.

    ``device``: ``"auto"`` (the GPU when there is one), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    ``allow_factory``: the model file's network is built by user code (see
    :func:`~incremental.models.build_model`); importing it runs that code.
    """
    device = resolve_device(device)
    model_file = load_model_file(model_path)
    names, lut = output_classes(model_file.classes, model_file.parents, level)
    paths = list_images(Path(images))
    out = Path(out)
    targets = [out / f"{p.stem}.png" for p in paths]
    existing = [t for t in targets + [out / "classes.json"] if t.exists()]
    if existing and not overwrite:
        shown = ", ".join(str(p) for p in existing[:3])
        raise FileExistsError(
            f"{len(existing)} output file(s) exist ({shown}...); pass --overwrite to replace them"
        )
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        raise ValueError(f"{images}: several images share a file stem; outputs would collide")
    out.mkdir(parents=True, exist_ok=True)
    if overlay:
        (out / "overlays").mkdir(exist_ok=True)
    model = model_file.build(allow_factory=allow_factory).to(device)
    transform, palette = eval_transform(), class_palette()
    flat_palette = palette.flatten().tolist()
    written = []
    with tqdm(total=len(paths), desc="predict", disable=not progress, unit="img") as bar:
        for batch in _batches(paths, batch_size):
            logits = segment_images(model, [image for _, image in batch], transform, device)
            predicted = lut[logits.argmax(dim=1).cpu().numpy()].astype(np.uint8)
            for (path, image), mask in zip(batch, predicted, strict=True):
                target = out / f"{path.stem}.png"
                indexed = Image.fromarray(mask, mode="P")
                indexed.putpalette(flat_palette)
                indexed.save(target)
                if overlay:
                    blend = (0.5 * image + 0.5 * palette[mask]).astype(np.uint8)
                    Image.fromarray(blend).save(out / "overlays" / f"{path.stem}.png")
                written.append(target)
            bar.update(len(batch))
    info = {
        "classes": names,
        "level": level,
        "model": str(model_path),
        "orientation": "as displayed: images with an EXIF orientation were rotated first",
    }
    (out / "classes.json").write_text(json.dumps(info, indent=2))
    return written
