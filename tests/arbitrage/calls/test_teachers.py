"""Teachers against the stub server: litellm's real openai code path over loopback."""

import asyncio

import pytest
from stub_server import PeakInFlight, Reply, Scripted

from arbitrage.calls.teachers import Teacher
from arbitrage.commands.cli import main
from arbitrage.errors import CallRejected
from arbitrage.records import Prompt

PROMPT = Prompt(text="Say hello.", language="en", task="open_qa")


def teacher(url: str, **params) -> Teacher:
    return Teacher.from_model("t", "openai/t", api_base=url, api_key_env="STUB_KEY", **params)


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("STUB_KEY", "sk-test-key")


def test_generation_carries_text_usage_and_latency(stub_server):
    stub_server.set_handler("t", lambda m: "Hello there, friend.")
    gen = asyncio.run(teacher(stub_server.url).agenerate(PROMPT))
    assert gen.ok and gen.status == "ok"
    assert gen.text == "Hello there, friend."
    assert (gen.usage.prompt_tokens, gen.usage.completion_tokens) == (2, 3)
    assert gen.prompt_id == PROMPT.id and gen.latency_s > 0
    body = stub_server.requests[-1]
    assert body["max_tokens"] == 512 and body["temperature"] == 0.7
    asyncio.run(teacher(stub_server.url).agenerate(PROMPT))
    assert stub_server.requests[-1]["seed"] == body["seed"]  # a rerun asks for the same sample


def test_max_concurrency_bounds_calls_in_flight(stub_server):
    slow = PeakInFlight(delay_s=0.15)
    stub_server.set_handler("t", slow)
    t = teacher(stub_server.url, max_concurrency=2)
    prompts = [Prompt(text=f"q{i}", language="en", task="open_qa") for i in range(8)]

    async def go():
        return await asyncio.gather(*(t.agenerate(p) for p in prompts))

    gens = asyncio.run(go())
    assert all(g.ok for g in gens)
    assert slow.peak == 2


def test_rate_limit_is_retried_then_succeeds(stub_server):
    flaky = Scripted({1: Reply("slow down", status=429)}, "fine")
    stub_server.set_handler("t", flaky)
    gen = asyncio.run(teacher(stub_server.url, retries=2).agenerate(PROMPT))
    assert gen.ok and gen.text == "fine"
    assert len(flaky.times) == 2


def test_auth_error_is_not_retried_and_stops_with_the_teachers_name(stub_server):
    stub_server.set_handler("t", lambda m: Reply("bad key sk-test-key", status=401))
    with pytest.raises(CallRejected) as info:
        asyncio.run(teacher(stub_server.url, retries=3).agenerate(PROMPT))
    assert str(info.value).startswith("teacher 't' (openai/t): the API key in STUB_KEY")
    assert "sk-test-key" not in str(info.value)
    assert len(stub_server.requests) == 1


def test_empty_answer_is_not_ok(stub_server):
    stub_server.set_handler("t", lambda m: "   ")
    gen = asyncio.run(teacher(stub_server.url).agenerate(PROMPT))
    assert gen.status == "empty" and not gen.ok


def test_missing_api_key_env_fails_before_any_call(tmp_path, stub_server, monkeypatch, capsys):
    monkeypatch.delenv("STUB_KEY")
    path = tmp_path / "c.yaml"
    path.write_text(
        f"teachers: [{{name: t, model: openai/t, api_base: '{stub_server.url}', api_key_env: STUB_KEY}}]\n"
        "reward: {kind: judge, model: openai/j}\n"
    )
    assert main(["run", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "teacher 't': environment variable STUB_KEY is not set" in capsys.readouterr().err
    assert stub_server.requests == []
    assert not (tmp_path / "o").exists()
