"""The one place litellm is imported and set up (lazily: ``import litellm`` takes seconds).

This module imports nothing of ``arbitrage``: the in-process ``local/`` provider
(``arbitrage.calls.local``) builds on it, never the other way round.
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


def takes_n(model: str, transport: str) -> bool:
    """Whether one request can ask ``model`` for several answers (OpenAI's ``n``): the
    direct transport (OpenAI-compatible servers take it), else where litellm lists ``n``
    among the provider's parameters (``get_supported_openai_params``: OpenAI and the
    OpenAI-compatible providers, ``hosted_vllm/``, Gemini; not Anthropic, not Ollama).
    Never the bundled ``local/`` models, nor a model string litellm places nowhere."""
    if is_local(model):
        return False
    if transport == "direct":
        return True
    module = litellm()
    try:
        name, provider, _, _ = module.get_llm_provider(model=model)
    except module.exceptions.BadRequestError:
        return False
    params = module.get_supported_openai_params(model=name, custom_llm_provider=provider)
    return "n" in (params or ())
