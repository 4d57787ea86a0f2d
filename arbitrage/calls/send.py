"""The send step of a call, and what its failures mean (``calls/client.py`` runs it).

    litellm    ``litellm.acompletion``: any provider, the bundled ``local/`` models too
    direct     ``calls/transport.py``: an OpenAI-compatible ``api_base``, no litellm
    given      any function with acompletion's signature (a test's fake, a Ray worker)

Decided once per client: which exceptions are worth another attempt, which of those
mean "slow down" (a 429, a timeout), what an attempt past ``timeout_s`` raises, and
the keyword arguments only that send step takes; and whether one request may carry
several samples (``arbitrage.calls.llm.takes_n``).
"""

from __future__ import annotations

import email.utils
import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from arbitrage.calls.llm import CompletionFn, is_local
from arbitrage.calls.transport import MalformedReply


@dataclass(frozen=True)
class SendPlan:
    """What sends an attempt, and what its failures mean."""

    send: CompletionFn
    retry_on: tuple[type[BaseException], ...]  # worth another attempt
    overload: tuple[type[BaseException], ...]  # of those, "slow down": halve concurrency
    extra: Mapping[str, Any]  # keyword arguments only this send step takes
    timed_out: Callable[[float], BaseException]  # what an attempt past timeout_s raises
    # False for the bundled models: they answer in this process, from a queue of their
    # own; a cancelled generation would keep its thread busy and a retry queue behind it.
    timed: bool = True


def send_plan(
    model: str, transport: str, send: CompletionFn | None, max_reply_chars: int
) -> SendPlan:
    """The plan of a client: ``send`` if given, else litellm or the direct transport.

    A malformed 200 (``MalformedReply``) is retried like a 5xx, within ``retries``:
    litellm raises ``InternalServerError`` for most malformed bodies already, and both
    transports must treat the same reply alike.
    """
    retry_on: tuple[type[BaseException], ...]
    if send is not None:
        retry_on = (ConnectionError, TimeoutError, MalformedReply)
        return SendPlan(send, retry_on, (TimeoutError,), {}, _timeout_error)
    from arbitrage.calls.llm import overload_errors, retryable_errors

    retry_on = (*retryable_errors(), MalformedReply)
    timed_out = functools.partial(_litellm_timeout, model)
    if transport == "direct":
        from arbitrage.calls.transport import direct_completion

        extra = {"max_reply_chars": max_reply_chars}
        return SendPlan(direct_completion, retry_on, overload_errors(), extra, timed_out)
    # Our retries, not the SDK's, so 429s are seen, counted and honoured.
    local = is_local(model)
    extra = {} if local else {"max_retries": 0}
    return SendPlan(
        litellm_completion(model), retry_on, overload_errors(), extra, timed_out, not local
    )


def litellm_completion(model: str) -> CompletionFn:
    """``litellm.acompletion``, with the in-process ``local/`` provider registered if needed."""
    from arbitrage.calls.llm import litellm

    module = litellm()
    if is_local(model):
        from arbitrage.calls.local import register

        register()
    return module.acompletion  # type: ignore[no-any-return]


def completion_cost(response: Any) -> float:
    """litellm's price of a response (raises for a model not in its price map)."""
    from arbitrage.calls.llm import litellm

    return float(litellm().completion_cost(completion_response=response))


def retry_after(exc: BaseException) -> float | None:
    """Seconds from the ``Retry-After`` header litellm keeps on the exception, if any."""
    headers = getattr(exc, "litellm_response_headers", None)
    if headers is None:
        headers = getattr(getattr(exc, "response", None), "headers", None)
    value = headers.get("retry-after") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_tz(str(value))
        return None if parsed is None else max(0.0, email.utils.mktime_tz(parsed) - time.time())


def _timeout_error(seconds: float) -> BaseException:
    return TimeoutError(f"no answer within {seconds:g} s (timeout_s)")


def _litellm_timeout(model: str, seconds: float) -> BaseException:
    from arbitrage.calls.llm import litellm

    exc = litellm().exceptions
    message = f"no answer within {seconds:g} s (timeout_s)"
    return exc.Timeout(message, model, model.split("/", 1)[0])  # type: ignore[no-any-return]
