"""Shared fixtures: an offline environment and a stub OpenAI-compatible server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from stub_server import StubServer

# Nothing phones home: no price map fetch, no Hugging Face Hub calls.
OFFLINE_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # else litellm fetches its price map at import
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}


# Set at import, before any test module imports datasets / huggingface_hub / litellm:
# those read these variables once, when they are imported.
os.environ.update(OFFLINE_ENV)


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """No backoff between attempts (``Retry-After`` is still honoured): retried calls
    take no random seconds. (Ray workers: ``ray_instance`` in test_ray_engine.py.)"""
    import tenacity

    from arbitrage.engine import client

    monkeypatch.setattr(client, "BACKOFF", tenacity.wait_none())


@pytest.fixture(scope="session")
def _stub_server_session() -> Iterator[StubServer]:
    server = StubServer()
    yield server
    server.close()


@pytest.fixture
def stub_server(_stub_server_session: StubServer) -> StubServer:
    """The stub server, with no handlers and no recorded requests."""
    _stub_server_session.reset()
    return _stub_server_session


@pytest.fixture(scope="session")
def smol_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model cache root holding SmolLM2 converted from its GGUF file (once per session, ~25 s)."""
    from arbitrage.local import backends, models

    root = tmp_path_factory.mktemp("models")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ARBITRAGE_CACHE_DIR", str(root))
        spec = models.MODELS["smollm2-135m-instruct"]
        backends.convert(spec, models.cache_dir(spec))
    return root
