"""Collate padding, the mixing sampler and the DataModule."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from incremental.constants import IGNORE_INDEX
from incremental.data.core import ArraySource, SampleDataset
from incremental.data.datamodule import (
    IncrementalDataModule,
    MixedDataset,
    MixedSampler,
    pad_collate,
)
from incremental.data.transforms import train_transform
from incremental.labels import LabelDeclaration


def test_pad_collate_pads_masks_with_ignore():
    a = {"image": torch.ones(3, 4, 5), "mask": torch.zeros(4, 5, dtype=torch.long), "dataset": 0}
    b = {"image": torch.ones(3, 6, 3), "mask": torch.ones(6, 3, dtype=torch.long), "dataset": 1}
    batch = pad_collate([a, b], multiple=1)
    assert batch["image"].shape == (2, 3, 6, 5)
    assert batch["mask"].shape == (2, 6, 5)
    assert (batch["mask"][0, 4:] == IGNORE_INDEX).all() and (batch["mask"][0, :4] == 0).all()
    assert (batch["mask"][1, :, 3:] == IGNORE_INDEX).all()
    assert (batch["image"][1, :, :, 3:] == 0).all()
    assert batch["dataset"].tolist() == [0, 1]
    padded = pad_collate([a, b])  # default: sides rounded up to 32 for the encoders
    assert padded["image"].shape == (2, 3, 32, 32)
    assert (padded["mask"][:, 6:] == IGNORE_INDEX).all()


def test_mixed_sampler_shares_and_determinism():
    sampler = MixedSampler([10, 100], shares=[0.5, 0.5], epoch_size=40, seed=3)
    keys = list(sampler)
    assert len(keys) == len(sampler) == 40
    counts = Counter(index < 10 for _, index in keys)
    assert counts[True] == 20 and counts[False] == 20
    # Source 0 has 10 items for 20 draws: each is drawn exactly twice.
    assert set(Counter(i for _, i in keys if i < 10).values()) == {2}
    assert keys == list(MixedSampler([10, 100], [0.5, 0.5], 40, seed=3))
    sampler.set_epoch(1)
    assert list(sampler) != keys


def test_mixed_sampler_rejects_bad_input():
    with pytest.raises(ValueError, match="every source needs samples"):
        MixedSampler([0, 5])
    with pytest.raises(ValueError, match="do not fit"):
        MixedSampler([3, 5], shares=[1.0])


def _source(n=6, name="d", value=1):
    images = np.random.default_rng(0).integers(0, 255, (n, 8, 8, 3), dtype=np.uint8)
    masks = np.full((n, 8, 8), value, dtype=np.uint8)
    return ArraySource(images, masks, LabelDeclaration(name, {0: "a", 1: "b", 2: "c"}))


def test_augmentation_depends_only_on_the_draw_seed():
    dataset = MixedDataset([SampleDataset(_source(), 0, train_transform(augment="full"))])
    first = dataset[(123, 2)]["image"]
    dataset[(7, 4)]  # another draw in between changes nothing
    np.testing.assert_array_equal(first, dataset[(123, 2)]["image"])
    assert not torch.equal(first, dataset[(124, 2)]["image"])


def test_datamodule_batches_carry_dataset_rows():
    dm = IncrementalDataModule(
        [(_source(name="a", value=0), 0), (_source(name="b", value=2), 1)],
        val=_source(name="v"),
        batch_size=4,
        epoch_size=8,
        augment="none",
    )
    batches = list(dm.train_dataloader())
    rows = torch.cat([b["dataset"] for b in batches])
    masks = torch.cat([b["mask"][:, 0, 0] for b in batches])
    assert sorted(rows.tolist()) == [0] * 4 + [1] * 4
    assert torch.equal(masks, rows * 2)  # source a holds 0s, source b holds 2s
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape == (4, 3, 32, 32)  # padded to the encoders' multiple
    with pytest.raises(ValueError, match="no test source"):
        dm.test_dataloader()


def test_paper_augmentation_and_evaluation_crop():
    """MiB's and PLOP's recipe: a random resized crop to the crop size and a flip; at
    evaluation the shorter side resized to the crop size, then the central square."""
    import numpy as np

    from incremental.data.transforms import eval_transform, train_transform

    image = np.random.default_rng(0).integers(0, 255, (24, 40, 3), dtype=np.uint8)
    mask = np.zeros((24, 40), dtype=np.uint8)
    mask[:, 20:] = 3
    out = train_transform(16, augment="paper")(image=image, mask=mask)
    assert out["image"].shape == (16, 16, 3) and out["mask"].shape == (16, 16)
    assert set(np.unique(out["mask"])) <= {0, 3}  # nearest for labels: no invented values
    evaluated = eval_transform(16)(image=image, mask=mask)
    assert evaluated["mask"].shape == (16, 16)
    # 24 x 40 -> 16 x 26 (shorter side 16), centre 16 x 16: columns 5..20 of the resized mask.
    assert (evaluated["mask"][:, :8] == 0).all() and (evaluated["mask"][:, -5:] == 3).all()
    with pytest.raises(ValueError, match="needs crop_size"):
        train_transform(None, augment="paper")
