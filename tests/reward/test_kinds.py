"""The reward kinds: built from their params, imported only when asked for, and a
plugin's kind usable from a config. Lookup errors: tests/arbitrage/test_registry.py."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from plugins import installed_plugin

from reward import REWARDS, RewardModel, Score, get_reward
from reward.judge import JudgeReward


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


PLUGIN = """
from reward import RewardModel, Score


class Shortest(RewardModel):
    name = "shortest"

    def __init__(self, scale=1.0):
        self.scale = scale

    async def ascore(self, prompt, completion):
        return Score(self.scale / (1 + len(completion)))
"""


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with installed_plugin(
        tmp_path, monkeypatch, "arbitrage.rewards", "shortest", PLUGIN, attr="Shortest"
    ) as ref:
        yield ref


def test_entry_point_reward_is_built_by_name_from_a_config(installed: str) -> None:
    from arbitrage.config import parse_config
    from arbitrage.factories import build_reward, preflight
    from arbitrage.records import Prompt
    from reward import available

    assert available()["shortest"] == installed
    config = parse_config(
        {
            "teachers": [{"name": "a", "model": "openai/a"}],
            "reward": {"kind": "shortest", "params": {"scale": 2.0}, "language": {"mode": "off"}},
        }
    )
    preflight(config)
    reward = build_reward(config)
    assert reward.score(Prompt(text="q", language="en", task="qa"), "x").value == 1.0
