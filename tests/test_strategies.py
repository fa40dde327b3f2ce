"""Strategy presets and the rule that explicit settings win."""

from __future__ import annotations

import pytest

from incremental.strategies import PRESETS, StrategyConfig, resolve_strategy


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_resolves(name):
    assert isinstance(resolve_strategy(name), StrategyConfig)


def test_user_setting_beats_preset():
    mib = resolve_strategy("mib")
    assert mib.kd_weight == 10.0 and not mib.split_aware
    mine = resolve_strategy("mib", {"kd_weight": 2.0, "split_aware": True})
    assert mine.kd_weight == 2.0 and mine.split_aware
    # +replay never undoes an explicit replay=False...
    assert resolve_strategy("candidate-sets+replay", {"replay": False}).replay is False
    assert resolve_strategy("candidate-sets+replay").replay is True


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown strategy 'mibb'"):
        resolve_strategy("mibb")
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['kd_wieght'\]"):
        resolve_strategy("mib", {"kd_wieght": 1})
    with pytest.raises(ValueError, match="strategy.distillation: 'soft'"):
        resolve_strategy("mib", {"distillation": "soft"})
    with pytest.raises(ValueError, match="only suffix"):
        resolve_strategy("mib+fast")
    with pytest.raises(ValueError, match="old_share"):
        StrategyConfig(old_share=1.0)


def test_uses_teacher():
    assert not resolve_strategy("finetune").uses_teacher
    assert resolve_strategy("candidate-sets").uses_teacher
    assert resolve_strategy("plop").uses_teacher
    assert not resolve_strategy("joint").uses_teacher
