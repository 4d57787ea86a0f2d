"""litellm's real ``openai/`` code path talks to the stub server."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

import pytest
from stub_server import Reply, StubServer

from arbitrage.calls.llm import litellm


async def _ask(server: StubServer, model: str, text: str, **kwargs: Any) -> Any:
    return await litellm().acompletion(
        model=f"openai/{model}",
        api_base=server.url,
        api_key="sk-test",
        messages=[{"role": "user", "content": text}],
        max_retries=0,
        **kwargs,
    )


def test_default_answer_and_usage(stub_server: StubServer) -> None:
    text = "one two three four five six seven eight nine ten"
    response = asyncio.run(_ask(stub_server, "teacher-a", text))
    assert response.choices[0].message.content == (
        "Answer from teacher-a: one two three four five six seven eight (#92632e6f)"
    )  # the digest of the whole question: questions that start alike get distinct answers
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.prompt_tokens == 10
    assert response.usage.completion_tokens == 12
    assert stub_server.requests[0]["model"] == "teacher-a"
    assert stub_server.requests[0]["messages"][0]["content"] == text


def test_handler_reply_and_finish_reason(stub_server: StubServer) -> None:
    stub_server.set_handler("t", lambda messages: Reply("cut off", finish_reason="length"))
    response = asyncio.run(_ask(stub_server, "t", "hi"))
    assert response.choices[0].message.content == "cut off"
    assert response.choices[0].finish_reason == "length"


def test_handler_sees_messages(stub_server: StubServer) -> None:
    stub_server.set_handler("echo", lambda messages: messages[-1]["content"].upper())
    response = asyncio.run(_ask(stub_server, "echo", "shout this"))
    assert response.choices[0].message.content == "SHOUT THIS"


def test_429_is_rate_limit_error(stub_server: StubServer) -> None:
    stub_server.set_handler("busy", lambda messages: Reply("slow down", status=429))
    with pytest.raises(litellm().RateLimitError):
        asyncio.run(_ask(stub_server, "busy", "hi"))


def test_500_is_internal_server_error(stub_server: StubServer) -> None:
    stub_server.set_handler("broken", lambda messages: Reply("boom", status=500))
    with pytest.raises(litellm().InternalServerError):
        asyncio.run(_ask(stub_server, "broken", "hi"))


def test_401_is_authentication_error(stub_server: StubServer) -> None:
    stub_server.set_handler("locked", lambda messages: Reply("bad key", status=401))
    with pytest.raises(litellm().AuthenticationError):
        asyncio.run(_ask(stub_server, "locked", "hi"))


def test_64_concurrent_requests(stub_server: StubServer) -> None:
    stub_server.set_handler("slow", lambda messages: Reply(messages[-1]["content"], delay_s=0.2))

    async def main() -> list[Any]:
        return await asyncio.gather(*(_ask(stub_server, "slow", f"q{i}") for i in range(64)))

    responses = asyncio.run(main())
    assert [r.choices[0].message.content for r in responses] == [f"q{i}" for i in range(64)]
    assert len(stub_server.requests) == 64


def test_models_endpoint(stub_server: StubServer) -> None:
    stub_server.set_handler("m1", lambda messages: "x")
    with urllib.request.urlopen(f"{stub_server.url}/models", timeout=5) as response:
        body = json.load(response)
    assert [m["id"] for m in body["data"]] == ["m1"]
