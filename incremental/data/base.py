"""What every dataset provides, and the torch Dataset that turns it into samples.

A *source* is anything with a label declaration, a length and ``load(i) -> (image, mask)``
(uint8 arrays (H, W, 3) and (H, W)). :class:`SampleDataset` applies a transform and yields the
samples that flow through the framework: ``{"image", "mask", "dataset"}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch.utils.data import Dataset

from incremental.labels import LabelDeclaration


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


class SampleDataset(Dataset):
    """Samples ``{"image": (3, H, W) float, "mask": (H, W) long, "dataset": int}``.

    Args:
        source: the images and masks.
        dataset_index: the source's row in the experiment's membership table.
        transform: an albumentations pipeline (called as ``transform(image=, mask=)``) that
            ends with normalisation; None converts to float in [0, 1].
    """

    def __init__(
        self, source: SegmentationSource, dataset_index: int, transform: Transform | None = None
    ) -> None:
        self.source = source
        self.dataset_index = dataset_index
        self.transform = transform

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        image, mask = self.source.load(index)
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
