"""Shared fixtures: an offline environment and a stub OpenAI-compatible server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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

# One torch thread per test process (and its child processes; torch reads this when it
# is imported). Two OpenMP threads on 2 cores shared with another process (a second
# xdist worker, another test run) meet at a barrier after every small matmul, and each
# wait is a scheduler time slice: SmolLM2 then generated 128 tokens for 2 prompts in
# 115-190 s against 9-10 s on one thread. A value already set is kept.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """No backoff between attempts (``Retry-After`` is still honoured): retried calls
    take no random seconds. (Ray workers: ``ray_instance`` in test_ray_engine.py.)"""
    import tenacity

    from arbitrage.calls import client

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


# Converts SmolLM2 into $ARBITRAGE_CACHE_DIR in a child process (convert_apart, as a first
# load does) and prints its own peak memory and its child's, in kB.
_CONVERT_SCRIPT = """\
import resource
from arbitrage.calls.local import backends, models
spec = models.MODELS['smollm2-135m-instruct']
backends.convert_apart(spec, models.cache_dir(spec))
# VmHWM, not ru_maxrss: a forked process inherits its parent's ru_maxrss (the test
# runner's, with models loaded), while VmHWM starts afresh at exec
me = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM'))
child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(me, child)
"""


@pytest.fixture(scope="session")
def smol_conversion(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The one conversion of SmolLM2 from its GGUF file in a test session (~25 s): its
    cache root, the converting process's exit status and stderr, and the peak memory of
    that process and of its child, in kB.

    Under pytest-xdist the workers share it: the first one converts, under a file lock,
    and the others read what it wrote."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    root, record = shared / "smol-models", shared / "smol-conversion.json"
    with FileLock(str(shared / "smol-conversion.lock")):
        if not record.exists():
            env = {**os.environ, "ARBITRAGE_CACHE_DIR": str(root)}
            done = subprocess.run(
                [sys.executable, "-c", _CONVERT_SCRIPT],
                capture_output=True,
                text=True,
                env=env,
                timeout=600,
            )
            peaks = done.stdout.split() if done.returncode == 0 else [0, 0]
            result = {
                "root": str(root),
                "returncode": done.returncode,
                "stderr": done.stderr,
                "me_kb": int(peaks[0]),
                "child_kb": int(peaks[1]),
            }
            record.write_text(json.dumps(result))
        return dict(json.loads(record.read_text()))


@pytest.fixture(scope="session")
def smol_cache(smol_conversion: dict[str, Any]) -> Path:
    """A model cache root holding SmolLM2 converted from its GGUF file (``smol_conversion``)."""
    assert smol_conversion["returncode"] == 0, smol_conversion["stderr"]
    return Path(smol_conversion["root"])


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest work first, so that no long test is left for the end while the other
    worker idles (pytest-xdist hands out tests in this order): the Ray module (one
    worker runs all of it, ``xdist_group``), then the real-model tests, then the rest,
    each in collection order."""

    def weight(item: pytest.Item) -> int:
        if item.get_closest_marker("xdist_group") is not None:
            return 0
        return 1 if item.get_closest_marker("slow") is not None else 2

    items.sort(key=weight)
