"""Named strategies: a small registry of factories, timm-style.

A factory is a function whose keyword arguments are the strategy's own settings and which
returns a :class:`~incremental.strategies.Strategy`. ``create_strategy(name, overrides)``
calls it with the user's settings (they always win over the factory's defaults), then applies
the options every strategy takes: ``replay``, ``old_share``, ``freeze`` and the
cross-entropy's ``class_weights`` and ``focal_gamma``. A strategy may register defaults of its
own settings that hold only with replay (``replay_defaults``): replayed old images carry what
a setting needs (``candidate-sets``' self-training acts on their parent sets). A strategy added
in a new file registers itself with :func:`register_strategy`; nothing else needs an edit.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from incremental.strategies.composition import Strategy

Factory = Callable[..., Strategy]

_FACTORIES: dict[str, Factory] = {}
#: Per strategy, the defaults of its own settings when it replays (over the factory's).
_REPLAY_DEFAULTS: dict[str, dict[str, Any]] = {}
#: Settings every strategy accepts, on top of its factory's own.
COMMON_SETTINGS = ("replay", "old_share", "freeze", "class_weights", "focal_gamma")
#: Appended to a name to turn replay on (``candidate-sets+replay``).
REPLAY_SUFFIX = "+replay"


def register_strategy(
    name: str, replay_defaults: Mapping[str, Any] | None = None
) -> Callable[[Factory], Factory]:
    """Register ``factory`` under ``name`` (a decorator). ``replay_defaults``: defaults of the
    factory's own settings that replace its signature's when the strategy replays (by the
    ``+replay`` suffix, the ``replay`` setting, or the factory itself, as ``joint`` does); the
    user's settings still win."""

    def decorator(factory: Factory) -> Factory:
        if name in _FACTORIES and not _same_function(_FACTORIES[name], factory):
            raise ValueError(f"strategy {name!r} is registered twice")
        # The same factory again (a module reloaded) is fine; with other replay defaults it
        # would silently change what `+replay` trains for every later run.
        if name in _FACTORIES and _REPLAY_DEFAULTS[name] != dict(replay_defaults or {}):
            raise ValueError(
                f"strategy {name!r} is registered again with other replay_defaults: "
                f"{_REPLAY_DEFAULTS[name]} before, {dict(replay_defaults or {})} now"
            )
        if "+" in name:
            raise ValueError(f"strategy names cannot hold '+': {name!r}")
        own = set(inspect.signature(factory).parameters)
        foreign = sorted(set(replay_defaults or {}) - own)
        if foreign:
            raise ValueError(
                f"strategy {name!r}: replay_defaults {foreign} are not settings of its factory"
            )
        _FACTORIES[name] = factory
        _REPLAY_DEFAULTS[name] = dict(replay_defaults or {})
        return factory

    return decorator


def _same_function(a: Factory, b: Factory) -> bool:
    """Whether ``b`` is ``a`` or ``a`` defined again by a reloaded module: a module-level
    function with the same module and qualified name. Lambdas and closures (``<lambda>``,
    ``make.<locals>.factory``) share names while being other factories, so they never match."""
    if a is b:
        return True
    names = [(getattr(f, "__module__", None), getattr(f, "__qualname__", None)) for f in (a, b)]
    return names[0] == names[1] and names[0][1] is not None and "<" not in names[0][1]


def list_strategies() -> list[str]:
    """Registered names, in registration order."""
    return list(_FACTORIES)


def strategy_module(name: str) -> str:
    """The module whose import registers strategy ``name`` (a fresh process imports it)."""
    base, _ = parse_strategy_name(name)
    return _FACTORIES[base].__module__


def parse_strategy_name(name: str) -> tuple[str, bool]:
    """``"candidate-sets+replay"`` -> ``("candidate-sets", True)``; errors name the problem."""
    base, plus, suffix = name.partition("+")
    if plus and f"+{suffix}" != REPLAY_SUFFIX:
        raise ValueError(f"strategy {name!r}: the only suffix is {REPLAY_SUFFIX!r}")
    if base not in _FACTORIES:
        raise ValueError(f"unknown strategy {base!r}; known: {list_strategies()}")
    return base, bool(plus)


def strategy_settings(name: str) -> dict[str, Any]:
    """The settings ``name`` accepts, with their defaults (common settings: None; for a
    ``+replay`` name, the replay defaults)."""
    base, replay = parse_strategy_name(name)
    parameters = inspect.signature(_FACTORIES[base]).parameters.values()
    own = {p.name: p.default for p in parameters if p.kind is not p.VAR_KEYWORD}
    if replay:
        own.update(_REPLAY_DEFAULTS[base])
    return {**own, **{k: None for k in COMMON_SETTINGS if k not in own}}


def replay_defaults(name: str) -> dict[str, Any]:
    """The defaults ``name``'s strategy takes when it replays (empty: its factory's)."""
    base, _ = parse_strategy_name(name)
    return dict(_REPLAY_DEFAULTS[base])


def replay_requested(suffix: bool, settings: Mapping[str, Any]) -> bool:
    """Whether a strategy named with (``suffix``) or without ``+replay`` is asked to replay by
    its ``settings``: an explicit ``replay`` setting (true; false or null: off) beats the
    suffix. A factory may still turn replay on itself (``joint``).

    Raises:
        ValueError: a ``replay`` setting that is not true, false or null (``1``, ``"yes"``),
            which results.csv and a resume could not read back as the run's replay.
    """
    if "replay" not in settings:
        return suffix
    value = settings["replay"]
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"setting replay: expected true, false or null, got {value!r}")
    return bool(value)


def create_strategy(
    name: str, overrides: Mapping[str, Any] | None = None, with_replay_defaults: bool = True
) -> Strategy:
    """The strategy ``name`` (optionally ``+replay``) with the user's ``overrides``;
    ``with_replay_defaults=False`` builds it as before strategies had replay defaults (how an
    experiment from before 2026-12-07 trained it).

    Raises:
        ValueError: unknown name, suffix or setting (naming the known ones), or a value a
            piece refuses.
    """
    base, replay = parse_strategy_name(name)
    overrides = dict(overrides or {})
    known = strategy_settings(name)
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise ValueError(f"strategy {name!r}: unknown setting(s) {unknown}; known: {sorted(known)}")
    requested = replay_requested(replay, overrides)
    defaults = _REPLAY_DEFAULTS[base] if with_replay_defaults else {}
    factory = _FACTORIES[base]
    own = set(inspect.signature(factory).parameters)
    if requested:  # before the first call: a user's setting may need them (self_training_ema)
        overrides = {**defaults, **overrides}
    strategy = factory(**{k: v for k, v in overrides.items() if k in own})
    # Replay's defaults hold whenever it replays, the factory's own replay (``joint``) included,
    # so one run key (name, replay) is one training however replay was asked for. An explicit
    # ``replay: false`` (or null) turns off even a factory's replay.
    replays = requested if "replay" in overrides else bool(strategy.replay) or requested
    if replays and not requested and defaults:
        overrides = {**defaults, **overrides}
        strategy = factory(**{k: v for k, v in overrides.items() if k in own})
    strategy = replace(strategy, name=base, replay=replays)
    common = {k: v for k, v in overrides.items() if k not in own and k != "replay"}
    ce_options = {k: common.pop(k) for k in ("class_weights", "focal_gamma") if k in common}
    if ce_options:
        strategy = strategy.with_cross_entropy(**ce_options)
    return replace(strategy, **common)
