"""Fashion-MNIST loading and the deterministic Fashion-scenes generator."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from incremental.data.fashion import mnist as fashion_mnist
from incremental.data.fashion.mnist import FASHION_MNIST_CLASSES, load_fashion_mnist, read_idx
from incremental.data.fashion.scenes import (
    SceneStyle,
    compose_scene,
    compose_scenes,
    split_item_pools,
)

OPTIONAL = [0, 1, 2, 3, 4, 5, 6, 7, 9]  # every class but the bag
BAG = 8
DEFAULT_STYLE = SceneStyle()


@pytest.fixture(scope="module")
def data() -> fashion_mnist.FashionMNIST:
    return load_fashion_mnist("test")


@pytest.fixture(scope="module")
def pools(data) -> dict[str, np.ndarray]:
    return split_item_pools(data.labels)


def _idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of a uint8 array."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


# ------------------------------------------------------------------------------------ read_idx


def test_read_idx_round_trips_gzip_and_plain(tmp_path: Path) -> None:
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a.idx").write_bytes(_idx_bytes(array))
    (tmp_path / "a.idx.gz").write_bytes(gzip.compress(_idx_bytes(array)))
    for name in ("a.idx", "a.idx.gz"):
        loaded = read_idx(tmp_path / name)
        assert loaded.dtype == np.uint8 and loaded.shape == (2, 3, 4)
        np.testing.assert_array_equal(loaded, array)


def test_read_idx_rejects_wrong_magic(tmp_path: Path) -> None:
    path = tmp_path / "bad-magic.gz"
    data = bytearray(_idx_bytes(np.zeros(10, np.uint8)))
    data[:2] = b"\x12\x34"
    path.write_bytes(gzip.compress(bytes(data)))
    with pytest.raises(ValueError, match="bad-magic.gz.*magic"):
        read_idx(path)


def test_read_idx_rejects_truncated_data(tmp_path: Path) -> None:
    path = tmp_path / "truncated.gz"
    path.write_bytes(gzip.compress(_idx_bytes(np.zeros((4, 5), np.uint8))[:-3]))
    with pytest.raises(ValueError, match=r"truncated.gz.*17 bytes.*need 20"):
        read_idx(path)


def test_read_idx_rejects_cut_gzip_stream(tmp_path: Path) -> None:
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(_idx_bytes(np.arange(100, dtype=np.uint8)))[:-12])
    with pytest.raises(ValueError, match="cut.gz"):
        read_idx(path)


# --------------------------------------------------------------------------- load_fashion_mnist


def test_load_test_split(data) -> None:
    assert data.source == "test"
    assert data.images.shape == (10_000, 28, 28) and data.images.dtype == np.uint8
    assert data.labels.shape == (10_000,) and data.labels.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(data.labels), np.full(10, 1000))
    assert len(FASHION_MNIST_CLASSES) == 10 and FASHION_MNIST_CLASSES[BAG] == "bag"
    assert load_fashion_mnist("test") is data  # cached


def test_load_auto_resolves_to_available_split() -> None:
    train_present = all(
        (fashion_mnist.SYSTEM_DIR / name).is_file()
        for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
    )
    loaded = load_fashion_mnist("auto")
    assert loaded.source == ("all" if train_present else "test")
    assert len(loaded) == (70_000 if train_present else 10_000)


def test_load_all_without_train_split_hints_at_package(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", tmp_path)
    fashion_mnist._load.cache_clear()  # a cached real "all" would hide the missing files
    try:
        with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
            load_fashion_mnist("all")
        assert load_fashion_mnist("auto").source == "test"
    finally:
        fashion_mnist._load.cache_clear()
    with pytest.raises(ValueError, match="source"):
        load_fashion_mnist("train")


# --------------------------------------------------------------------------- split_item_pools


def test_split_item_pools_disjoint_stratified_deterministic(data, pools) -> None:
    assert set(pools) == {"train", "val", "test"}
    joined = np.concatenate(list(pools.values()))
    np.testing.assert_array_equal(np.sort(joined), np.arange(len(data.labels)))  # disjoint+cover
    for name, share in (("train", 0.7), ("val", 0.1), ("test", 0.2)):
        counts = np.bincount(data.labels[pools[name]], minlength=10)
        np.testing.assert_array_equal(counts, np.full(10, round(share * 1000)))
    again = split_item_pools(data.labels)
    other = split_item_pools(data.labels, seed=1)
    for name in pools:
        np.testing.assert_array_equal(again[name], pools[name])
    assert not np.array_equal(other["train"], pools["train"])


def test_split_item_pools_rejects_bad_fractions(data) -> None:
    with pytest.raises(ValueError, match="fractions"):
        split_item_pools(data.labels, fractions=(0.5, 0.1, 0.1))


# ------------------------------------------------------------------------------ compose_scenes


def _scenes(data, pool, num_scenes=12, seed=3, style=DEFAULT_STYLE, **kwargs):
    kwargs.setdefault("required", [BAG])
    kwargs.setdefault("optional", OPTIONAL)
    kwargs.setdefault("optional_weights", None)
    return compose_scenes(num_scenes, seed, data.images, data.labels, pool, style=style, **kwargs)


def test_compose_scenes_shapes_and_dtypes(data, pools) -> None:
    images, maps = _scenes(data, pools["train"], num_scenes=5)
    assert images.shape == (5, 64, 64, 3) and images.dtype == np.uint8
    assert maps.shape == (5, 64, 64) and maps.dtype == np.int16
    images, maps = _scenes(data, pools["train"], num_scenes=2, style=SceneStyle(image_size=48))
    assert images.shape == (2, 48, 48, 3) and maps.shape == (2, 48, 48)
    images, maps = _scenes(data, pools["train"], num_scenes=0)
    assert images.shape == (0, 64, 64, 3) and maps.shape == (0, 64, 64)


def test_compose_scenes_is_deterministic_and_per_scene(data, pools) -> None:
    images, maps = _scenes(data, pools["train"], num_scenes=8)
    images2, maps2 = _scenes(data, pools["train"], num_scenes=8)
    assert images.tobytes() == images2.tobytes() and maps.tobytes() == maps2.tobytes()
    # Scene i depends only on (seed, i), not on how many scenes are made.
    few_images, few_maps = _scenes(data, pools["train"], num_scenes=3)
    np.testing.assert_array_equal(few_images, images[:3])
    np.testing.assert_array_equal(few_maps, maps[:3])
    # compose_scene with the same rng stream regenerates one scene alone (k=1 draw, then pick).
    rng = np.random.default_rng([3, 5])
    rng.integers(1, 2), rng.integers(0, 1, 1)
    image, item_map = compose_scene(
        rng, data.images, data.labels, pools["train"], [BAG], OPTIONAL, None, SceneStyle()
    )
    np.testing.assert_array_equal(image, images[5])
    np.testing.assert_array_equal(item_map, maps[5])
    other_images, _ = _scenes(data, pools["train"], num_scenes=3, seed=4)
    assert not np.array_equal(other_images, images[:3])


def test_required_class_visible_and_map_values_allowed(data, pools) -> None:
    optional = [0, 1, 7]
    _, maps = _scenes(data, pools["val"], num_scenes=20, optional=optional)
    for item_map in maps:
        assert (item_map == BAG).sum() > 0
        assert set(np.unique(item_map).tolist()) <= {-1, BAG, *optional}
        assert (item_map == -1).any()  # background stays visible around the items


def test_required_count_and_weights(data, pools) -> None:
    _, maps = _scenes(
        data,
        pools["train"],
        num_scenes=20,
        required=[5, BAG],
        optional=[0, 1],
        optional_weights=[0.0, 3.0],
        required_count=(2, 3),
    )
    for item_map in maps:
        present = set(np.unique(item_map).tolist())
        assert present <= {-1, 1, 5, BAG} and present & {5, BAG}
    _, maps = _scenes(data, pools["train"], num_scenes=5, required=[], required_count=(1, 1))
    assert all(set(np.unique(m).tolist()) <= {-1, *OPTIONAL} for m in maps)


def test_items_come_only_from_the_pool(data, pools) -> None:
    pool = pools["train"]
    images, maps = _scenes(data, pool, num_scenes=10)
    outside_blank = data.images.copy()
    outside_blank[np.setdiff1d(np.arange(len(outside_blank)), pool)] = 0
    blank_images, blank_maps = compose_scenes(
        10, 3, outside_blank, data.labels, pool, [BAG], OPTIONAL, None, SceneStyle()
    )
    # Photos outside the pool are never read: blanking them changes nothing at all.
    np.testing.assert_array_equal(blank_images, images)
    np.testing.assert_array_equal(blank_maps, maps)
    assert all((m == BAG).sum() > 0 for m in blank_maps)


def _constant_photos(value: int, count: int = 20) -> tuple[np.ndarray, np.ndarray]:
    images = np.full((count, 28, 28), value, dtype=np.uint8)
    return images, np.arange(count, dtype=np.uint8) % 10


def test_item_map_is_the_thresholded_footprint() -> None:
    style = SceneStyle(items_per_scene=(0, 0), clutter=0, mask_threshold=40)
    for value, expect_item in ((40, False), (41, True), (255, True)):
        images, labels = _constant_photos(value)
        _, maps = compose_scenes(6, 0, images, labels, np.arange(20), [3], [], None, style)
        for item_map in maps:
            rows, cols = np.nonzero(item_map == 3)
            assert set(np.unique(item_map).tolist()) == ({-1, 3} if expect_item else {-1})
            if expect_item:  # a whole square of side 28 * scale, fully inside the image
                side = rows.max() - rows.min() + 1
                assert side == cols.max() - cols.min() + 1 and len(rows) == side * side
                assert round(28 * 0.8) <= side <= round(28 * 1.5)


def test_later_items_occlude_and_required_on_top() -> None:
    images, labels = _constant_photos(255)
    style = SceneStyle(items_per_scene=(3, 3), item_scale=(1.5, 1.5), clutter=0, image_size=48)
    rendered, maps = compose_scenes(10, 1, images, labels, np.arange(20), [9], [0], None, style)
    for image, item_map in zip(rendered, maps, strict=True):
        rows, cols = np.nonzero(item_map == 9)
        assert len(rows) == 42 * 42  # the required square is on top, never covered
        # The opaque required square is one flat colour (up to sensor noise) across its area.
        inside = image[item_map == 9].astype(np.float64)
        assert inside.std(axis=0).max() < 8


def test_missing_class_in_pool_is_an_error(data, pools) -> None:
    pool = pools["train"][data.labels[pools["train"]] != BAG]
    with pytest.raises(ValueError, match=r"required classes \[8\]"):
        _scenes(data, pool, num_scenes=1)
    with pytest.raises(ValueError, match="optional_weights"):
        _scenes(data, pools["train"], num_scenes=1, optional_weights=[1.0])
