"""The bottom of the data package: what every dataset provides, how image and mask files are
read, and how problems with data are reported.

A *source* is anything with a label declaration, a length and ``load(i) -> (image, mask)``
(uint8 arrays (H, W, 3) and (H, W)). :class:`SampleDataset` applies a transform and yields the
samples that flow through the framework: ``{"image", "mask", "dataset"}``. Every reader of
files (own folders, VOC, ADE20K) uses :func:`read_image` and :func:`read_mask`, and every
problem found in data is a :class:`Problem`, raised together as a :class:`DatasetError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from incremental.labels import LabelDeclaration

#: Modes whose pixel value is the label value: grayscale and indexed (palette index).
MASK_MODES = ("L", "P")


# ---------------------------------------------------------------------------------- problems
@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset: the file it concerns and what is wrong, with the value."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class DatasetError(ValueError):
    """A dataset that cannot be used; the message lists every problem, one per line.

    Constructible from a message alone, as torch's DataLoader re-raises worker errors that way.
    """

    def __init__(self, message: str, problems: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)

    @classmethod
    def from_problems(cls, what: str, problems: Sequence[Problem]) -> DatasetError:
        lines = "\n".join(f"  {p}" for p in problems)
        return cls(f"{what}: {len(problems)} problem(s):\n{lines}", problems)

    def __reduce__(self) -> tuple[type, tuple[str, list[Problem]]]:
        # Keep the problems when the error crosses a process boundary (DataLoader workers).
        return type(self), (str(self), self.problems)


# ---------------------------------------------------------------------------------- reading
def decode(path: str | Path, kind: str) -> Image.Image:
    """Open and fully decode an image file (``Image.open`` alone reads only the header, so a
    PNG cut in half would pass). Raises :class:`DatasetError` naming the file."""
    try:
        with Image.open(path) as img:
            img.load()  # the pixels stay in memory after the file is closed
    except Exception as error:  # PIL raises OSError, SyntaxError, zlib.error, ValueError...
        problem = Problem(str(path), f"cannot read {kind}: {one_line(error)}")
        raise DatasetError(str(problem), [problem]) from error
    return img


def mask_mode_problem(mask: Image.Image) -> str | None:
    """Why a decoded mask's mode cannot hold label values, or None."""
    if mask.mode in MASK_MODES:
        return None
    return (
        f"mask mode is {mask.mode!r}; expected 'L' (grayscale) or 'P' (indexed) with the label "
        "value as the pixel value (colour-coded masks must be converted to values first)"
    )


#: Image modes of more than 8 bits per channel, read by scaling to 8 bits.
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
#: The EXIF tag of the orientation a viewer applies.
EXIF_ORIENTATION = 0x0112


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation of a decoded image (1 = as stored)."""
    return int(image.getexif().get(EXIF_ORIENTATION, 1) or 1)


def image_mode_problem(image: Image.Image) -> str | None:
    """Why an image cannot be read as 8-bit RGB, or None."""
    if image.mode == "F" or image.mode.startswith("I;32"):
        return f"image mode is {image.mode!r} (floating point or 32-bit): convert it to 8 bits"
    if image.mode == "I":
        high = int(np.asarray(image).max(initial=0))
        if high > 65535:
            return f"image mode 'I' with values up to {high}: convert it to 8 or 16 bits"
    return None


def read_image(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB, as a viewer shows the file: grayscale and palette images are
    converted, 16-bit images scaled to 8 bits (not clipped to white), and the EXIF orientation
    applied (a mask must match the image as displayed; ``check`` reports such images).

    Raises:
        DatasetError: unreadable, or a mode with no 8-bit reading (naming the file).
    """
    image = decode(path, "image")
    problem = image_mode_problem(image)
    if problem is not None:
        raise DatasetError(f"{path}: {problem}", [Problem(str(path), problem)])
    if exif_orientation(image) != 1:
        image = ImageOps.exif_transpose(image)
    if image.mode in WIDE_MODES:
        wide = np.asarray(image, dtype=np.uint32)
        gray = (wide // 257).clip(0, 255).astype(np.uint8)  # 65535 -> 255
        return np.repeat(gray[..., None], 3, axis=2)
    return np.array(image.convert("RGB"), dtype=np.uint8)


def read_mask(path: str | Path) -> np.ndarray:
    """(H, W) uint8 label values: grayscale values or palette indices."""
    mask = decode(path, "mask")
    problem = mask_mode_problem(mask)
    if problem is not None:
        raise DatasetError(f"{path}: {problem}", [Problem(str(path), problem)])
    # np.array, not asarray: a writable copy that augmentations may modify in place.
    return np.array(mask, dtype=np.uint8)


def size_mismatch(image_size: tuple[int, int], mask_size: tuple[int, int], image: Path) -> str:
    """Message for a mask whose (W, H) differs from its image's."""
    message = (
        f"mask size {mask_size[0]}x{mask_size[1]} does not match image size "
        f"{image_size[0]}x{image_size[1]} ({image})"
    )
    if mask_size == image_size[::-1]:
        message += "; the sizes are transposed: check the image's EXIF orientation"
    return message


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


# ---------------------------------------------------------------------------------- sources
@runtime_checkable
class SegmentationSource(Protocol):
    """Images with masks whose values ``declaration`` explains."""

    declaration: LabelDeclaration

    def __len__(self) -> int: ...

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image (H, W, 3) uint8 and mask (H, W) uint8."""
        ...


class ArraySource:
    """A source over in-memory arrays (generated scenes, tests).

    Args:
        images: (N, H, W, 3) uint8.
        masks: (N, H, W) uint8.
        declaration: what the mask values mean.
    """

    def __init__(self, images: np.ndarray, masks: np.ndarray, declaration: LabelDeclaration):
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(
                f"{declaration.name}: images must be (N, H, W, 3) uint8, got "
                f"{images.shape} {images.dtype}"
            )
        if masks.shape != images.shape[:3] or masks.dtype != np.uint8:
            raise ValueError(
                f"{declaration.name}: masks must be (N, H, W) uint8 matching images "
                f"{images.shape[:3]}, got {masks.shape} {masks.dtype}"
            )
        self.images, self.masks, self.declaration = images, masks, declaration

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.images[index], self.masks[index]


Transform = Callable[..., dict]


def shrink(image: np.ndarray, mask: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    """Image (H, W, 3) and mask (H, W) with the longer side ``max_side`` (aspect kept): the
    image by area averaging, the mask by nearest neighbour (no invented label values)."""
    import cv2

    h, w = mask.shape
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return (
        cv2.resize(image, size, interpolation=cv2.INTER_AREA),
        cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST),
    )


def largest_image(source: SegmentationSource) -> tuple[int, int] | None:
    """(height, width) covering every image of ``source`` where it is known without reading
    the files (in-memory arrays, checked folders), else None."""
    sizes = getattr(source, "image_sizes", None)
    if sizes:
        return max(h for _, h in sizes), max(w for w, _ in sizes)
    images = getattr(source, "images", None)
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return images.shape[1], images.shape[2]
    return None


class SampleDataset(Dataset):
    """Samples ``{"image": (3, H, W) float, "mask": (H, W) long, "dataset": int}``.

    Args:
        source: the images and masks.
        dataset_index: the source's row in the experiment's membership table.
        transform: an albumentations pipeline (called as ``transform(image=, mask=)``) that
            ends with normalisation; None converts to float in [0, 1].
        max_side: images whose longer side exceeds it are shrunk to it first (aspect kept;
            masks by nearest neighbour), so that one huge image cannot blow up a batch.
    """

    def __init__(
        self,
        source: SegmentationSource,
        dataset_index: int,
        transform: Transform | None = None,
        max_side: int | None = None,
    ) -> None:
        self.source = source
        self.dataset_index = dataset_index
        self.transform = transform
        self.max_side = max_side

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        image, mask = self.source.load(index)
        if self.max_side is not None and max(image.shape[:2]) > self.max_side:
            image, mask = shrink(image, mask, self.max_side)
        if self.transform is not None:
            out = self.transform(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        else:
            image = image.astype(np.float32) / 255.0
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float(),
            "mask": torch.from_numpy(np.ascontiguousarray(mask)).long(),
            "dataset": self.dataset_index,
        }
