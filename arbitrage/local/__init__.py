"""Bundled offline models, served in-process as the litellm provider ``local/``.

    from arbitrage.local import get_model, register

    register()  # then: litellm.acompletion(model="local/smollm2-135m-instruct", ...)
    get_model("smollm2-135m-instruct").option_probs([[{"role": "user", "content": "..."}]])

Importing this package imports neither torch, transformers nor litellm.
"""

from __future__ import annotations

import threading

from arbitrage.local.backends import LocalModel, LocalResult
from arbitrage.local.models import MODELS, ModelSpec, get_spec

_MODELS: dict[str, LocalModel] = {}
_LOAD_LOCK = threading.Lock()


def get_model(name: str) -> LocalModel:
    """The loaded model called ``name``, loaded once per process (thread-safe).

    Raises:
        ModelNotAvailable: unknown name, package not installed, or a hash mismatch.
    """
    model = _MODELS.get(name)
    if model is not None:
        return model
    with _LOAD_LOCK:
        if name not in _MODELS:
            from arbitrage.local.backends import load_backend

            _MODELS[name] = load_backend(get_spec(name))
        return _MODELS[name]


def register() -> None:
    """Make ``local/<model>`` usable with ``litellm.completion``/``acompletion`` (idempotent)."""
    from arbitrage.local.provider import register as _register

    _register()


__all__ = ["MODELS", "LocalModel", "LocalResult", "ModelSpec", "get_model", "register"]
