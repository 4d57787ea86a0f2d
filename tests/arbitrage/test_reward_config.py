"""The reward section of a config: ensembles, length control, normalisation, the language gate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from arbitrage.config import RunConfig, parse_config
from arbitrage.errors import ConfigError
from arbitrage.factories import build_reward, build_scorer, preflight
from reward.calibrate import LanguageNormalised, LengthControl
from reward.ensemble import Panel, WeightedSum
from reward.gate import LanguageGate
from reward.judge import JudgeReward
from reward.local import LocalJudgeReward
from reward.pairwise import PairwiseJudgeReward

TEACHERS = [{"name": "a", "model": "openai/a", "api_base": "http://127.0.0.1:1"}]
JUDGE = {"kind": "judge", "model": "openai/j", "api_base": "http://127.0.0.1:1"}


def _config(reward: dict[str, Any]) -> RunConfig:
    return parse_config({"teachers": TEACHERS, "reward": reward})


def test_the_default_reward_is_the_local_proxy_behind_the_language_gate() -> None:
    reward = build_reward(_config({}))
    assert isinstance(reward, LanguageGate) and reward.mode == "gate" and reward.threshold == 0.5
    assert isinstance(reward.inner, LocalJudgeReward)


def test_every_step_is_built_in_order() -> None:
    reward = build_reward(
        _config(
            {
                "kind": "ensemble",
                "members": [
                    {**JUDGE, "weight": 2.0},
                    {**JUDGE, "kind": "pairwise", "name": "pw", "params": {"max_tokens": 64}},
                ],
                "length": {"mode": "regress", "min_samples": 5},
                "normalise": "language",
                "language": {"mode": "penalty", "penalty": 0.5, "per_language": {"sw": 0.2}},
            }
        )
    )
    assert isinstance(reward, LanguageGate) and reward.level("sw") == 0.2
    normalised = reward.inner
    assert isinstance(normalised, LanguageNormalised)
    length = normalised.inner
    assert isinstance(length, LengthControl) and length.min_samples == 5
    weighted = length.inner
    assert isinstance(weighted, WeightedSum) and weighted.weights == {"judge": 2.0, "pw": 1.0}
    panel = weighted.inner
    assert isinstance(panel, Panel)
    judge, pairwise = panel.members["judge"], panel.members["pw"]
    assert isinstance(judge, JudgeReward) and judge.api_base == "http://127.0.0.1:1"
    assert isinstance(pairwise, PairwiseJudgeReward) and pairwise.max_tokens == 64
    # A run hands its cache and budget to the parts that make calls.
    assert reward.parts() == [judge, pairwise]


def test_the_gate_can_be_turned_off_and_a_scorer_is_built_without_wrappers() -> None:
    config = _config({**JUDGE, "language": {"mode": "off"}})
    assert isinstance(build_reward(config), JudgeReward)
    config = _config({**JUDGE, "normalise": "language"})
    assert isinstance(build_scorer(config), JudgeReward)


def test_a_bare_yaml_off_turns_a_step_off(tmp_path: Path) -> None:
    from arbitrage.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text(
        "teachers: [{name: a, model: openai/a, api_base: 'http://127.0.0.1:1'}]\n"
        "reward:\n"
        "  kind: judge\n"
        "  model: openai/j\n"
        "  api_base: 'http://127.0.0.1:1'\n"
        "  length: {mode: off}\n"  # PyYAML reads a bare off as False
        "  language:\n"
        "    mode: off\n"
    )
    config = load_config(path)
    assert (config.reward.length.mode, config.reward.language.mode) == ("off", "off")
    assert isinstance(build_reward(config), JudgeReward)  # neither step wraps the judge
    with pytest.raises(ConfigError, match=r"'reward\.language\.mode'"):
        _config({"language": {"mode": True}})  # a bare on / yes: no key takes it


@pytest.mark.parametrize(
    ("reward", "match"),
    [
        ({"kind": "ensemble", "members": [JUDGE]}, "at least two members"),
        ({"kind": "judge", "members": [JUDGE, JUDGE]}, "apply to kind 'ensemble'"),
        ({"kind": "ensemble", "members": [JUDGE, JUDGE]}, "distinct names"),
        (
            {"kind": "ensemble", "model": "x", "members": [JUDGE, {**JUDGE, "name": "b"}]},
            "per member",
        ),
        (
            {"kind": "ensemble", "members": [JUDGE, {"kind": "ensemble", "name": "b"}]},
            "cannot itself be an ensemble",
        ),
        ({"kind": "ensemble", "members": [{**JUDGE, "weight": 0}, JUDGE]}, "weight"),
        ({"language": {"mode": "strict"}}, "mode"),
        ({"language": {"threshold": 2}}, "threshold"),
        ({"language": {"per_language": {"french": 0.3}}}, "not a language code"),
        ({"language": {"per_language": {"fr": 1.5}}}, "must lie in"),
        ({"language": {"per_language": {"fr": -1}}}, "must be a number >= 0"),
        ({"length": {"mode": "cubic"}}, "mode"),
        ({"length": {"min_samples": 1}}, "min_samples"),
        ({"normalise": "global"}, "normalise"),
        ({"langauge": {}}, "did you mean 'language'"),
    ],
)
def test_bad_reward_settings_name_the_key(reward: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _config(reward)


def test_preflight_checks_every_members_kind_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MISSING_JUDGE_KEY", raising=False)
    members = [JUDGE, {"kind": "hf_rm", "model": "x", "name": "b"}]
    with pytest.raises(ConfigError, match="unknown reward kind 'hf_rm'"):
        preflight(_config({"kind": "ensemble", "members": members}))
    members = [JUDGE, {**JUDGE, "name": "b", "api_key_env": "MISSING_JUDGE_KEY"}]
    with pytest.raises(ConfigError, match="MISSING_JUDGE_KEY is not set"):
        preflight(_config({"kind": "ensemble", "members": members}))


def test_api_settings_only_reach_llm_judges() -> None:
    with pytest.raises(ConfigError, match="apply to kinds 'judge' and 'pairwise'"):
        build_reward(_config({"kind": "hf", "model": "x", "api_base": "http://127.0.0.1:1"}))


def test_estimate_prices_every_llm_member_and_pairwise_by_its_comparisons() -> None:
    from arbitrage.commands.estimate import estimate, generations_per_prompt

    prices = {"input_cost_per_mtok": 1.0, "output_cost_per_mtok": 2.0}
    config = parse_config(
        {
            "teachers": [*TEACHERS, {**TEACHERS[0], "name": "b"}],
            "pool": {"n_prompts": 100},
            "router": {"name": "reward"},
            "reward": {
                "kind": "ensemble",
                "members": [
                    {**JUDGE, "params": prices},
                    {**JUDGE, "kind": "pairwise", "name": "pw", "params": prices},
                    {"kind": "hf", "model": "x"},
                ],
            },
        }
    )
    rows = {row["who"]: row for row in estimate(config)}
    assert generations_per_prompt(config) == 1  # per teacher: every teacher answers
    assert rows["judge"]["calls"] == 200  # one per answer
    assert rows["pw"]["calls"] == 200  # both orders of the one pair of each prompt
    assert rows["pw"]["input_tokens"] > rows["judge"]["input_tokens"]  # two answers a call
    assert rows["judge"]["usd"] > 0 and "hf" not in rows


@pytest.mark.parametrize(
    ("router", "expected"),
    [
        ({"name": "reward"}, 1000 * 3 * 2),
        # 20 warm-up prompts × 3 × 2, then 10% of 980 explored with two teachers × 2 × 1
        ({"name": "learned", "params": {"warmup": 20, "explore": 0.1}}, 20 * 6 + 98 * 2),
        # 1.4 answers a prompt: 40% of prompts get two (2 calls), the rest one (none)
        ({"name": "bandit", "params": {"max_generations_per_prompt": 1.4}}, 1000 * 0.4 * 2),
        ({"name": "random"}, 0),
    ],
)
def test_pairwise_calls_follow_the_router(router: dict[str, Any], expected: float) -> None:
    from arbitrage.commands.estimate import pairwise_calls

    teachers = [{**TEACHERS[0], "name": n} for n in ("a", "b", "c")]
    config = parse_config(
        {"teachers": teachers, "pool": {"n_prompts": 1000}, "router": router, "reward": JUDGE}
    )
    assert pairwise_calls(config) == pytest.approx(expected)
