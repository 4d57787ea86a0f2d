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
def installed_plugin(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """A real (if tiny) installed distribution with an ``arbitrage.rewards`` entry point."""
    (tmp_path / "arb_reward_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "arb_reward_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: arb-reward-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[arbitrage.rewards]\nshortest = arb_reward_plugin:Shortest\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("arb_reward_plugin", None)


def test_entry_point_reward_is_built_by_name_from_a_config(installed_plugin) -> None:  # type: ignore[no-untyped-def]
    from arbitrage.config import parse_config
    from arbitrage.records import Prompt
    from arbitrage.run import build_reward, preflight
    from reward import available

    assert available()["shortest"] == "arb_reward_plugin:Shortest"
    config = parse_config(
        {
            "teachers": [{"name": "a", "model": "openai/a"}],
            "reward": {"kind": "shortest", "params": {"scale": 2.0}, "language": {"mode": "off"}},
        }
    )
    preflight(config)
    reward = build_reward(config)
    assert reward.score(Prompt(text="q", language="en", task="qa"), "x").value == 1.0


def test_register_adds_a_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    from reward import register

    class Constant(RewardModel):
        async def ascore(self, prompt, completion):  # type: ignore[no-untyped-def]
            return Score(0.25)

    monkeypatch.setitem(REWARDS, "constant", Constant)  # undone after the test
    register("constant", Constant)
    assert isinstance(get_reward("constant"), Constant)
