"""The shipped old models are the ones the default main job would train: same hash, and each
file records exactly the config that ``python -m experiments.ship_old_models`` trained it with."""

from __future__ import annotations

import json

import pytest

from experiments.cache import SHIPPED_DIR, cache_key, find_old_model
from experiments.config import load_config, scenario_configs
from experiments.steps import old_model_payload
from incremental.data.fashion.mnist import load_fashion_mnist
from incremental.models import load_model_file

QUICK = load_config()  # the embedded default: the quick profile
SCENARIOS = scenario_configs(QUICK)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_default_job_finds_a_shipped_old_model_that_records_its_config(name, tmp_path):
    scenario_cfg = SCENARIOS[name]
    source = load_fashion_mnist(scenario_cfg.get("fashion_mnist", "auto")).source
    for seed in QUICK.seeds:
        payload = old_model_payload(QUICK, scenario_cfg, source, seed)
        found = find_old_model(tmp_path / "empty-cache", seed, cache_key(payload))
        assert found is not None and found.parent == SHIPPED_DIR, (
            f"{name} seed {seed}: no shipped old model for hash {cache_key(payload)}; "
            "run `python -m experiments.ship_old_models`"
        )
        shipped = load_model_file(found)  # checksum and finite weights checked on load
        # JSON round trip: the file stores plain JSON types (tuples become lists).
        assert shipped.metadata["cache"] == json.loads(json.dumps(payload, default=str))
        assert shipped.metadata["scenario"] == name and shipped.metadata["seed"] == seed
        assert 0.0 < shipped.metadata["scores"]["miou_all"] <= 1.0
