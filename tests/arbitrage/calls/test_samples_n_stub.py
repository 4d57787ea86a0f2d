"""``samples: k`` in one request (litellm's ``n``) against the stub server on 127.0.0.1,
through litellm's real code path and the direct transport: one request carries ``n``,
each answer lands in the cache under its own sample's key, a rerun sends nothing, a
partly cached set asks only for the rest, the budget reserves the whole request and
the samples' costs add up to what the server's usage costs."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from stub_server import Reply

from arbitrage.calls.budget import Budget, prompt_tokens
from arbitrage.calls.cache import CallCache
from arbitrage.calls.llm import takes_n
from arbitrage.calls.teachers import Teacher
from arbitrage.config import TeacherConfig, parse_config
from arbitrage.errors import BudgetExceeded, ConfigError
from arbitrage.records import Generation, Prompt
from arbitrage.rundir import config_hash

KEY = "sk-samples-secret-0123456789"
PROMPT = Prompt(text="Name a river in France and say why.", language="en", task="open_qa")
TRANSPORTS = ["litellm", "direct"]
# $1 a prompt token, $2 a completion token: the stub counts words as tokens
PRICES = {"input_cost_per_mtok": 1_000_000.0, "output_cost_per_mtok": 2_000_000.0}


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUB_KEY", KEY)


def make(
    url: str, transport: str, cache: CallCache | None, budget: Budget | None = None, **params: Any
) -> Teacher:
    """Teacher ``t`` (model ``openai/t`` on the stub): 4 samples, $1 / $2 a token."""
    config = TeacherConfig(
        name="t",
        model="openai/t",
        api_base=url,
        api_key_env="STUB_KEY",
        transport=transport,
        **{"samples": 4, "temperature": 0.9, **PRICES, **params},
    )
    return Teacher(config, cache=cache, budget=budget)


def billed(request: dict[str, Any], gens: list[Generation]) -> float:
    """What the stub's usage for ``request`` costs: its prompt's words once, every
    answer's words."""
    words = sum(len(str(m["content"]).split()) for m in request["messages"])
    return words * 1.0 + sum(len(g.text.split()) for g in gens) * 2.0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_one_request_carries_n_and_each_sample_is_cached_and_priced(
    stub_server, tmp_path: Path, transport: str
) -> None:
    cache = CallCache(tmp_path / "cache.sqlite")
    budget = Budget(100_000.0)
    t = make(stub_server.url, transport, cache, budget)
    gens = asyncio.run(t.asample(PROMPT))
    assert len(stub_server.requests) == 1 and stub_server.requests[0]["n"] == 4
    assert [g.sample for g in gens] == [0, 1, 2, 3]
    assert len({g.text for g in gens}) == 4 and all(g.ok for g in gens)
    assert cache.writes == 4
    # the prompt is billed once, on sample 0; the parts add up to the server's usage
    assert gens[0].usage.prompt_tokens > 0
    assert [g.usage.prompt_tokens for g in gens[1:]] == [0, 0, 0]
    paid = billed(stub_server.requests[0], gens)
    assert sum(g.cost_usd for g in gens) == pytest.approx(paid)
    assert budget.spent_usd == pytest.approx(paid) and budget.reserved_usd == 0
    assert t.stats.requests == 1 and t.stats.ok == 4
    assert t.stats.cost_usd == pytest.approx(paid)

    # a rerun on the same cache asks nothing, and gets the same answers
    stub_server.requests.clear()
    again = asyncio.run(make(stub_server.url, transport, cache).asample(PROMPT))
    assert stub_server.requests == []
    assert [(g.sample, g.text) for g in again] == [(g.sample, g.text) for g in gens]
    # one call a sample finds the same rows: switching never pays twice
    calls = asyncio.run(
        make(stub_server.url, transport, cache, samples_via="calls").asample(PROMPT)
    )
    assert stub_server.requests == [] and [g.text for g in calls] == [g.text for g in gens]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_partly_cached_set_asks_only_for_the_missing_samples(
    stub_server, tmp_path: Path, transport: str
) -> None:
    cache = CallCache(tmp_path / "cache.sqlite")
    # two samples as one call each (their own seeds) ...
    first = asyncio.run(
        make(stub_server.url, transport, cache, samples=2, samples_via="calls").asample(PROMPT)
    )
    assert [r.get("n") for r in stub_server.requests] == [None, None]
    seeds = [r["seed"] for r in stub_server.requests]
    stub_server.requests.clear()
    # ... then four: one request for the two missing, with the third sample's seed
    t = make(stub_server.url, transport, cache)
    gens = asyncio.run(t.asample(PROMPT))
    assert len(stub_server.requests) == 1
    request = stub_server.requests[0]
    assert request["n"] == 2 and request["seed"] not in seeds
    assert request["seed"] == t.request(PROMPT.messages(), key=PROMPT.id, sample=2)["seed"]
    assert [g.text for g in gens[:2]] == [g.text for g in first]
    assert [g.text for g in gens[2:]] == [first[0].text, first[0].text + " (choice 1)"]
    assert cache.writes == 4  # (the stub's answer is the same for every seed)
    assert t.stats.cached == 2 and t.stats.requests == 1
    assert gens[2].usage.prompt_tokens > 0 and gens[3].usage.prompt_tokens == 0
    assert sum(g.cost_usd for g in gens[2:]) == pytest.approx(billed(request, gens[2:]))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_budget_reserves_the_prompt_once_and_n_times_max_tokens(
    stub_server, tmp_path: Path, transport: str
) -> None:
    stub_server.set_handler("t", lambda messages: "The Seine.")  # 2 to 4 tokens a choice
    t = make(stub_server.url, transport, None, max_tokens=10)
    one = t.worst_case_usd(PROMPT.messages())
    whole = prompt_tokens(PROMPT.messages()) * 1.0 + 4 * 10 * 2.0
    assert t.client.worst_case_usd(PROMPT.messages(), 10, 4) == pytest.approx(whole)
    # enough for one call, not for one request of four answers: nothing is sent
    budget = Budget(whole - 1.0)
    assert budget.limit_usd > one  # type: ignore[operator]
    t = make(stub_server.url, transport, None, budget, max_tokens=10)
    with pytest.raises(BudgetExceeded, match="teacher 't'"):
        asyncio.run(t.asample(PROMPT))
    assert stub_server.requests == [] and budget.spent_usd == 0 and budget.reserved_usd == 0
    # enough for it: settled on what the server counted, below the reservation
    budget = Budget(whole)
    t = make(stub_server.url, transport, None, budget, max_tokens=10)
    gens = asyncio.run(t.asample(PROMPT))
    assert len(stub_server.requests) == 1
    assert budget.spent_usd == pytest.approx(billed(stub_server.requests[0], gens))
    assert budget.spent_usd < whole
    assert budget.reserved_usd == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_failed_request_fails_every_sample_and_stores_none(
    stub_server, tmp_path: Path, transport: str
) -> None:
    cache = CallCache(tmp_path / "cache.sqlite")
    stub_server.set_handler("t", lambda messages: Reply(text="boom", status=500))
    gens = asyncio.run(make(stub_server.url, transport, cache, retries=0).asample(PROMPT))
    assert len(stub_server.requests) == 1
    assert [g.sample for g in gens] == [0, 1, 2, 3] and all(g.failed for g in gens)
    assert cache.writes == 0
    stub_server.set_handler("t", lambda messages: "fine")
    stub_server.requests.clear()
    gens = asyncio.run(make(stub_server.url, transport, cache).asample(PROMPT))
    assert [r["n"] for r in stub_server.requests] == [4] and all(g.ok for g in gens)


def test_fewer_choices_than_asked_leaves_the_rest_to_one_call_each(
    stub_server, tmp_path: Path
) -> None:
    one = {
        "choices": [{"message": {"role": "assistant", "content": "only"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    }
    stub_server.set_handler(
        "t", lambda m: Reply(text="", body=one) if len(stub_server.requests) == 1 else "x"
    )
    cache = CallCache(tmp_path / "cache.sqlite")
    gens = asyncio.run(make(stub_server.url, "direct", cache, samples=3).asample(PROMPT))
    assert [r.get("n") for r in stub_server.requests] == [3, None, None]
    assert [g.text for g in gens] == ["only", "x", "x"] and cache.writes == 3


def test_samples_via_calls_and_unsupported_providers_make_one_call_a_sample(
    stub_server, tmp_path: Path
) -> None:
    cache = CallCache(tmp_path / "cache.sqlite")
    gens = asyncio.run(make(stub_server.url, "litellm", cache, samples_via="calls").asample(PROMPT))
    assert len(stub_server.requests) == 4 and all("n" not in r for r in stub_server.requests)
    assert len({r["seed"] for r in stub_server.requests}) == 4 and cache.writes == 4
    assert [g.sample for g in gens] == [0, 1, 2, 3]
    assert takes_n("openai/gpt-4o-mini", "litellm") and takes_n("hosted_vllm/m", "litellm")
    assert takes_n("anything/m", "direct")
    assert not takes_n("anthropic/claude-3-5-haiku-latest", "litellm")
    assert not takes_n("local/smollm2-135m", "litellm")
    assert not takes_n("no-such-provider-model", "litellm")


T = [
    {"name": "a", "model": "openai/m"},
    {"name": "b", "model": "anthropic/claude-3-5-haiku-latest"},
]


@pytest.mark.parametrize(
    ("teacher", "message"),
    [
        ({**T[0], "samples_via": "many"}, "teachers[0].samples_via"),
        ({**T[0], "samples_vai": "n"}, "did you mean 'samples_via'"),
        ({**T[1], "samples_via": "n"}, "'anthropic/claude-3-5-haiku-latest' takes no n"),
        ({"name": "l", "model": "local/smollm2-135m", "samples_via": "n"}, "takes no n"),
        ({**T[0], "samples_via": "n", "mode": "batch"}, "a batch job sends one request a sample"),
    ],
)
def test_a_bad_samples_via_is_one_clear_error(teacher: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config({"teachers": [teacher]})


def test_samples_via_leaves_the_config_hash_alone() -> None:
    plain = config_hash(parse_config({"teachers": T}))
    for via in ("auto", "n", "calls"):
        teachers = [{**T[0], "samples": 3, "samples_via": via}, T[1]]
        assert config_hash(parse_config({"teachers": teachers})) == config_hash(
            parse_config({"teachers": [{**T[0], "samples": 3}, T[1]]})
        )
    assert (
        config_hash(parse_config({"teachers": [{**T[0], "samples_via": "calls"}, T[1]]})) == plain
    )


def test_litellm_s_price_of_the_whole_reply_is_shared_by_the_samples(
    stub_server, tmp_path: Path
) -> None:
    from arbitrage.calls.budget import price_per_token

    config = TeacherConfig(
        name="t", model="openai/gpt-4o-mini", api_base=stub_server.url, api_key_env="STUB_KEY",
        samples=3,
    )  # fmt: skip
    gens = asyncio.run(Teacher(config).asample(PROMPT))
    assert [r["n"] for r in stub_server.requests] == [3]
    words = sum(len(str(m["content"]).split()) for m in stub_server.requests[0]["messages"])
    tokens = sum(len(g.text.split()) for g in gens)
    unit_in, unit_out = price_per_token("openai/gpt-4o-mini")
    assert unit_in > 0 and unit_out > 0  # litellm's price map prices it
    assert sum(g.cost_usd for g in gens) == pytest.approx(words * unit_in + tokens * unit_out)
    assert gens[1].cost_usd == pytest.approx(gens[1].usage.completion_tokens * unit_out)
