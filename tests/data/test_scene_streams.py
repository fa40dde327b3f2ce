"""Fashion scenes drawn on first read, and kept in the scene cache when one is set."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from incremental.data import build_scenario
from incremental.data.fashion import streams
from incremental.data.fashion.streams import scene_cache, using_scene_cache
from tests.conftest import tiny_scenario_config


def _no_drawing(*args, **kwargs):
    pytest.fail("scenes were drawn")


def _drawn(scenario) -> dict[str, bool]:
    return {
        name: getattr(scenario, name).stream._arrays is not None
        for name in ("old_train", "new_train", "val", "test", "old_val")
    }


def test_building_draws_nothing_until_a_source_is_read(monkeypatch):
    scenario = build_scenario(tiny_scenario_config("fashion-split"))
    assert not any(_drawn(scenario).values())
    assert len(scenario.old_train) == 24 and len(scenario.new_train) == 16  # sizes: no drawing
    image, mask = scenario.new_train.load(3)
    assert image.shape == (32, 32, 3) and mask.shape == (32, 32)
    assert _drawn(scenario) == {
        "old_train": False, "new_train": True, "val": False, "test": False, "old_val": False
    }  # fmt: skip
    # Sources over one stream share its scenes: old_train_full reads old_train's images.
    scenario.old_train.load(0)
    monkeypatch.setattr(streams.SceneStream, "_draw", _no_drawing)
    np.testing.assert_array_equal(scenario.old_train_full.images, scenario.old_train.images)


def test_the_cache_is_written_once_and_read_back_identical(tmp_path, monkeypatch):
    config = tiny_scenario_config("fashion-new-class")
    with using_scene_cache(tmp_path):
        first = build_scenario(config)
        drawn = first.old_train.images, first.old_train.masks
        (path,) = tmp_path.glob("old_train-*.npz")
        monkeypatch.setattr(streams.SceneStream, "_draw", _no_drawing)
        again = build_scenario(config)
        np.testing.assert_array_equal(again.old_train.images, drawn[0])
        np.testing.assert_array_equal(again.old_train.masks, drawn[1])
        assert list(tmp_path.glob("old_train-*.npz")) == [path]
    assert scene_cache() is None  # the folder is set for the block only


def test_another_config_or_generator_draws_again(tmp_path, monkeypatch):
    with using_scene_cache(tmp_path):
        build_scenario(tiny_scenario_config("fashion-new-class")).old_train.load(0)
        build_scenario(tiny_scenario_config("fashion-new-class", image_size=64)).old_train.load(0)
        assert len(list(tmp_path.glob("old_train-*.npz"))) == 2
        monkeypatch.setattr(streams, "_generator_digest", lambda: "changed code")
        build_scenario(tiny_scenario_config("fashion-new-class")).old_train.load(0)
        assert len(list(tmp_path.glob("old_train-*.npz"))) == 3


def test_a_damaged_cache_file_is_drawn_again(tmp_path, caplog):
    config = tiny_scenario_config("fashion-new-class")
    with using_scene_cache(tmp_path):
        expected = build_scenario(config).val.images
        (path,) = tmp_path.glob("val-*.npz")
        path.write_bytes(b"not a numpy file")
        np.testing.assert_array_equal(build_scenario(config).val.images, expected)
    assert "unreadable" in caplog.text
    assert np.load(path)["images"].shape == expected.shape  # rewritten whole


def test_pickled_streams_carry_their_scenes_only_without_a_cache(tmp_path):
    scenario = build_scenario(tiny_scenario_config("fashion-new-class"))
    scenario.val.load(0)
    assert pickle.loads(pickle.dumps(scenario.val)).stream._arrays is not None
    with using_scene_cache(tmp_path):
        copy = pickle.loads(pickle.dumps(scenario.val))
        assert copy.stream._arrays is None  # a worker reads the cache instead
        np.testing.assert_array_equal(copy.masks, scenario.val.masks)
