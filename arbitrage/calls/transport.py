"""The direct transport: OpenAI-compatible chat completions without litellm's per-call work.

A teacher with ``transport: direct`` (an ``api_base`` serving ``/chat/completions``:
vLLM, SGLang, TGI, llama.cpp server, any OpenAI-compatible proxy) posts its request
through one ``aiohttp.ClientSession`` per event loop, shared by every such teacher,
and gets a ``ChatReply`` back. litellm spends several milliseconds of CPU on each
call (client and logging objects, cost lookups); this is one JSON encode, one POST
and one JSON decode, so a teacher on a fast endpoint is no longer CPU-bound at a
few hundred calls per second (docs/long-runs.md, "Throughput").

Failures raise the litellm exception class litellm raises for the same failure
(429 ``RateLimitError`` with the response headers, 5xx ``InternalServerError`` /
``BadGatewayError`` / ``ServiceUnavailableError``, timeouts ``Timeout``, dropped
connections ``APIConnectionError``, 401 ``AuthenticationError``, 400
``BadRequestError``), so the teacher's retries, circuit breaker and AIMD limits treat
both transports alike. A 200 whose body is not a usable completion (not JSON, no
choices, no message, content that is not text) raises ``MalformedReply``: the same
check ``chat_reply`` makes of litellm's responses, so both transports name the reason.
The API key travels only in the ``Authorization`` header and is scrubbed from
every error message, before the message is cut to length. At most ``max_reply_chars``
characters' worth of body is read from the socket (``reply_byte_cap``): a longer reply
raises ``ReplyTooLong`` before it is held in memory.

Retries, limits, the breaker, the budget and the total ``timeout_s`` are the caller's
(``calls/client.py``); this is only the send step.
"""

from __future__ import annotations

import asyncio
import functools
import json
import urllib.parse
import urllib.request
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from arbitrage.calls.llm import scrub
from arbitrage.records import Usage

if TYPE_CHECKING:
    import aiohttp

# Keys of a litellm request that are not part of the OpenAI request body.
_NOT_IN_BODY = frozenset(
    {"model", "messages", "api_base", "api_key", "timeout", "max_retries", "num_retries"}
)
#: The longest answer a caller accepts unless told otherwise: no real answer is this long.
MAX_REPLY_CHARS = 1_000_000
_ERROR_BODY_BYTES = 64 * 1024  # what is read of an error reply: its message is cut to 300
_ERROR_CHARS = 300


def reply_byte_cap(max_chars: int) -> int:
    """The most bytes read of a reply whose text may hold ``max_chars`` characters: 6
    bytes a character (a ``\\uXXXX`` escape), plus room for the rest of the body."""
    return 6 * max_chars + 64 * 1024


class ReplyTooLong(Exception):
    """A reply longer than the caller accepts (``max_reply_chars``); ``str()`` says how
    long. Not retried: the candidate fails with ``error="reply too long: ..."``."""


class MalformedReply(Exception):
    """A 200 reply that is not a usable chat completion; ``str()`` is the reason ("no
    choices"). The teacher retries it like a 5xx and never lets it escape: once its
    retries are spent it is a failed candidate, ``error="malformed reply: no choices"``."""


@dataclass(frozen=True)
class ChatReply:
    """One parsed chat completion: what a ``Generation`` needs, nothing more."""

    text: str
    finish_reason: str
    usage: Usage


async def direct_completion(
    *,
    model: str,
    messages: list[dict[str, Any]],
    api_base: str,
    api_key: str | None = None,
    timeout: float = 120.0,
    max_reply_chars: int = MAX_REPLY_CHARS,
    **params: Any,
) -> ChatReply | list[ChatReply]:
    """POST one chat completion to ``{api_base}/chat/completions``: its ``ChatReply``,
    or, where ``n`` > 1 asks for several answers, one per choice (``chat_replies``).

    Takes ``litellm.acompletion``'s keyword arguments: ``model`` loses its provider
    prefix (``openai/``, ``hosted_vllm/``), every other parameter is a body field,
    except ``extra_headers`` (sent as headers), ``extra_body`` (merged into the
    body) and litellm's own retry counts (ignored: retries are the caller's).
    ``timeout`` bounds the whole request; ``max_reply_chars`` what is read of the reply.

    Raises:
        litellm.exceptions.*: as litellm raises them for the same failure.
        MalformedReply: a 200 whose body is not a usable completion.
        ReplyTooLong: a body longer than ``max_reply_chars`` characters could take.
    """
    import aiohttp

    body: dict[str, Any] = {"model": model.split("/", 1)[-1], "messages": messages}
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    for name, value in params.items():
        if name == "extra_headers":
            headers.update(value or {})
        elif name == "extra_body":
            body.update(value or {})
        elif name not in _NOT_IN_BODY:
            body[name] = value
    url = api_base.rstrip("/") + "/chat/completions"
    session = await _session()
    try:
        async with session.post(
            url,
            data=json.dumps(body, ensure_ascii=False).encode("utf-8"),
            headers=headers,
            timeout=_timeout(float(timeout)),
            proxy=_proxy(url),
        ) as response:
            if not 200 <= response.status < 300:
                raw = await _read(response, _ERROR_BODY_BYTES, cut=True)
                text = _error_text(raw, api_key)
                raise _error(model, api_key, response.status, text, dict(response.headers), url)
            raw = await _read(response, reply_byte_cap(max_reply_chars))
    except (asyncio.TimeoutError, TimeoutError):
        raise _error(model, api_key, 408, f"no answer within {timeout:g} s") from None
    except aiohttp.ClientError as exc:
        raise _error(model, api_key, 0, f"connection failed: {type(exc).__name__}: {exc}") from None
    try:
        data = json.loads(raw)
    except ValueError:  # UnicodeDecodeError included
        raise MalformedReply(f"the body is not JSON ({len(raw)} bytes)") from None
    if int(params.get("n") or 1) > 1:  # several samples in one request: every choice
        return chat_replies(data)
    return chat_reply(data)


async def _read(response: aiohttp.ClientResponse, cap: int, *, cut: bool = False) -> bytes:
    """The body, at most ``cap`` bytes of it: past that, the first ``cap`` (``cut``) or
    ``ReplyTooLong``, without reading on."""
    length = response.content_length
    if not cut and length is not None and length > cap:
        raise ReplyTooLong(f"{length:,} bytes, more than {cap:,}")
    body = bytearray()
    async for chunk in response.content.iter_any():
        body += chunk
        if len(body) > cap:
            if cut:
                return bytes(body[:cap])
            raise ReplyTooLong(f"more than {cap:,} bytes")
    return bytes(body)


def chat_reply(response: Any) -> ChatReply:
    """The text, finish reason and token counts of one chat completion: a decoded JSON
    body (the direct transport) or litellm's ``ModelResponse``.

    A ``null`` content is an empty answer (the teacher records it as ``empty``).

    Raises:
        MalformedReply: not a completion, no choices, no message, content not text.
    """
    if not isinstance(response, dict) and not hasattr(response, "choices"):
        raise MalformedReply(f"not a chat completion (a {type(response).__name__})")
    choices = _field(response, "choices")
    if not isinstance(choices, list) or not choices:
        raise MalformedReply("no choices")
    choice = choices[0]
    message = _field(choice, "message")
    if message is None:
        raise MalformedReply("no message")
    content = _field(message, "content")
    if content is not None and not isinstance(content, str):
        raise MalformedReply(f"content is a {type(content).__name__}, not text")
    usage = _field(response, "usage")
    try:
        counted = Usage(
            prompt_tokens=int(_field(usage, "prompt_tokens") or 0),
            completion_tokens=int(_field(usage, "completion_tokens") or 0),
        )
    except (TypeError, ValueError):
        raise MalformedReply("usage is not token counts") from None
    return ChatReply(
        text=content or "",
        finish_reason=str(_field(choice, "finish_reason") or ""),
        usage=counted,
    )


def chat_replies(response: Any) -> list[ChatReply]:
    """Every choice of a completion asked for ``n`` answers, one ``ChatReply`` each,
    the reply's usage split so the parts add up to what the server counted: the prompt
    (billed once) on the first choice, the completion tokens (the server counts only
    their sum) shared by the choices' lengths in characters, the remainder of the
    rounding to the longest.

    Raises:
        MalformedReply: as ``chat_reply``, of any choice.
    """
    first = chat_reply(response)  # the body's shape, the first choice and the usage
    choices = _field(response, "choices")
    texts = [first] + [chat_reply({"choices": [c]}) for c in choices[1:]]
    total = first.usage.completion_tokens
    chars = [len(t.text) for t in texts] if any(t.text for t in texts) else [1] * len(texts)
    shares = [total * c // sum(chars) for c in chars]
    shares[chars.index(max(chars))] += total - sum(shares)
    return [
        ChatReply(
            text=t.text,
            finish_reason=t.finish_reason,
            usage=Usage(
                prompt_tokens=first.usage.prompt_tokens if i == 0 else 0,
                completion_tokens=shares[i],
            ),
        )
        for i, t in enumerate(texts)
    ]


def _field(obj: Any, name: str) -> Any:
    """``obj[name]`` of a JSON object, else the attribute (litellm's objects); ``None``
    where there is neither."""
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def _error_text(raw: bytes, api_key: str | None) -> str:
    """The server's error message (OpenAI's ``{"error": {"message": ...}}``), else its
    body: the key scrubbed first, then cut to 300 characters (a cut through the key
    would leave a prefix that no longer matches it)."""
    text = raw.decode("utf-8", errors="replace")
    try:
        error = json.loads(text).get("error")
        message = error.get("message") if isinstance(error, dict) else error
        if message:
            text = str(message)
    except (ValueError, AttributeError):
        pass
    return scrub(text, [api_key or ""])[:_ERROR_CHARS]


def _error(
    model: str,
    api_key: str | None,
    status: int,
    text: str,
    headers: dict[str, str] | None = None,
    url: str = "",
) -> Exception:
    """litellm's exception for an HTTP status (0: no answer at all), the key scrubbed."""
    import httpx

    from arbitrage.calls.llm import litellm

    exc = litellm().exceptions
    message = scrub(f"direct transport: {text}", [api_key or ""])
    provider = model.split("/", 1)[0]
    if status == 0:
        return exc.APIConnectionError(message, provider, model)  # type: ignore[no-any-return]
    if status in (408, 504):
        return exc.Timeout(message, model, provider, exception_status_code=status)  # type: ignore[no-any-return]
    response = httpx.Response(
        status, headers=headers or {}, request=httpx.Request("POST", url or "http://teacher")
    )
    kinds = {
        400: exc.BadRequestError,
        401: exc.AuthenticationError,
        403: exc.PermissionDeniedError,
        404: exc.NotFoundError,
        422: exc.BadRequestError,
        429: exc.RateLimitError,
        502: exc.BadGatewayError,
        503: exc.ServiceUnavailableError,
    }
    kind = kinds.get(status) or (exc.InternalServerError if status >= 500 else None)
    if kind is None:
        error = exc.APIError(status, message, provider, model, response=response)
    else:
        error = kind(message, provider, model, response=response)
    error.litellm_response_headers = response.headers  # where litellm keeps Retry-After
    return error  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=64)
def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    import aiohttp

    return aiohttp.ClientTimeout(total=seconds)


@functools.lru_cache(maxsize=64)
def _proxy(url: str) -> str | None:
    """The ``HTTP(S)_PROXY`` for ``url`` unless ``NO_PROXY`` exempts it, looked up once."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme)
    if proxy is None or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy


# One session per event loop (aiohttp sessions belong to the loop that made them).
_SESSIONS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, Any]] = (
    weakref.WeakKeyDictionary()
)


async def _session() -> aiohttp.ClientSession:
    loop = asyncio.get_running_loop()
    held = _SESSIONS.get(loop)
    if held is not None and not held[0].closed:
        return held[0]  # type: ignore[no-any-return]
    import aiohttp

    # No connection cap here: each teacher's limits bound its calls in flight.
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    keeper = _close_at_shutdown(loop, session)
    _SESSIONS[loop] = (session, keeper)
    await keeper.__anext__()
    return session


async def _close_at_shutdown(
    loop: asyncio.AbstractEventLoop, session: aiohttp.ClientSession
) -> AsyncIterator[None]:
    # A suspended async generator is closed by the loop's shutdown_asyncgens(), which
    # asyncio.run() calls before closing the loop: the session closes cleanly there,
    # and the entry goes (the session refers to its loop, which would keep both alive).
    try:
        yield
    finally:
        _SESSIONS.pop(loop, None)
        await session.close()


async def close() -> None:
    """Close this event loop's shared session now (``asyncio.run`` does it at exit)."""
    held = _SESSIONS.get(asyncio.get_running_loop())
    if held is not None:
        await held[1].aclose()
