"""The shipped study configs (``experiments/configs/studies/``) are valid experiments: README
tells users to run them, so a typo in one must fail here, not an hour into a study; and the
command line picks a study's own variants by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from experiments.config import ConfigError, load_config, scenario_configs
from experiments.grid import strategy_runs
from experiments.run import check_model, check_train_settings
from experiments.steps import plain

STUDIES = sorted((Path(__file__).parents[2] / "experiments" / "configs" / "studies").glob("*.yaml"))


def test_there_are_studies():
    assert len(STUDIES) >= 6, STUDIES


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_study_config_names_known_strategies_settings_and_scenarios(path):
    config = load_config(path)
    runs = strategy_runs(plain(config.strategies), plain(config.strategy_overrides))
    assert runs, f"{path.name}: no strategy"
    check_train_settings(config, runs)
    check_model(config)
    scenarios = scenario_configs(config)
    assert len(scenarios) == len(config.scenarios), f"{path.name}: a scenario named twice"
    assert len(set(config.seeds)) == len(config.seeds), f"{path.name}: a seed named twice"


def test_studies_write_to_different_folders():
    """Each study's default output folder is ``outputs/<name>``: two studies with one name
    would refuse each other's folder (or, with --overwrite, replace each other's results)."""
    names = [load_config(path).name for path in STUDIES]
    assert len(set(names)) == len(names), names


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_quick_profile_studies_stay_float32(path):
    """README's quick-profile study figures were measured in float32, before the quick
    profile's step 1 took precision ``auto``: each study on that profile pins float32, so its
    figures (and the pairings between studies) reproduce on a machine with native bfloat16."""
    config = load_config(path)
    if config.profile == "quick":
        assert config.train.precision == "32-true", f"{path.name}: train.precision not pinned"


def test_the_command_line_picks_a_study_s_variants_and_inline_scenarios_by_name(tmp_path):
    """``--strategies cs-x`` (or its label ``cs-x+replay``) and ``--scenarios scenes`` pick the
    config file's own entries of that name; other names stay registered names."""
    path = tmp_path / "study.yaml"
    path.write_text(
        yaml.safe_dump({
            "scenarios": ["fashion-split", {"name": "scenes", "kind": "folders"}],
            "strategies": [
                {"name": "cs-x", "strategy": "candidate-sets", "settings": {"contrast": 0.5}},
                {"name": "cs-x", "strategy": "candidate-sets+replay"},
                {"name": "cs-y", "strategy": "candidate-sets+replay"},
            ],
        })
    )  # fmt: skip

    def picked(**grid):
        config = load_config(path, grid)
        return OmegaConf.to_container(config.strategies), OmegaConf.to_container(config.scenarios)

    strategies, scenarios = picked(strategies=["cs-x", "mib"], scenarios=["scenes"])
    assert strategies == [
        {"name": "cs-x", "strategy": "candidate-sets", "settings": {"contrast": 0.5}}, "mib"
    ]  # fmt: skip
    assert scenarios[0]["name"] == "scenes" and scenarios[0]["kind"] == "folders"
    replayed = {"name": "cs-x", "strategy": "candidate-sets+replay"}
    assert picked(strategies=["cs-x+replay"])[0] == [replayed]
    # A variant that exists only with replay is picked by its name too.
    assert picked(strategies=["cs-y"])[0] == [{"name": "cs-y", "strategy": "candidate-sets+replay"}]
    assert picked(strategies=["candidate-sets+replay"])[0] == ["candidate-sets+replay"]


def test_a_variant_replaying_by_its_settings_is_picked_by_its_label(tmp_path):
    """A variant replays by ``+replay``, by its own ``replay`` setting, by its base's
    ``strategy_overrides`` or by its factory (``joint`` always replays); ``--strategies
    <name>+replay`` picks it in each case, as the label results.csv gives it
    (``strategy_runs``)."""
    path = tmp_path / "study.yaml"
    path.write_text(
        yaml.safe_dump({
            "strategies": [
                {"name": "cs-own", "strategy": "candidate-sets", "settings": {"replay": True}},
                {"name": "cs-base", "strategy": "mib"},
                {"name": "cs-off", "strategy": "candidate-sets+replay",
                 "settings": {"replay": False}},
                {"name": "joint-x", "strategy": "joint"},
            ],
            "strategy_overrides": {"mib": {"replay": True}},
        })
    )  # fmt: skip
    config = load_config(path)
    labels = [r.label for r in strategy_runs(plain(config.strategies), config.strategy_overrides)]
    assert labels == ["cs-own+replay", "cs-base+replay", "cs-off", "joint-x+replay"]
    for label, entry in zip(labels, plain(config.strategies), strict=True):
        assert plain(load_config(path, {"strategies": [label]}).strategies) == [entry]
    # The command line's overrides count as the file's do, dotted or not.
    for on in ({"strategy_overrides.mib.replay": False}, {"strategy_overrides": {"mib": {}}}):
        config = load_config(path, {**on, "strategies": ["cs-base"]})
        [run] = strategy_runs(plain(config.strategies), config.strategy_overrides)
        assert run.label == ("cs-base" if on.get("strategy_overrides.mib.replay") is False
                             else "cs-base+replay")  # fmt: skip
    # Malformed command-line overrides are the config's error, naming the key.
    for bad in ({"strategy_overrides.mib": 5}, {"strategy_overrides": {"mib": "x"}}):
        with pytest.raises(ConfigError, match=r"strategy_overrides\.mib"):
            load_config(path, {**bad, "strategies": ["cs-base"]})
    # With replay off on the command line, `cs-base+replay` is no label of the variant: it is
    # left as a name (which `strategy_runs` then refuses as unknown).
    on = {"strategy_overrides.mib.replay": False, "strategies": ["cs-base+replay"]}
    assert plain(load_config(path, on).strategies) == ["cs-base+replay"]


def test_a_variant_with_interpolated_settings_is_picked_by_its_label(tmp_path, monkeypatch):
    """Settings written as interpolations (an environment variable, as the paper configs use)
    are resolved before the picker builds the variant, so its label is the run's."""
    monkeypatch.setenv("TEST_DISTILLATION", "set")
    path = tmp_path / "study.yaml"
    path.write_text(
        "strategies:\n"
        "  - {name: cs-x, strategy: candidate-sets,"
        " settings: {replay: true, distillation: '${oc.env:TEST_DISTILLATION}'}}\n"
        "  - {name: joint-x, strategy: joint, settings: {init: '${oc.env:TEST_INIT,scratch}'}}\n"
    )
    for label in ("cs-x+replay", "joint-x+replay"):
        [entry] = plain(load_config(path, {"strategies": [label]}).strategies)
        assert isinstance(entry, dict) and f"{entry['name']}+replay" == label


def test_two_names_of_one_run_are_refused():
    """Two labels that build the same run (results.csv's name and replay) would train it twice
    and write two rows: refused, naming both; one label twice likewise."""
    with pytest.raises(ValueError, match=r"strategies \['joint', 'joint\+replay'\] are one run"):
        strategy_runs(["joint", "joint+replay"], {})
    with pytest.raises(ValueError, match=r"\['candidate-sets', 'candidate-sets\+replay'\] are one"):
        strategy_runs(
            ["candidate-sets", "candidate-sets+replay"], {"candidate-sets": {"replay": True}}
        )
    with pytest.raises(ValueError, match=r"strategies named more than once: \['mib'\]"):
        strategy_runs(["mib", "mib"], {})
    assert len(strategy_runs(["candidate-sets", "candidate-sets+replay"], {})) == 2


def test_overrides_for_replay_runs_only_are_refused_not_ignored():
    """``strategy_overrides`` are looked up by base name: a ``+replay`` key would change
    nothing, silently."""
    with pytest.raises(ValueError, match=r"'candidate-sets\+replay' is not a strategy's base name"):
        strategy_runs(["candidate-sets+replay"], {"candidate-sets+replay": {"contrast": None}})
