"""Train and eval augmentation pipelines (albumentations).

Geometric transforms fill masks with the one ignore value, so padded or rotated-in pixels
count nowhere.
"""

from __future__ import annotations

import albumentations as A

from incremental.constants import IGNORE_INDEX

#: ImageNet statistics: smp encoders expect them.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


AUGMENTATIONS = ("none", "flip", "full")


def train_transform(
    crop_size: int | None = None,
    scale: tuple[float, float] = (0.75, 1.25),
    augment: str = "full",
) -> A.Compose:
    """Training pipeline, ending with normalisation.

    ``augment``: ``"none"``; ``"flip"`` (horizontal flips only: short CPU schedules learn
    fastest with little augmentation); ``"full"``: flip, random ``scale``, colour jitter.
    With ``crop_size``, images are padded (masks with the ignore value) and randomly cropped
    to it; without, ``"full"`` uses a mild affine jitter instead of rescaling.
    """
    if augment not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {augment!r}")
    steps: list[A.BasicTransform] = [] if augment == "none" else [A.HorizontalFlip(p=0.5)]
    if augment == "full" and crop_size is not None:
        steps.append(A.RandomScale(scale_limit=(scale[0] - 1.0, scale[1] - 1.0), p=1.0))
    elif augment == "full":
        steps.append(
            A.Affine(
                scale=scale, translate_percent=(-0.1, 0.1), fill=0, fill_mask=IGNORE_INDEX, p=0.5
            )
        )
    if crop_size is not None:
        steps += [
            A.PadIfNeeded(crop_size, crop_size, fill=0, fill_mask=IGNORE_INDEX),
            A.RandomCrop(crop_size, crop_size),
        ]
    if augment == "full":
        steps.append(A.ColorJitter(0.2, 0.2, 0.2, 0.02, p=0.5))
    return A.Compose([*steps, A.Normalize(MEAN, STD)])


def eval_transform() -> A.Compose:
    """Normalise only: evaluation sees whole images at their size."""
    return A.Compose([A.Normalize(MEAN, STD)])
