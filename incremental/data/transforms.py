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


AUGMENTATIONS = ("none", "flip", "full", "paper")
#: MiB's and PLOP's training crop: torchvision's RandomResizedCrop(512, scale=(0.5, 2.0)) and a
#: horizontal flip (MiB ``run.py`` lines 43-49, PLOP ``run.py`` lines 42-67). Areas above the
#: image's cannot be cropped: torchvision redraws them (10 draws, then a central crop), so the
#: crops it makes have areas in (0.5, 1.0) of the image; albumentations refuses scales above 1.
PAPER_SCALE = (0.5, 1.0)
PAPER_RATIO = (3 / 4, 4 / 3)


def train_transform(
    crop_size: int | None = None,
    scale: tuple[float, float] = (0.75, 1.25),
    augment: str = "full",
) -> A.Compose:
    """Training pipeline, ending with normalisation.

    ``augment``: ``"none"``; ``"flip"`` (horizontal flips only: short CPU schedules learn
    fastest with little augmentation); ``"full"``: flip, random ``scale``, colour jitter;
    ``"paper"``: MiB's and PLOP's random resized crop to ``crop_size`` and flip.
    With ``crop_size``, images are padded (masks with the ignore value) and randomly cropped
    to it; without, ``"full"`` uses a mild affine jitter instead of rescaling.
    """
    if augment not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {augment!r}")
    if augment == "paper":
        if crop_size is None:
            raise ValueError("augment 'paper' needs crop_size (the papers' is 512)")
        crop = A.RandomResizedCrop((crop_size, crop_size), scale=PAPER_SCALE, ratio=PAPER_RATIO)
        return A.Compose([crop, A.HorizontalFlip(p=0.5), A.Normalize(MEAN, STD)])
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


def eval_transform(crop: int | None = None) -> A.Compose:
    """Normalise only: evaluation sees whole images at their size. With ``crop``, MiB's and
    PLOP's evaluation instead: the shorter side resized to ``crop``, then the central ``crop``
    x ``crop`` (MiB ``run.py`` lines 51-58)."""
    if crop is None:
        return A.Compose([A.Normalize(MEAN, STD)])
    steps = [A.SmallestMaxSize(max_size=crop), A.CenterCrop(crop, crop)]
    return A.Compose([*steps, A.Normalize(MEAN, STD)])
