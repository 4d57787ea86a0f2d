"""The one call path (``arbitrage/calls/client.py``) as teachers, the writer and judges see
it: the total timeout, retries with tenacity, the reply cap, key scrubbing, the budget's
bound for every script, the cache's spend; through litellm's real code path and the
direct transport against servers on 127.0.0.1."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import tenacity
from stub_server import Reply, Scripted

from arbitrage.calls import client, send
from arbitrage.calls.breaker import CircuitBreaker
from arbitrage.calls.budget import Budget, prompt_tokens
from arbitrage.calls.cache import CallCache
from arbitrage.calls.llm import is_local
from arbitrage.calls.teachers import Teacher
from arbitrage.config import TeacherConfig, parse_config
from arbitrage.errors import BudgetExceeded, ConfigError
from arbitrage.records import Prompt
from reward.base import Score
from reward.judge import JudgeReward

KEY = "sk-client-secret-0123456789"
PROMPT = Prompt(text="Name a river in France.", language="en", task="open_qa")
TRANSPORTS = ["litellm", "direct"]


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUB_KEY", KEY)


def teacher(url: str, transport: str = "litellm", **params: Any) -> Teacher:
    return Teacher.from_model(
        "t", "openai/t", api_base=url, api_key_env="STUB_KEY", transport=transport, **params
    )


def judge(url: str, **params: Any) -> JudgeReward:
    params.setdefault("structured", False)
    return JudgeReward("openai/judge", api_base=url, api_key_env="STUB_KEY", **params)


def completion(text: str, usage: dict[str, int] | None = None) -> dict[str, Any]:
    return {
        "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": usage or {"prompt_tokens": 1, "completion_tokens": 1},
    }


Handler = Callable[[Any], Awaitable[Any]]


@contextlib.asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[str]:
    """An aiohttp server on 127.0.0.1 answering ``/v1/chat/completions`` with ``handler``."""
    from aiohttp import web

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    finally:
        await runner.cleanup()


async def drip(request: Any) -> Any:
    """A server that answers at once and then sends its body a byte every 0.1 s (4 s of
    blanks, which JSON allows, then the completion): no single read ever waits long."""
    from aiohttp import web

    await request.read()
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    with contextlib.suppress(ConnectionError):
        for _ in range(40):
            if request.transport is None or request.transport.is_closing():
                return response  # the client gave up
            await response.write(b" ")
            await asyncio.sleep(0.1)
        await response.write(json.dumps(completion("The Loire.")).encode())
    return response


# --- the total timeout ---------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_timeout_s_bounds_the_whole_attempt_against_a_server_that_drips(stub_server, transport):
    """Issue 13 item 7: through litellm, a server that drips its body held a ``timeout_s``
    call for as long as it dripped (the SDK's timeout bounds each read)."""
    # litellm's first call imports and sets up for seconds: not what is timed here
    assert asyncio.run(teacher(stub_server.url, transport).agenerate(PROMPT)).ok

    async def go():
        async with serving(drip) as url:
            t = teacher(url, transport, timeout_s=0.5, retries=1)
            start = time.monotonic()
            gen = await t.agenerate(PROMPT)
            return t, gen, time.monotonic() - start

    t, gen, elapsed = asyncio.run(go())
    assert gen.status == "error" and gen.error.startswith("Timeout:"), gen.error
    assert elapsed < 2.5  # two attempts of 0.5 s, not 4 s of dripping each
    assert t.stats.requests == 2 and t.stats.retries == 1
    assert t.stats.rate_limited == 2  # a timeout slows the teacher down, as a 429 does
    assert t.limits.concurrency < t.config.max_concurrency


def test_a_bundled_local_model_has_no_timeout(monkeypatch):
    """It answers in this process, from its own queue: a cancelled generation would keep
    its thread busy, and a retry would queue behind it."""

    async def slow_local(**request: Any) -> dict[str, Any]:
        await asyncio.sleep(0.3)
        return completion("Bonjour.")

    monkeypatch.setattr(send, "litellm_completion", lambda model: slow_local)
    t = Teacher.from_model("smol", "local/smollm2-135m-instruct", timeout_s=0.1)
    assert asyncio.run(t.agenerate(PROMPT)).text == "Bonjour."
    assert t.stats.requests == 1


def test_a_judge_call_has_a_timeout_and_is_retried(stub_server):
    """Issue 13 item 8: a judge had no timeout at all (litellm's 6000 s applied)."""
    stub_server.set_handler("judge", lambda m: Reply("Score: 7", delay_s=1.0, fault="drop"))
    j = judge(stub_server.url, timeout_s=0.2, retries=1)
    start = time.monotonic()
    assert j.score(PROMPT, "The Loire.") == Score(None)
    assert time.monotonic() - start < 0.9
    assert len(stub_server.requests) == 2 and j.stats.retries == 1


# --- judges: 429, retries, the breaker, the direct transport --------------------------


def test_a_judge_honours_retry_after_and_slows_down(stub_server):
    limited = Scripted(
        {1: Reply("slow down", status=429, headers={"Retry-After": "1"})}, "Score: 7"
    )
    stub_server.set_handler("judge", limited)
    j = judge(stub_server.url, max_concurrency=8)
    assert j.score(PROMPT, "The Loire.") == Score(6 / 9, {"judge_raw": 7.0})
    assert len(limited.times) == 2 and limited.times[1] - limited.times[0] >= 1.0
    assert j.stats.rate_limited == 1 and j.stats.retries == 1
    assert j.limits.concurrency == 4  # a 429 halves the judge's concurrency


def test_a_judge_retries_a_5xx_then_scores(stub_server):
    stub_server.set_handler("judge", Scripted({1: Reply("down", status=503)}, "Score: 9"))
    assert judge(stub_server.url).score(PROMPT, "x").details == {"judge_raw": 9.0}
    assert len(stub_server.requests) == 2


def test_a_judge_that_keeps_failing_is_circuit_broken_and_never_crashes(stub_server):
    stub_server.set_handler("judge", lambda m: Reply("down", status=500))
    j = judge(stub_server.url, retries=0, breaker=CircuitBreaker("judge", failures=2))
    scores = [j.score(PROMPT, f"answer {i}") for i in range(5)]
    assert scores == [Score(None)] * 5
    assert len(stub_server.requests) == 2  # then the circuit is open: no more calls
    assert j.breaker.state == "open"


def test_a_judge_over_the_direct_transport_scores_as_through_litellm(stub_server):
    stub_server.set_handler("judge", lambda m: "Fine.\nScore: 8")
    via_litellm = judge(stub_server.url).score(PROMPT, "The Loire.")
    direct = judge(stub_server.url, transport="direct")
    assert direct.score(PROMPT, "The Loire.") == via_litellm == Score(7 / 9, {"judge_raw": 8.0})
    sent = stub_server.requests[-1]
    assert sent["model"] == "judge" and "timeout" not in sent and "api_key" not in sent
    assert direct.stats.ok == 1 and direct.stats.requests == 1


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"transport": "direct", "api_base": None}, "needs api_base"),
        ({"transport": "raw"}, "transport must be"),
        ({"timeout_s": 0}, "timeout_s must be above 0"),
        ({"retries": -1}, "retries must be at least 0"),
    ],
)
def test_bad_judge_call_settings_are_config_errors(params, message):
    params = {"api_base": "http://127.0.0.1:9/v1", **params}
    with pytest.raises(ConfigError, match=message):
        JudgeReward("openai/judge", **params)


def test_a_judge_shows_in_the_live_panel_beside_the_teachers(stub_server):
    from rich.console import Console

    from arbitrage.commands.live import TeacherPanel

    stub_server.set_handler("judge", lambda m: "Score: 5")
    t, j = teacher(stub_server.url), judge(stub_server.url)
    asyncio.run(t.agenerate(PROMPT))
    j.score(PROMPT, "The Loire.")
    j.score(PROMPT, "The Seine.")
    panel = TeacherPanel()
    panel.attach([t, j])
    console = Console(record=True, width=80)
    console.print(panel)
    rows = {line.split()[0]: line.split() for line in console.export_text().splitlines() if line}
    assert rows["judge"][1] == "up" and rows["judge"][2] == "0/16"


# --- secrets ---------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_key_across_the_cut_of_an_error_message_never_leaks(stub_server, transport):
    """Issue 13 item 9: the direct transport cut a server's message to 300 characters
    before scrubbing it, so a key across the cut leaked as a prefix."""
    stub_server.set_handler("t", lambda m: Reply("e" * 290 + KEY, status=400))
    gen = asyncio.run(teacher(stub_server.url, transport).agenerate(PROMPT))
    assert gen.status == "error" and "BadRequestError" in gen.error
    assert KEY[:10] not in gen.error


def test_a_judge_never_logs_a_key_across_a_cut(stub_server, caplog):
    stub_server.set_handler("judge", lambda m: Reply("e" * 290 + KEY, status=400))
    with caplog.at_level("WARNING"):
        assert judge(stub_server.url, transport="direct").score(PROMPT, "x") == Score(None)
    assert "BadRequestError" in caplog.text and KEY[:10] not in caplog.text


# --- the reply cap ---------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_reply_over_max_reply_chars_is_a_failed_call_not_retried(
    stub_server, transport, tmp_path
):
    """Issue 13 item 16: a 50 MB answer was taken whole and sent to the judge."""
    stub_server.set_handler("t", lambda m: "x" * 2_000)
    with CallCache(tmp_path / "cache.sqlite") as cache:
        t = teacher(stub_server.url, transport, max_reply_chars=1_000)
        t.cache = cache
        gen = asyncio.run(t.agenerate(PROMPT))
        assert len(cache) == 0  # a failure: a rerun asks again
    assert gen.status == "error" and not gen.text
    assert gen.error == "reply too long: 2,000 characters, more than max_reply_chars (1,000)"
    assert len(stub_server.requests) == 1 and t.stats.failed == 1


def test_the_direct_transport_stops_reading_at_the_cap(stub_server):
    stub_server.set_handler("t", lambda m: "x" * 200_000)
    t = teacher(stub_server.url, "direct", max_reply_chars=1_000)
    gen = asyncio.run(t.agenerate(PROMPT))
    assert gen.status == "error" and gen.error.startswith("reply too long: ")
    assert "bytes, more than 71,536" in gen.error  # read no further than 1,000 chars could take
    assert len(stub_server.requests) == 1


def test_a_judge_reply_over_the_cap_is_unscored(stub_server):
    stub_server.set_handler("judge", lambda m: "Score: 7\n" + "blah " * 100)
    assert judge(stub_server.url, max_reply_chars=100).score(PROMPT, "x") == Score(None)


# --- retries ----------------------------------------------------------------------------


def test_the_default_backoff_is_exponential_with_full_jitter():
    def wait(attempt: int) -> float:
        state = tenacity.RetryCallState(None, None, (), {})
        state.attempt_number = attempt
        return client.DEFAULT_BACKOFF(state)

    for attempt in range(1, 10):
        waits = [wait(attempt) for _ in range(200)]
        ceiling = min(20.0, 0.5 * 2 ** (attempt - 1))
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling / 2 and min(waits) < ceiling / 2  # spread, not fixed


def test_the_backoff_is_waited_between_attempts_and_tests_set_it_to_zero(stub_server, monkeypatch):
    faults = {1: Reply("down", status=500), 2: Reply("down", status=500)}
    assert client.BACKOFF is not client.DEFAULT_BACKOFF  # the suite's: tenacity.wait_none()
    fast = Scripted(faults, "fine")
    stub_server.set_handler("t", fast)
    assert asyncio.run(teacher(stub_server.url).agenerate(PROMPT)).ok
    assert fast.times[2] - fast.times[0] < 0.5

    monkeypatch.setattr(client, "BACKOFF", tenacity.wait_fixed(0.3))
    slow = Scripted(faults, "fine")
    stub_server.set_handler("t", slow)
    t = teacher(stub_server.url)
    assert asyncio.run(t.agenerate(PROMPT)).ok
    assert [b - a >= 0.3 for a, b in itertools.pairwise(slow.times)] == [True, True]
    assert t.stats.retries == 2


def test_only_retryable_failures_are_retried_through_a_fake_completion_function():
    calls: list[int] = []

    async def flaky(**request: Any) -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("reset")
        if len(calls) == 2:
            await asyncio.sleep(5)  # past timeout_s: a retryable timeout
        if len(calls) == 3:
            raise ValueError("a bug in the provider")
        return completion("unreachable")

    config = TeacherConfig(name="fake", model="openai/fake", retries=5, timeout_s=0.2)
    t = Teacher(config, completion_fn=flaky)
    gen = asyncio.run(t.agenerate(PROMPT))
    assert len(calls) == 3 and gen.error == "ValueError: a bug in the provider"
    assert t.stats.retries == 2 and t.stats.rate_limited == 1  # the timeout


# --- the budget --------------------------------------------------------------------------


def per_character(messages: list[dict[str, Any]]) -> Reply:
    """A server that bills one token per character of the prompt (as for Chinese)."""
    chars = sum(len(m["content"]) for m in messages)
    return Reply("", body=completion("好", {"prompt_tokens": chars, "completion_tokens": 1}))


def test_chinese_prompts_never_overspend_a_per_character_server(stub_server):
    """Issue 13 item 2: the reservation counted 4 characters a token, so Chinese prompts
    against a server that bills one token per character overspent 2x and more."""
    stub_server.set_handler("t", per_character)
    budget = Budget(1000.0)  # USD; a call costs ~$301 ($1 a token)
    t = Teacher(
        teacher(
            stub_server.url, max_tokens=1, input_cost_per_mtok=1e6, output_cost_per_mtok=1e6
        ).config,
        budget=budget,
    )
    prompts = [Prompt(text=f"{i}" + "河流" * 150, language="zh", task="open_qa") for i in range(8)]

    async def go():
        return await asyncio.gather(*(t.agenerate(p) for p in prompts), return_exceptions=True)

    results = asyncio.run(go())
    answered = [r for r in results if not isinstance(r, BaseException)]
    assert any(isinstance(r, BudgetExceeded) for r in results)
    assert answered and all(g.ok for g in answered)
    assert budget.spent_usd == pytest.approx(sum(g.cost_usd for g in answered))
    assert budget.spent_usd <= 1000.0
    for g, p in zip(results, prompts, strict=True):
        if not isinstance(g, BaseException):
            assert t.worst_case_usd(p.messages()) >= g.cost_usd


@pytest.mark.parametrize(
    "text",
    [
        "河流" * 200,  # Chinese
        "Река течёт на север. " * 30,  # Cyrillic
        "नदी उत्तर की ओर बहती है। " * 30,  # Devanagari
        "def f(x):\n    return [i ** 2 for i in range(x)]  # 0123456789\n" * 10,  # code, digits
        "🌊🐟" * 100,  # emoji
    ],
)
def test_the_prompt_bound_is_above_the_tokenizer_count(text):
    from arbitrage.calls.llm import litellm

    messages = [{"role": "user", "content": text}]
    counted = litellm().token_counter(model="gpt-4o-mini", messages=messages)
    assert prompt_tokens(messages) >= counted  # without a tokenizer
    assert prompt_tokens(messages, "openai/gpt-4o-mini") >= counted
    assert prompt_tokens(messages) >= sum(not c.isascii() for c in text)  # one a character


def test_the_cache_knows_what_its_calls_cost(stub_server, tmp_path):
    stub_server.set_handler("t", Scripted({2: Reply("bad", status=400)}, "one two three"))
    stub_server.set_handler("judge", lambda m: "Score: 4")
    prices = {"input_cost_per_mtok": 1.0, "output_cost_per_mtok": 2.0}
    with CallCache(tmp_path / "cache.sqlite") as cache:
        t = teacher(stub_server.url, **prices)
        t.cache = cache
        gens = [
            asyncio.run(t.agenerate(Prompt(text=f"q{i}", language="en", task="open_qa")))
            for i in range(3)
        ]
        j = judge(stub_server.url, cache=cache, **prices)
        j.score(PROMPT, "The Loire.")
        assert [g.status for g in gens] == ["ok", "error", "ok"]
        paid = sum(g.cost_usd for g in gens) + j.spent_usd
        assert j.spent_usd > 0 and cache.paid_usd() == pytest.approx(paid)
    with CallCache(tmp_path / "cache.sqlite") as again:  # as a rerun sees it
        assert again.paid_usd() == pytest.approx(paid)
    assert CallCache(tmp_path / "empty.sqlite").paid_usd() == 0.0


# --- decided once ----------------------------------------------------------------------


def test_is_local():
    assert is_local("local/smollm2-135m-instruct")
    assert not is_local("openai/local/x") and not is_local("localhost/x")


def test_llm_imports_nothing_of_arbitrage_so_local_can_build_on_it():
    path = Path(__file__).resolve().parents[3] / "arbitrage" / "calls" / "llm.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = [
        n.module if isinstance(n, ast.ImportFrom) else a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in n.names
    ]
    assert not [n for n in names if n and n.startswith("arbitrage")]


def test_the_writer_uses_writer_max_tokens(stub_server):
    from arbitrage.prompts.personas import load_personas
    from arbitrage.prompts.pool import awrite, plan

    stub_server.set_handler("t", lambda m: "Explain how rivers form.")
    slots = plan(load_personas("bundled"), ["en"], ["open_qa"], 2, seed=0)
    prompts = asyncio.run(awrite(slots, teacher(stub_server.url), max_tokens=77))
    assert [p.meta["writer"] for p in prompts] == ["t", "t"]
    assert [r["max_tokens"] for r in stub_server.requests] == [77, 77]


# --- config -----------------------------------------------------------------------------


def judge_config(**reward: Any) -> dict[str, Any]:
    return {
        "teachers": [{"name": "a", "model": "openai/a"}],
        "reward": {"kind": "judge", "model": "openai/judge", **reward},
    }


def test_judge_call_keys_are_config_keys():
    config = parse_config(
        judge_config(api_base="http://h/v1", transport="direct", timeout_s=5, retries=0)
    )
    assert (config.reward.transport, config.reward.timeout_s, config.reward.retries) == (
        "direct",
        5,
        0,
    )
    assert parse_config(judge_config()).reward.max_reply_chars == 1_000_000
    teacher_config = {"name": "a", "model": "openai/a", "max_reply_chars": 10}
    assert parse_config({"teachers": [teacher_config]}).teachers[0].max_reply_chars == 10


@pytest.mark.parametrize(
    ("reward", "message"),
    [
        ({"timeout_s": 0}, "bad value for 'reward.timeout_s'"),
        ({"retries": -1}, "bad value for 'reward.retries'"),
        ({"max_reply_chars": 0}, "bad value for 'reward.max_reply_chars'"),
        ({"transport": "direct"}, "bad value for 'reward.transport': 'direct' needs api_base"),
        ({"transport": "grpc"}, "bad value for 'reward.transport'"),
    ],
)
def test_bad_judge_call_keys_name_the_key(reward, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(judge_config(**reward))


def test_make_scorer_passes_the_judge_call_keys():
    from arbitrage.factories import make_scorer

    config = parse_config(judge_config(timeout_s=5, retries=0, max_reply_chars=100))
    scorer = make_scorer(config.reward)
    assert isinstance(scorer, JudgeReward)
    assert (scorer.timeout_s, scorer.client.retries, scorer.client.max_reply_chars) == (5, 0, 100)


def test_judge_call_keys_on_a_reward_that_makes_no_calls_are_an_error():
    from arbitrage.factories import make_scorer

    config = parse_config({**judge_config(), "reward": {"kind": "local", "timeout_s": 5}})
    with pytest.raises(ConfigError, match="timeout_s applies to kinds 'judge' and 'pairwise'"):
        make_scorer(config.reward)
