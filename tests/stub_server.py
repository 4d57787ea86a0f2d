"""A stub OpenAI-compatible HTTP server, so tests run litellm's real ``openai/`` code path.

Real sockets on 127.0.0.1 (ephemeral port), served from a background thread; each
request gets its own thread, so slow replies (``Reply.delay_s``) overlap.

    server = StubServer()
    server.set_handler("judge", lambda messages: "Score: 7")
    await litellm.acompletion(model="openai/judge", api_base=server.url, api_key="sk-test", ...)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml


@dataclass
class Reply:
    """What the stub answers: a completion, or (``status != 200``) an OpenAI-style error.

    ``fault`` breaks the reply on purpose: ``"drop"`` closes the connection without
    answering, ``"malformed"`` sends a 200 whose body is not JSON. ``body`` sends a
    200 with exactly this JSON instead of a completion (``{"choices": []}``).
    """

    text: str
    finish_reason: str = "stop"
    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    fault: str | None = None
    body: Any = None


Handler = Callable[[list[dict[str, Any]]], "str | Reply"]

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


def default_answer(model: str, messages: list[dict[str, Any]]) -> str:
    """``"Answer from <model>: "``, the first 8 words of the last user message and a digest
    of every message: prompts that start alike (in-language frames do), and follow-ups
    that read alike in different conversations, get distinct answers."""
    last: dict[str, Any] = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    content = last.get("content") or ""
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
        content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    said = "\x1f".join(str(m.get("content") or "") for m in messages)  # a conversation's all
    digest = hashlib.sha256(said.encode()).hexdigest()[:8]
    return f"Answer from {model}: " + " ".join(str(content).split()[:8]) + f" (#{digest})"


class Scripted:
    """A handler whose n-th request (counted from 1) gets ``faults[n]`` where there is
    one, and ``answer`` otherwise (a string, or a function of the messages); ``times``
    holds when each request arrived (``time.monotonic()``)."""

    def __init__(
        self, faults: dict[int, Reply], answer: str | Callable[[list[dict[str, Any]]], str]
    ) -> None:
        self.faults = faults
        self.answer = answer
        self.times: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, messages: list[dict[str, Any]]) -> str | Reply:
        with self._lock:
            self.times.append(time.monotonic())
            n = len(self.times)
        if n in self.faults:
            return self.faults[n]
        return self.answer if isinstance(self.answer, str) else self.answer(messages)


class PeakInFlight:
    """A handler that answers ``text`` after ``delay_s`` and records ``peak``: the most
    requests it was answering at once (a concurrency limit, seen from the server)."""

    def __init__(self, text: str = "ok", delay_s: float = 0.1) -> None:
        self.text = text
        self.delay_s = delay_s
        self.peak = 0
        self._now = 0
        self._lock = threading.Lock()

    def __call__(self, messages: list[dict[str, Any]]) -> str:
        with self._lock:
            self._now += 1
            self.peak = max(self.peak, self._now)
        time.sleep(self.delay_s)
        with self._lock:
            self._now -= 1
        return self.text


def _words(messages: list[dict[str, Any]]) -> int:
    return sum(len(str(m.get("content") or "").split()) for m in messages)


class StubServer:
    """The server; ``close()`` it when done (the ``stub_server`` fixture does)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._handlers: dict[str, Handler] = {}
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), _RequestHandler)
        self._httpd.stub = self
        host, port = self._httpd.server_address[:2]
        self.url = f"http://{host!s}:{port}/v1"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="stub-openai-server",
            daemon=True,
        )
        self._thread.start()

    def set_handler(self, model: str, fn: Handler) -> None:
        """Answer requests for ``model`` with ``fn(messages)``."""
        with self._lock:
            self._handlers[model] = fn

    def reset(self) -> None:
        """Forget handlers and recorded requests."""
        with self._lock:
            self._handlers.clear()
            self.requests.clear()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> StubServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _record(self, body: dict[str, Any]) -> Handler | None:
        with self._lock:
            self.requests.append(body)
            return self._handlers.get(str(body.get("model", "")))

    def _complete(self, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        model = str(body.get("model", ""))
        messages = body.get("messages") or []
        handler = self._record(body)
        result = handler(messages) if handler else default_answer(model, messages)
        reply = result if isinstance(result, Reply) else Reply(text=result)
        if reply.delay_s:
            time.sleep(reply.delay_s)
        if reply.fault is not None:
            raise _Fault(reply.fault)
        if reply.body is not None:
            return 200, reply.body, reply.headers
        if reply.status != 200:
            error = {
                "error": {
                    "message": reply.text or f"stub error {reply.status}",
                    "type": _ERROR_TYPES.get(reply.status, "server_error"),
                    "param": None,
                    "code": str(reply.status),
                }
            }
            return reply.status, error, reply.headers
        prompt_tokens = _words(messages)
        # ``n`` answers in one request: choice i > 0 is the text plus " (choice i)"; the
        # usage counts the prompt once and every choice's words
        n = int(body.get("n") or 1)
        texts = [reply.text] + [f"{reply.text} (choice {i})" for i in range(1, n)]
        completion_tokens = sum(len(text.split()) for text in texts)
        payload = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": reply.finish_reason,
                }
                for i, text in enumerate(texts)
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        return 200, payload, reply.headers

    def _models(self) -> dict[str, Any]:
        with self._lock:
            names = sorted(self._handlers)
        data = [{"id": n, "object": "model", "created": 0, "owned_by": "stub"} for n in names]
        return {"object": "list", "data": data}


class _Fault(Exception):
    """A reply broken on purpose (``Reply.fault``)."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # many concurrent connects must not be refused
    stub: StubServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client the test killed (or timed out) hung up: not the stub's fault
        super().handle_error(request, client_address)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the OpenAI client expects
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path.rstrip("/").endswith("/chat/completions"):
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                self._send(
                    400, {"error": {"message": "invalid JSON", "type": "invalid_request_error"}}
                )
                return
            try:
                status, payload, headers = self.server.stub._complete(body)
            except _Fault as fault:
                self._break(str(fault))
                return
            except Exception as exc:  # a broken test handler is a 500, not a hung client
                status, payload, headers = (
                    500,
                    {"error": {"message": repr(exc), "type": "server_error"}},
                    {},
                )
            self._send(status, payload, headers)
        else:
            self._send(
                404, {"error": {"message": f"no route {self.path}", "type": "not_found_error"}}
            )

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, self.server.stub._models())
        else:
            self._send(
                404, {"error": {"message": f"no route {self.path}", "type": "not_found_error"}}
            )

    def _break(self, fault: str) -> None:
        if fault == "malformed":
            data = b'{"id": "chatcmpl-broken", "choices": [{"message": '
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        else:  # "drop": hang up without a status line
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass


def stub_config(
    out: str, url: str, teachers: tuple[str, ...] = ("alpha", "beta"), **overrides: Any
) -> dict[str, Any]:
    """A run config whose teachers and judge (model ``judge``) are served by the stub at ``url``.

    Every model reads its key from ``STUB_KEY``; ``overrides`` replace top-level keys.
    The stub's answers ("Answer from alpha: ...") are in no language, so the reward's
    language gate is off.
    """
    config: dict[str, Any] = {
        "out": out,
        "seed": 1,
        "pool": {"n_prompts": 24, "languages": ["en", "fr"], "tasks": ["open_qa", "math"]},
        "teachers": [
            {"name": t, "model": f"openai/{t}", "api_base": url, "api_key_env": "STUB_KEY"}
            for t in teachers
        ],
        "reward": {
            "kind": "judge",
            "model": "openai/judge",
            "api_base": url,
            "api_key_env": "STUB_KEY",
            "language": {"mode": "off"},
        },
        "router": {"name": "reward"},
    }
    config.update(overrides)
    return config


def write_stub_run(tmp_path: Path, url: str, name: str = "run", **overrides: Any) -> Path:
    """``stub_config`` for the run directory ``tmp_path/name`` (``batch_size`` 6 unless
    overridden), written to ``tmp_path/name.yaml``; its path."""
    config = stub_config(str(tmp_path / name), url, **{"batch_size": 6, **overrides})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_stub_once(
    stub: StubServer, base: Path, handlers: dict[str, Callable[[list[dict[str, Any]]], Any]]
) -> Path:
    """``arbitrage run`` of ``stub_config`` into ``base/run``, teachers ``handlers``' names
    but ``judge``, after ``stub`` is reset and given ``handlers``; the config's path
    (``base/config.yaml``). A module runs it once and ``copy_run``s it per test."""
    import pytest  # here: benchmarks/scoring.py imports this module without pytest

    from arbitrage.commands.cli import main

    stub.reset()
    for name, handler in handlers.items():
        stub.set_handler(name, handler)
    teachers = tuple(name for name in handlers if name != "judge")
    path = base / "config.yaml"
    path.write_text(yaml.safe_dump(stub_config(str(base / "run"), stub.url, teachers=teachers)))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STUB_KEY", "sk-test")
        assert main(["run", str(path)]) == 0
    return path


def copy_run(config: Path, tmp_path: Path) -> Path:
    """A copy of the run directory ``config`` made, as ``tmp_path/run`` (a run directory
    is read as where it is now), and the config pointed at it as ``tmp_path/config.yaml``
    (``out`` is not part of a run's hash): one run that each of a module's tests may
    change as it likes. The copy's path."""
    data = yaml.safe_load(config.read_text())
    run = tmp_path / "run"
    shutil.copytree(data["out"], run)
    data["out"] = str(run)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data))
    return run


@contextlib.contextmanager
def arbitrage_run(config: Path, cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m arbitrage run CONFIG`` in a subprocess (stderr piped), SIGKILLed if it
    is still running when the block ends, and reaped."""
    cmd = [sys.executable, "-m", "arbitrage", "run", str(config)]
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        if proc.stderr:
            proc.stderr.close()


def wait_while_running(
    proc: subprocess.Popen[bytes], ready: Callable[[], bool], timeout_s: float
) -> None:
    """Until ``ready()`` holds or ``timeout_s`` have passed; the run must still be running
    then (the assertion shows its stderr if not)."""
    deadline = time.monotonic() + timeout_s
    while not ready() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
