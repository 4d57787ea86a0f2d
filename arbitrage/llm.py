"""The one place litellm is imported and set up (lazily: ``import litellm`` takes seconds)."""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable
from typing import Any

CompletionFn = Callable[..., Awaitable[Any]]


@functools.cache
def litellm() -> Any:
    """litellm, configured to never phone home: local cost map, no telemetry."""
    # Without this litellm fetches its price map from the internet at import.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm as _litellm

    _litellm.telemetry = False
    _litellm.suppress_debug_info = True
    _litellm.drop_params = True  # a param one provider lacks is dropped, not an error
    return _litellm


def completion_fn(model: str) -> CompletionFn:
    """``litellm.acompletion``, with the in-process ``local/`` provider registered if needed."""
    module = litellm()
    if model.startswith("local/"):
        from arbitrage.local import register

        register()
    return module.acompletion  # type: ignore[no-any-return]


def retryable_errors() -> tuple[type[BaseException], ...]:
    """litellm exception *types* worth retrying: rate limits, 5xx, timeouts, dropped connections."""
    exc = litellm().exceptions
    return (
        exc.RateLimitError,
        exc.InternalServerError,
        exc.ServiceUnavailableError,
        exc.BadGatewayError,
        exc.Timeout,
        exc.APIConnectionError,
    )


def scrub(text: str, secrets: list[str]) -> str:
    """Replace every secret value in ``text`` with ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
