"""The direct transport against the stub server: same answers, same failures as litellm."""

import asyncio
import dataclasses
import json

import pytest
from stub_server import Reply, Scripted

from arbitrage.calls.teachers import Teacher
from arbitrage.calls.transport import direct_completion
from arbitrage.config import parse_config
from arbitrage.errors import CallRejected, ConfigError
from arbitrage.records import Prompt

KEY = "sk-direct-secret-1234"
PROMPT = Prompt(text="Say hello to the team.", language="en", task="open_qa")


def teacher(url: str, transport: str = "direct", model: str = "openai/t", **params) -> Teacher:
    return Teacher.from_model(
        "t", model, api_base=url, api_key_env="STUB_KEY", transport=transport, **params
    )


def generate(t: Teacher, prompt: Prompt = PROMPT):
    return asyncio.run(t.agenerate(prompt))


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("STUB_KEY", KEY)


@pytest.mark.parametrize(
    ("model", "prices"),
    [
        ("openai/gpt-4o-mini", {}),  # priced from litellm's map
        ("openai/t", {"input_cost_per_mtok": 2.0, "output_cost_per_mtok": 8.0}),
        ("hosted_vllm/t", {}),  # not in the map: free
    ],
)
def test_direct_gives_the_same_generation_and_request_as_litellm(stub_server, model, prices):
    stub_server.set_handler(model.split("/", 1)[1], lambda m: "  Hello, team!  ")
    via_litellm = generate(teacher(stub_server.url, "litellm", model, **prices))
    sent_by_litellm = stub_server.requests[-1]
    direct = generate(teacher(stub_server.url, "direct", model, **prices))
    sent_direct = stub_server.requests[-1]

    assert direct.ok and direct.text == "Hello, team!"
    assert dataclasses.replace(direct, latency_s=0.0, cost_usd=0.0) == dataclasses.replace(
        via_litellm, latency_s=0.0, cost_usd=0.0
    )
    assert direct.cost_usd == pytest.approx(via_litellm.cost_usd, rel=1e-9)
    assert (direct.cost_usd > 0) == (model != "hosted_vllm/t")
    for field in ("model", "messages", "temperature", "max_tokens", "seed"):
        assert sent_direct[field] == sent_by_litellm[field], field


def test_params_go_into_the_body(stub_server):
    generate(teacher(stub_server.url, params={"top_p": 0.5, "extra_body": {"top_k": 4}}))
    body = stub_server.requests[-1]
    assert body["top_p"] == 0.5 and body["top_k"] == 4
    assert "api_key" not in body and "timeout" not in body and "max_retries" not in body


def test_rate_limit_with_retry_after_is_honoured_then_retried(stub_server):
    limited = Scripted({1: Reply("slow down", status=429, headers={"Retry-After": "1"})}, "fine")
    times = limited.times
    stub_server.set_handler("t", limited)
    t = teacher(stub_server.url, max_concurrency=8, retries=2)
    gen = generate(t)
    assert gen.ok and gen.text == "fine" and len(times) == 2
    assert times[1] - times[0] >= 1.0  # waited as the server asked
    assert t.stats.rate_limited == 1 and t.stats.retries == 1
    assert t.limits.concurrency == 4  # a 429 halves the teacher's concurrency


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply("bad key", status=401), "AuthenticationError"),
        (Reply("forbidden", status=403), "PermissionDeniedError"),
        (Reply("no such model", status=404), "NotFoundError"),
    ],
)
def test_a_refused_key_or_a_missing_model_stops_at_once(stub_server, reply, error):
    """No retry and no other prompt gets past these (issue 13 item 12): the first one
    stops the run, the key not in its message."""
    stub_server.set_handler("t", lambda m: reply)
    t = teacher(stub_server.url, retries=3)
    with pytest.raises(CallRejected) as info:
        generate(t)
    assert info.value.status_code == reply.status and KEY not in str(info.value)
    assert len(stub_server.requests) == 1 and t.stats.retries == 0

    async def call():  # the transport's own exception: the one litellm raises
        messages = [{"role": "user", "content": "hi"}]
        await direct_completion(
            model="openai/t", messages=messages, api_base=stub_server.url, api_key=KEY
        )

    with pytest.raises(Exception) as raw:
        asyncio.run(call())
    assert type(raw.value).__name__ == error


@pytest.mark.parametrize(
    ("reply", "error", "retried"),
    [
        (Reply("boom", status=500), "InternalServerError", True),
        (Reply("bad gateway", status=502), "BadGatewayError", True),
        (Reply("overloaded", status=503), "ServiceUnavailableError", True),
        (Reply("", fault="malformed"), "malformed reply", True),
        (Reply("", fault="drop"), "APIConnectionError", True),
        (Reply("bad request", status=400), "BadRequestError", False),
        (Reply("unprocessable", status=422), "BadRequestError", False),
    ],
)
def test_failures_map_to_litellm_exceptions_and_retry_as_litellm_would(
    stub_server, reply, error, retried
):
    stub_server.set_handler("t", lambda m: reply)
    t = teacher(stub_server.url, retries=1)
    gen = generate(t)
    assert gen.status == "error" and gen.error.startswith(f"{error}:"), gen.error
    assert len(stub_server.requests) == (2 if retried else 1)
    if reply.status >= 400 and reply.text:
        assert reply.text in gen.error  # the server's own message is kept


MALFORMED = {
    "no choices": {"choices": []},
    "choices missing": {"id": "chatcmpl-1", "object": "chat.completion"},
    "no message": {"choices": [{"index": 0, "finish_reason": "stop"}]},
    "content not text": {"choices": [{"message": {"role": "assistant", "content": 5}}]},
    "not an object": [1, 2],
}
# What the direct transport names; litellm raises its own InternalServerError for all but
# an empty list of choices, which it passes on (issue 13: an IndexError in the teacher).
REASONS = {
    "no choices": "malformed reply: no choices",
    "choices missing": "malformed reply: no choices",
    "no message": "malformed reply: no message",
    "content not text": "malformed reply: content is a int, not text",
    "not an object": "malformed reply: not a chat completion (a list)",
}


@pytest.mark.parametrize("transport", ["litellm", "direct"])
@pytest.mark.parametrize("kind", list(MALFORMED))
def test_a_malformed_reply_is_a_failed_candidate_with_its_reason(stub_server, transport, kind):
    stub_server.set_handler("t", lambda m: Reply("", body=MALFORMED[kind]))
    t = teacher(stub_server.url, transport, retries=1)
    gen = generate(t)
    assert gen.status == "error" and not gen.ok and not gen.text
    assert len(stub_server.requests) == 2  # retried as a 5xx is, within ``retries``
    assert t.stats.failed == 1 and t.stats.retries == 1
    if transport == "direct" or kind == "no choices":
        assert gen.error == REASONS[kind]
    else:
        assert gen.error.startswith("InternalServerError:")
    assert KEY not in gen.error


@pytest.mark.parametrize("transport", ["litellm", "direct"])
def test_an_empty_list_of_choices_is_retried_and_the_answer_kept(stub_server, transport):
    stub_server.set_handler("t", Scripted({1: Reply("", body={"choices": []})}, "Hi, team."))
    t = teacher(stub_server.url, transport, retries=2)
    gen = generate(t)
    assert gen.ok and gen.text == "Hi, team."
    assert len(stub_server.requests) == 2 and t.stats.retries == 1


@pytest.mark.parametrize("transport", ["litellm", "direct"])
def test_null_content_is_an_empty_answer_not_a_failure(stub_server, transport):
    body = {"choices": [{"message": {"role": "assistant", "content": None}}]}
    stub_server.set_handler("t", lambda m: Reply("", body=body))
    gen = generate(teacher(stub_server.url, transport, retries=2))
    assert gen.status == "empty" and len(stub_server.requests) == 1


def test_timeout_is_a_retryable_overload(stub_server):
    # The stub hangs up after the client gave up (no reply written to a closed socket).
    stub_server.set_handler("t", lambda m: Reply("late", delay_s=0.6, fault="drop"))
    t = teacher(stub_server.url, retries=0, timeout_s=0.2)
    gen = generate(t)
    assert gen.error.startswith("Timeout:")
    assert t.stats.rate_limited == 1  # timeouts slow the teacher down, as 429s do


def test_truncated_answer_is_recorded_as_truncated(stub_server):
    stub_server.set_handler("t", lambda m: Reply("cut off mid", finish_reason="length"))
    gen = generate(teacher(stub_server.url))
    assert gen.status == "truncated" and not gen.ok
    assert gen.text == "cut off mid" and gen.finish_reason == "length"


@pytest.mark.parametrize("status", [400, 429, 500])  # 401: test_a_refused_key_...
def test_api_key_is_never_in_an_error_message(stub_server, status):
    stub_server.set_handler("t", lambda m: Reply(f"invalid key {KEY}", status=status))
    gen = generate(teacher(stub_server.url, retries=0))
    assert gen.status == "error"
    assert KEY not in gen.error and "***" in gen.error
    assert KEY not in json.dumps(stub_server.requests)  # sent as a header, never in the body

    async def call():
        messages = [{"role": "user", "content": "hi"}]
        await direct_completion(
            model="openai/t", messages=messages, api_base=stub_server.url, api_key=KEY
        )

    with pytest.raises(Exception) as err:  # the exception itself, before the teacher sees it
        asyncio.run(call())
    assert KEY not in str(err.value) and KEY not in repr(err.value)


def test_api_key_is_sent_as_a_bearer_header():
    from aiohttp import web

    seen: list[str] = []

    async def complete(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        choice = {"message": {"content": "hi"}, "finish_reason": "stop"}
        return web.json_response({"choices": [choice], "usage": {}})

    async def go():
        app = web.Application()
        app.router.add_post("/v1/chat/completions", complete)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            return await teacher(f"http://127.0.0.1:{port}/v1").agenerate(PROMPT)
        finally:
            await runner.cleanup()

    gen = asyncio.run(go())
    assert gen.ok and seen == [f"Bearer {KEY}"]


def test_one_session_per_event_loop_closed_with_the_loop(stub_server):
    from arbitrage.calls import transport

    t = teacher(stub_server.url)

    async def two_calls():
        p2 = Prompt(text="Another one.", language="en", task="open_qa")
        gens = await asyncio.gather(t.agenerate(PROMPT), t.agenerate(p2))
        return gens, await transport._session(), asyncio.get_running_loop()

    gens, session, loop = asyncio.run(two_calls())
    assert all(g.ok for g in gens)
    assert session.closed and loop not in transport._SESSIONS  # nothing left behind
    assert generate(t).ok  # a new event loop gets a new session


@pytest.mark.parametrize(
    ("teacher_config", "message"),
    [
        (
            {"name": "v", "model": "openai/q", "transport": "direct"},
            "bad value for 'teachers[0].transport': 'direct' needs api_base",
        ),
        (
            {"name": "v", "model": "anthropic/c", "api_base": "http://h/v1", "transport": "direct"},
            "model 'anthropic/c' does not start with openai/ or hosted_vllm/",
        ),
        (
            {"name": "v", "model": "openai/q", "api_base": "http://h/v1", "transport": "raw"},
            "bad value for 'teachers[0].transport': Input should be 'litellm' or 'direct'",
        ),
    ],
)
def test_direct_transport_config_errors_name_the_key(teacher_config, message):
    with pytest.raises(ConfigError, match=r"^bad value") as err:
        parse_config({"teachers": [teacher_config]})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_direct_transport_is_opt_in():
    config = parse_config({"teachers": [{"name": "v", "model": "openai/q"}]})
    assert config.teachers[0].transport == "litellm"
