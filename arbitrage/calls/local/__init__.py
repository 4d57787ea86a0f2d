"""Bundled offline models, served in-process as the litellm provider ``local/``.

    from arbitrage.calls.local import get_model, register

    register()  # then: litellm.acompletion(model="local/smollm2-135m-instruct", ...)
    get_model("smollm2-135m-instruct").option_probs([[{"role": "user", "content": "..."}]])

Importing this package imports neither torch, transformers nor litellm.
"""

from __future__ import annotations

from arbitrage.calls.local.backends import LocalModel, LocalResult, get_model
from arbitrage.calls.local.models import MODELS, ModelSpec


def register() -> None:
    """Make ``local/<model>`` usable with ``litellm.completion``/``acompletion`` (idempotent)."""
    from arbitrage.calls.local.provider import register as _register

    _register()


__all__ = ["MODELS", "LocalModel", "LocalResult", "ModelSpec", "get_model", "register"]
