"""The one place litellm is imported and set up (lazily: ``import litellm`` takes seconds).

This module imports nothing of ``arbitrage``: the in-process ``local/`` provider
(``arbitrage.local``) builds on it, never the other way round.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

CompletionFn = Callable[..., Awaitable[Any]]

#: The litellm provider of the bundled in-process models: ``local/<model>``.
LOCAL_PROVIDER = "local"


def is_local(model: str) -> bool:
    """Whether ``model`` is a bundled model answering in this process (``local/...``):
    free, no API key, no HTTP."""
    return model.startswith(f"{LOCAL_PROVIDER}/")


@functools.cache
def litellm() -> Any:
    """litellm, configured to never phone home: local cost map, no telemetry, no
    tokenizer downloads."""
    # Without this litellm fetches its price map from the internet at import.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm as _litellm

    _litellm.telemetry = False
    _litellm.suppress_debug_info = True
    _litellm.drop_params = True  # a param one provider lacks is dropped, not an error
    # token_counter would fetch some models' tokenizers from the Hugging Face Hub.
    _litellm.disable_hf_tokenizer_download = True
    return _litellm


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


def overload_errors() -> tuple[type[BaseException], ...]:
    """Of the retryable litellm exceptions, those that mean "slow down": rate limits and
    timeouts (they halve the model's concurrency)."""
    exc = litellm().exceptions
    return (exc.RateLimitError, exc.Timeout)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret value in ``text`` with ``***``.

    Scrub the whole text before cutting it to length: a cut through a secret leaves a
    prefix that no longer matches it.
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
