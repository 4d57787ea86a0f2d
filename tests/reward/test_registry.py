"""The reward registry: lazy imports, helpful errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from arbitrage.errors import ConfigError
from reward import REWARDS, RewardModel, Score, get_reward
from reward.judge import JudgeReward


def test_unknown_kind_names_the_closest_valid_kind() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown reward 'jugde' \(did you mean 'judge'\?\)"
    ) as info:
        get_reward("jugde", model="openai/x")
    for kind in ("hf", "judge", "local"):
        assert kind in str(info.value)


def test_unknown_kind_without_close_match_lists_kinds() -> None:
    with pytest.raises(ConfigError, match="rewards: hf, judge, local") as info:
        get_reward("zzzzzz")
    assert "did you mean" not in str(info.value)


def test_unknown_param_names_the_closest_param() -> None:
    with pytest.raises(ConfigError, match=r"'max_concurency' .*did you mean 'max_concurrency'"):
        get_reward("judge", model="openai/x", max_concurency=4)


def test_get_reward_builds_the_class_with_params() -> None:
    judge = get_reward("judge", model="openai/x", scale=(0, 5))
    assert isinstance(judge, JudgeReward)
    assert judge.scale == (0, 5)
    assert judge.describe() == "judge(openai/x, scale 0-5)"


def test_builtin_references_point_at_reward_models() -> None:
    assert set(REWARDS) >= {"judge", "hf", "local"}
    assert REWARDS["local"] == "reward.local:LocalJudgeReward"
    assert issubclass(JudgeReward, RewardModel)
    assert Score(0.5).details == {}


def test_import_reward_loads_neither_torch_nor_litellm() -> None:
    code = (
        "import sys, reward, reward.judge, reward.hf; "
        "print(sorted(m for m in ('torch', 'litellm', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
