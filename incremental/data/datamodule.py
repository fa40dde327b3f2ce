"""The DataModule: old and new training data mixed at a set ratio, deterministic under a seed.

Each training source keeps its row in the membership table (``sample["dataset"]``), so the
module looks candidate sets up per sample. Old data may be absent (no replay).
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterator, Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from incremental.constants import IGNORE_INDEX
from incremental.data.core import SampleDataset, SegmentationSource
from incremental.data.transforms import eval_transform, train_transform

log = logging.getLogger(__name__)

#: Encoders downsample by up to 32: padded batch sides are multiples of it.
SIZE_MULTIPLE = 32


def pad_collate(samples: Sequence[dict], multiple: int = SIZE_MULTIPLE) -> dict[str, torch.Tensor]:
    """Stack samples of different sizes: images padded with 0, masks with the ignore value, to
    the largest height and width rounded up to ``multiple`` (what the networks accept).

    Returns:
        ``image`` (B, 3, H, W) float, ``mask`` (B, H, W) long, ``dataset`` (B,) long.
    """
    h = -(-max(s["image"].shape[1] for s in samples) // multiple) * multiple
    w = -(-max(s["image"].shape[2] for s in samples) // multiple) * multiple
    images = torch.zeros(len(samples), 3, h, w)
    masks = torch.full((len(samples), h, w), IGNORE_INDEX, dtype=torch.long)
    for i, s in enumerate(samples):
        _, sh, sw = s["image"].shape
        images[i, :, :sh, :sw] = s["image"]
        masks[i, :sh, :sw] = s["mask"]
    dataset = torch.tensor([int(s["dataset"]) for s in samples], dtype=torch.long)
    return {"image": images, "mask": masks, "dataset": dataset}


class MixedDataset(Dataset):
    """Several sample datasets behind one index, with per-draw augmentation seeds.

    Keys are ``(draw_seed, flat_index)``: the augmentation of a draw depends on its seed
    alone, not on which worker or in which order it is loaded, so runs (and resumed runs)
    are reproducible with any number of workers.
    """

    def __init__(self, datasets: Sequence[SampleDataset]) -> None:
        self.datasets = list(datasets)
        self.offsets = [0]
        for d in self.datasets:
            self.offsets.append(self.offsets[-1] + len(d))

    def __len__(self) -> int:
        return self.offsets[-1]

    def __getitem__(self, key: tuple[int, int]) -> dict:
        draw_seed, index = key
        which = bisect.bisect_right(self.offsets, index) - 1
        dataset = self.datasets[which]
        if dataset.transform is not None:
            dataset.transform.set_random_seed(draw_seed)
        return dataset[index - self.offsets[which]]


class MixedSampler(Sampler[tuple[int, int]]):
    """Draws from a concatenation of sources, each source taking a set share of an epoch.

    Each epoch draws ``round(share_s * epoch_size)`` samples from source s, walking a fresh
    permutation of it (repeating it when more are needed), then shuffles the epoch. Yields
    ``(draw_seed, flat_index)`` keys for :class:`MixedDataset`. Seeded by ``(seed, epoch)``,
    so every epoch, and a resumed run, sees the same samples and augmentations.

    Args:
        lengths: the sources' lengths, in concatenation order.
        shares: each source's share of an epoch (normalised); None: proportional to length.
        epoch_size: samples per epoch; default the total length.
        seed: base seed.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        shares: Sequence[float] | None = None,
        epoch_size: int | None = None,
        seed: int = 0,
    ) -> None:
        if any(n <= 0 for n in lengths):
            raise ValueError(f"every source needs samples, got lengths {list(lengths)}")
        if shares is None:
            shares = [float(n) for n in lengths]
        if len(shares) != len(lengths) or any(s < 0 for s in shares) or sum(shares) <= 0:
            raise ValueError(f"shares {list(shares)} do not fit lengths {list(lengths)}")
        total = float(sum(shares))
        self.lengths = list(lengths)
        self.shares = [s / total for s in shares]
        self.epoch_size = epoch_size or sum(lengths)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(round(s * self.epoch_size) for s in self.shares)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        indices = []
        offset = 0
        for n, share in zip(self.lengths, self.shares, strict=True):
            count = round(share * self.epoch_size)
            repeats = -(-count // n)
            perm = torch.cat([torch.randperm(n, generator=g) for _ in range(repeats)])[:count]
            indices.append(perm + offset)
            offset += n
        epoch = torch.cat(indices)[torch.randperm(sum(map(len, indices)), generator=g)]
        draw_seeds = torch.randint(0, 2**31 - 1, (len(epoch),), generator=g)
        return iter(zip(draw_seeds.tolist(), epoch.tolist(), strict=True))


class IncrementalDataModule(L.LightningDataModule):
    """Train on a mix of sources, validate and test on full-label data.

    Args:
        train: training sources with their membership-table row, ``[(source, row), ...]``.
        val, test: evaluation sources (mask value = student class index).
        shares: each training source's share of an epoch; None: proportional to size.
        epoch_size: training samples per epoch; default the sum of the sources' lengths.
        batch_size, num_workers: loader settings.
        seed: sampling seed.
        crop_size: random crop for training (None: whole images).
        augment: ``"none"``, ``"flip"``, ``"full"`` or ``"paper"`` (see
            :func:`train_transform`).
        eval_crop: evaluate on the central crop after resizing the shorter side (the papers'
            512); None: whole images.
        max_image_side: training images with a longer side are shrunk to it first.
    """

    def __init__(
        self,
        train: Sequence[tuple[SegmentationSource, int]],
        val: SegmentationSource,
        test: SegmentationSource | None = None,
        shares: Sequence[float] | None = None,
        epoch_size: int | None = None,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        crop_size: int | None = None,
        augment: str = "full",
        eval_crop: int | None = None,
        max_image_side: int | None = None,
    ) -> None:
        super().__init__()
        if not train:
            raise ValueError("no training sources given")
        self.train_sources = list(train)
        self.val_source, self.test_source = val, test
        self.shares, self.epoch_size = shares, epoch_size
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.crop_size = crop_size
        self.augment = augment
        self.eval_crop = eval_crop
        self.max_image_side = max_image_side

    def train_dataloader(self) -> DataLoader:
        transform = train_transform(self.crop_size, augment=self.augment)
        datasets = [
            SampleDataset(s, row, transform, self.max_image_side) for s, row in self.train_sources
        ]
        lengths = [len(d) for d in datasets]
        # Full batches only: a last batch of one sample breaks BatchNorm at the deepest (1 x 1)
        # features; an epoch is at least one batch, repeating samples of a tiny dataset.
        epoch_size = max(self.epoch_size or sum(lengths), self.batch_size)
        if (self.epoch_size or sum(lengths)) < self.batch_size:
            log.warning(
                "batch_size %d is larger than the %d training samples of an epoch: each epoch "
                "repeats samples to fill one batch",
                self.batch_size,
                self.epoch_size or sum(lengths),
            )
        sampler = MixedSampler(lengths, self.shares, epoch_size, self.seed)
        return self._loader(
            MixedDataset(datasets), self.batch_size, sampler=sampler, drop_last=True
        )

    def val_dataloader(self) -> DataLoader:
        return self._loader(
            SampleDataset(self.val_source, -1, eval_transform(self.eval_crop)),
            self.eval_batch_size,
        )

    def test_dataloader(self) -> DataLoader:
        if self.test_source is None:
            raise ValueError("no test source given")
        return self._loader(
            SampleDataset(self.test_source, -1, eval_transform(self.eval_crop)),
            self.eval_batch_size,
        )

    def _loader(
        self, dataset, batch_size: int, sampler: Sampler | None = None, drop_last: bool = False
    ) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=drop_last,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=pad_collate,
            persistent_workers=self.num_workers > 0,
        )
