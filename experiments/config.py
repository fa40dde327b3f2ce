"""Experiment configuration: structured defaults, a profile, the user's file, command-line flags.

Merged with OmegaConf in that order, so a setting the user gave explicitly (in their file or on
the command line) always wins over a profile or a strategy preset. Unknown keys and wrong types
are errors naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from experiments.grid import strategy_runs
from incremental.data import SCENARIO_KINDS
from incremental.strategies import replay_requested
from incremental.workflow import TrainConfig

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass
class ExperimentConfig:
    """One experiment: scenarios x strategies x seeds.

    Attributes:
        name: experiment name (W&B group, default output folder).
        scenarios: names in ``configs/scenario/``, paths to scenario YAML files, or scenario
            configs written inline (mappings, e.g. ``kind: folders``; their relative paths are
            relative to the experiment file's folder).
        strategies: registered strategies (``incremental.strategies.list_strategies()``),
            optionally with a ``+replay`` suffix, or named variants ``{name, strategy,
            settings}`` (see ``experiments.grid.strategy_runs``).
        seeds: training seeds; each runs the whole grid.
        profile: ``quick`` or ``full`` (``configs/profile/``), or a path to a profile YAML.
        output: output folder (default ``outputs/<name>``).
        cache_dir: where trained old models are cached by a hash of their config.
        wandb: ``offline``, ``online`` or ``disabled``.
        wandb_artifacts: upload the model files as an artifact of the summary run.
        model: ``incremental.models.create_model`` arguments (``name`` or ``arch``/``encoder``).
        train_old, train: loop settings of step 0 and step 1.
        strategy_overrides: per strategy name, settings applied over its preset.
        strategy_train: per strategy name, loop settings applied over ``train`` for it (the
            oracle trains to convergence: more epochs, early stopping on a plateau).
        scenario_overrides: per scenario kind (``fashion``, ``folders``, ``paper``), settings
            applied over the config of every scenario of that kind (``fashion: {sizes: ...}``).
        overwrite: replace the experiment in the output folder (its results, models, runs).
        resume: continue the interrupted experiment in the output folder (same config).
        jobs: independent runs side by side, each a process of ``threads`` threads
            (``"auto"``: the core count divided by ``threads`` on a CPU, 1 on a GPU or with
            several devices; 1: in this process).
        threads: CPU threads each run computes with, whatever ``jobs`` (default 1). A CPU's
            float sums are split by thread, so a run is bit-identical to another only at the
            same count (and torch and CPU): fixed here, ``--jobs 1`` and ``--jobs 2`` give the
            same numbers. More threads help a large model on many cores (README,
            "Reproducibility"). On a GPU an in-process run keeps torch's count (it changes no
            result there), and with several devices Lightning sets each process's.
        imports: Python modules to import first (for instance your strategies, which register
            themselves); also imported by every parallel job.
        retrain_old: train the old models even when cached or shipped.
        old_model_seed: every seed's step starts from this seed's old model (the steps'
            spread alone, at the cost of one old model); None: each seed its own.
    """

    name: str = "default"
    scenarios: list[Any] = field(
        default_factory=lambda: ["fashion-new-class", "fashion-split", "fashion-garment"]
    )
    strategies: list[Any] = field(
        default_factory=lambda: [
            "finetune",
            "mib",
            "candidate-sets",
            "candidate-sets+replay",
            # The distilled oracle: plain joint (the papers') is beaten on old classes by the
            # distilling methods (README, "The main job"); `--strategies ...,joint` adds it.
            "joint-distilled",
        ]
    )
    seeds: list[int] = field(default_factory=lambda: [0])
    profile: str = "quick"
    output: str | None = None
    cache_dir: str = "outputs/cache"
    wandb: str = "offline"
    wandb_project: str = "incremental"
    wandb_artifacts: bool = True
    model: dict[str, Any] = field(default_factory=lambda: {"name": "small-unet"})
    train_old: TrainConfig = field(default_factory=TrainConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    strategy_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    strategy_train: dict[str, dict[str, Any]] = field(default_factory=dict)
    scenario_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    overwrite: bool = False
    resume: bool = False
    jobs: Any = "auto"
    threads: int = 1
    imports: list[str] = field(default_factory=list)
    retrain_old: bool = False
    old_model_seed: int | None = None


class ConfigError(ValueError):
    """A configuration problem, naming the key or value."""


def _load_yaml(path: Path, what: str) -> DictConfig:
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        loaded = OmegaConf.load(path)
    except Exception as error:
        raise ConfigError(f"{path}: cannot read YAML: {error}") from None
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return loaded


def profile_path(profile: str) -> Path:
    path = Path(profile)
    if path.suffix in (".yaml", ".yml"):
        return path
    known = sorted(p.stem for p in (CONFIG_DIR / "profile").glob("*.yaml"))
    if profile not in known:
        raise ConfigError(f"profile: unknown profile {profile!r}; known: {known} or a YAML path")
    return CONFIG_DIR / "profile" / f"{profile}.yaml"


def _variant_label(entry: DictConfig, overrides: Any) -> str:
    """The label a named entry's runs get: for a strategy variant, ``strategy_runs``' own label
    (``<name>+replay`` when the strategy as built replays, by ``+replay``, a ``replay`` setting,
    its base's ``strategy_overrides`` or its factory, as ``joint`` does); for a scenario, its
    name. A strategy not registered yet (a module in ``imports``, imported when the run
    starts), or settings that do not build (``strategy_runs`` names the error later), are read
    by the ``+replay`` suffix unless a ``replay`` setting says otherwise."""
    variant = _plain(entry)
    base, plus, _ = str(variant.get("strategy", "")).partition("+")
    base_overrides = _plain(overrides.get(base))
    try:
        [run] = strategy_runs([variant], {base: base_overrides})
        return run.label
    except (ValueError, TypeError):
        pass
    settings = {**base_overrides, **_plain(variant.get("settings"))}
    try:
        replays = replay_requested(bool(plus), settings)
    except ValueError:
        replays = bool(plus)
    return f"{entry.name}+replay" if replays else str(entry.name)


def _plain(settings: Any) -> dict[str, Any]:
    """A settings mapping as a dict, its interpolations resolved where they can be (an
    environment variable, another key of the file), else left as written; anything but a
    mapping is none (the config's merge reports it)."""
    if not isinstance(settings, DictConfig):
        return dict(settings) if isinstance(settings, dict) else {}
    try:
        return OmegaConf.to_container(settings, resolve=True)
    except OmegaConfBaseException:
        return OmegaConf.to_container(settings, resolve=False)


def _named_entries(overrides: dict[str, Any], user: DictConfig) -> dict[str, Any]:
    """``overrides`` with each grid name (``--strategies cs-x``, ``--scenarios my-scenes``)
    that names an entry of the config file's own list (a strategy variant, an inline scenario)
    replaced by that entry, so that the command line can pick a study's variants by name. A
    variant is also picked by its label, the name with ``+replay`` when its strategy replays
    (results.csv's and the summary's name for it)."""
    picked = dict(overrides)
    # The base's overrides as the run will see them: the file's, then the command line's
    # (``--set strategy_overrides.candidate-sets.replay=true``, dotted or not).
    given = OmegaConf.create()
    for key, value in overrides.items():
        if key.split(".")[0] == "strategy_overrides":
            OmegaConf.update(given, key, value, force_add=True)
    file_overrides = user.get("strategy_overrides") if isinstance(user, DictConfig) else None
    try:
        strategy_overrides = OmegaConf.merge(
            file_overrides or {}, given.get("strategy_overrides") or {}
        )
    except OmegaConfBaseException:  # not a mapping: reported where the config is merged
        strategy_overrides = file_overrides or {}
    for key in ("strategies", "scenarios"):
        chosen, own = overrides.get(key), user.get(key) if isinstance(user, DictConfig) else None
        if not isinstance(chosen, list) or not own:
            continue
        labels = {}  # label -> entry; a variant's name picks its label without replay first
        for entry in own:
            if isinstance(entry, DictConfig) and "name" in entry:
                labels[_variant_label(entry, strategy_overrides)] = entry
        entries = {**{k.removesuffix("+replay"): e for k, e in labels.items()}, **labels}
        picked[key] = [
            OmegaConf.to_container(entries[v]) if isinstance(v, str) and v in entries else v
            for v in chosen
        ]
    return picked


def load_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> DictConfig:
    """Defaults <- profile <- the file at ``path`` <- ``overrides`` (dotted keys allowed)."""
    schema = OmegaConf.structured(ExperimentConfig)
    user = _load_yaml(Path(path), "config file") if path is not None else OmegaConf.create()
    cli = OmegaConf.create()
    for key, value in _named_entries(overrides or {}, user).items():
        OmegaConf.update(cli, key, value, force_add=True)
    try:
        profile = OmegaConf.merge(schema, user, cli).profile
        profile_cfg = _load_yaml(profile_path(profile), "profile")
        config = OmegaConf.merge(schema, profile_cfg, user, cli)
    except OmegaConfBaseException as error:
        raise ConfigError(_describe(error)) from None
    if config.output is None:
        config.output = f"outputs/{config.name}"
    base_dir = Path(path).resolve().parent if path is not None else Path.cwd()
    for index, scenario in enumerate(config.scenarios):
        if isinstance(scenario, DictConfig):
            if "name" not in scenario:
                raise ConfigError(f"scenarios[{index}]: an inline scenario needs a 'name'")
            scenario.root = str(base_dir / str(scenario.get("root") or "."))
        elif not isinstance(scenario, str):
            raise ConfigError(
                f"scenarios[{index}]: expected a scenario name, a YAML path or a mapping, got "
                f"{scenario!r}"
            )
    unknown_kinds = sorted(set(config.scenario_overrides) - set(SCENARIO_KINDS))
    if unknown_kinds:
        raise ConfigError(
            f"scenario_overrides: unknown scenario kind(s) {unknown_kinds}; known: "
            f"{list(SCENARIO_KINDS)} (settings go under their kind: fashion: {{sizes: ...}})"
        )
    seeds = list(config.seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds: expected distinct integers, got {seeds}")
    names = [s if isinstance(s, str) else s.name for s in config.scenarios]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"scenarios: names used more than once: {repeated}")
    if config.wandb not in ("offline", "online", "disabled"):
        raise ConfigError(
            f"wandb: {config.wandb!r} is not one of ['offline', 'online', 'disabled']"
        )
    return config


def _describe(error: OmegaConfBaseException) -> str:
    """OmegaConf's message, first line, with the full key."""
    key = getattr(error, "full_key", None)
    message = str(error).splitlines()[0]
    return f"{key}: {message}" if key else message


def load_scenario_config(
    name: str | DictConfig | dict, overrides: DictConfig | dict | None = None
) -> dict[str, Any]:
    """A scenario's config by name (``configs/scenario/``), path or inline mapping, with
    ``overrides`` merged. The ``root`` of relative paths in a ``kind: folders`` file is
    relative to the file's folder. A config with ``base: <scenario>`` is that scenario's config
    with its own keys on top (a variant: ``base: fashion-split`` + ``sibling_rate: 0.6``)."""
    if not isinstance(name, str):
        mapping = OmegaConf.create(name)
        if "base" in mapping:
            base = load_scenario_config(str(mapping.pop("base")))
            mapping = OmegaConf.merge(base, mapping)
        config = OmegaConf.merge(mapping, overrides or {})
        return OmegaConf.to_container(config, resolve=True)
    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        known = sorted(p.stem for p in (CONFIG_DIR / "scenario").glob("*.yaml"))
        if name not in known:
            raise ConfigError(f"scenarios: unknown scenario {name!r}; known: {known} or a path")
        path = CONFIG_DIR / "scenario" / f"{name}.yaml"
    loaded = _load_yaml(path, "scenario")
    if "base" in loaded:
        base = str(loaded.pop("base"))
        if base == name or base == path.stem:
            raise ConfigError(f"{path}: base: a scenario cannot be based on itself")
        loaded = OmegaConf.merge(load_scenario_config(base), loaded)
    if loaded.get("kind") == "folders":  # relative paths are relative to the file
        loaded.root = str(path.resolve().parent / str(loaded.get("root") or "."))
    config = OmegaConf.merge(loaded, overrides or {})
    return OmegaConf.to_container(config, resolve=True)


def scenario_configs(config: DictConfig) -> dict[str, dict[str, Any]]:
    """Each scenario's config by name, with the profile's overrides for its kind."""
    configs = {}
    for item in config.scenarios:
        scenario_cfg = load_scenario_config(item)
        overrides = config.scenario_overrides.get(scenario_cfg.get("kind"))
        if overrides:
            scenario_cfg = load_scenario_config(scenario_cfg, overrides)
        configs[scenario_cfg.get("name", str(item))] = scenario_cfg
    return configs
