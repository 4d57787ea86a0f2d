"""A loopback server of the providers' batch APIs, answering as ``stub_server`` does.

    OpenAI     POST /v1/files (multipart, purpose=batch), GET /v1/files/{id}/content,
               POST /v1/batches, GET /v1/batches[/{id}], POST /v1/batches/{id}/cancel
    Anthropic  POST /v1/messages/batches, GET /v1/messages/batches/{id}[/results],
               POST /v1/messages/batches/{id}/cancel
    online     POST /v1/chat/completions (the same answers, for comparison and fallback)

Every retrieve moves a batch one step: validating → in_progress → finalizing →
completed (Anthropic: in_progress → ended), unless ``hold`` is set (it stays
in_progress). ``plan[n]`` says how the n-th batch made (from 0) ends instead:
``failed``, ``expired:K`` or ``cancelled:K`` (the first K requests answered, the rest
in the error file). ``made`` logs each batch's request ids; ``paid`` counts the
answers served per request id: what a provider would bill.
"""

from __future__ import annotations

import collections
import email.parser
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from stub_server import StubServer, _RequestHandler, _Server

_OPENAI_STEPS = ("validating", "in_progress", "finalizing", "completed")


@dataclass
class _Batch:
    id: str
    api: str
    lines: list[dict[str, Any]]
    plan: str
    step: int = 0
    cancelling: bool = False
    status: str = "validating"
    output: str | None = None
    errors: str | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    input_file_id: str = ""


class BatchServer(StubServer):
    """The server; ``close()`` it when done."""

    def __init__(self) -> None:  # StubServer's, with the batch routes
        self.requests: list[dict[str, Any]] = []
        self._handlers = {}
        self._lock = threading.Lock()
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, _Batch] = {}
        self.made: list[tuple[str, list[str]]] = []
        self.paid: collections.Counter[str] = collections.Counter()
        self.retrieves = 0
        self.plan: dict[int, str] = {}
        self.hold = threading.Event()
        self.keys: set[str] = set()  # every key a request carried
        self.refuse: set[str] = set()  # keys answered with a 401 that quotes them
        self._httpd = _Server(("127.0.0.1", 0), _BatchHandler)
        self._httpd.stub = self
        host, port = self._httpd.server_address[:2]
        self.url = f"http://{host!s}:{port}/v1"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    # -- OpenAI ---------------------------------------------------------------------

    def upload(self, data: bytes) -> dict[str, Any]:
        file_id = f"file-{uuid.uuid4().hex[:16]}"
        with self._lock:
            self.files[file_id] = data
        return {"id": file_id, "object": "file", "purpose": "batch", "bytes": len(data)}

    def create(self, api: str, lines: list[dict[str, Any]], input_file_id: str = "") -> _Batch:
        with self._lock:
            n = len(self.made)
            prefix = "msgbatch_" if api == "anthropic" else "batch_"
            batch = _Batch(f"{prefix}{uuid.uuid4().hex[:16]}", api, lines, self.plan.get(n, ""))
            batch.input_file_id = input_file_id
            if api == "anthropic":
                batch.status = "in_progress"
            self.batches[batch.id] = batch
            self.made.append((batch.id, [str(x["custom_id"]) for x in lines]))
        return batch

    def advance(self, batch: _Batch) -> None:
        """One retrieve's worth of progress."""
        with self._lock:
            self.retrieves += 1
        if batch.status in ("completed", "failed", "expired", "cancelled", "ended"):
            return
        if batch.plan == "failed" and batch.api == "openai":
            batch.status = "failed"
            return
        if batch.cancelling:
            self._end(batch, "cancelled", 0, "batch_cancelled")
            return
        if self.hold.is_set() and batch.step >= 1:
            return  # stays in progress
        batch.step += 1
        kind, _, k = batch.plan.partition(":")
        if kind in ("expired", "cancelled") and batch.step >= 2:
            self._end(batch, kind, int(k or 0), f"batch_{kind}")
        elif batch.api == "anthropic" and batch.step >= 2:
            self._end(batch, "ended", len(batch.lines), "")
        elif batch.api == "openai" and batch.step >= len(_OPENAI_STEPS) - 1:
            self._end(batch, "completed", len(batch.lines), "")
        elif batch.api == "openai":
            batch.status = _OPENAI_STEPS[batch.step]

    def _end(self, batch: _Batch, status: str, answered: int, code: str) -> None:
        out, err = [], []
        for i, line in enumerate(batch.lines):
            rid = str(line["custom_id"])
            if i < answered:
                body = line["body"] if batch.api == "openai" else dict(line["params"])
                _, payload, _ = self._complete(dict(body))
                with self._lock:
                    self.paid[rid] += 1
                out.append((rid, payload))
            else:
                err.append(rid)
        if batch.api == "anthropic":
            batch.status = "ended"
            batch.results = [_anthropic_row(rid, p) for rid, p in out] + [
                {"custom_id": rid, "result": {"type": status if status != "ended" else "expired"}}
                for rid in err
            ]
            return
        batch.status = status
        ok = [_openai_row(rid, 200, p) for rid, p in out]
        bad = [
            {
                "id": f"req-{uuid.uuid4().hex[:8]}",
                "custom_id": rid,
                "response": None,
                "error": {"code": code, "message": f"this request {status}"},
            }
            for rid in err
        ]
        if ok:
            batch.output = self.upload(_jsonl(ok))["id"]
        if bad:
            batch.errors = self.upload(_jsonl(bad))["id"]

    def openai_view(self, batch: _Batch) -> dict[str, Any]:
        answered = sum(1 for _ in batch.lines) if batch.status == "completed" else 0
        return {
            "id": batch.id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "input_file_id": batch.input_file_id,
            "status": batch.status,
            "output_file_id": batch.output,
            "error_file_id": batch.errors,
            "errors": {"data": [{"code": "invalid", "message": "validation failed"}]}
            if batch.status == "failed"
            else None,
            "request_counts": {"total": len(batch.lines), "completed": answered, "failed": 0},
        }

    def anthropic_view(self, batch: _Batch) -> dict[str, Any]:
        ended = batch.status == "ended"
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": "canceling" if batch.cancelling and not ended else batch.status,
            "request_counts": {"processing": 0 if ended else len(batch.lines)},
            "results_url": f"{self.url}/messages/batches/{batch.id}/results" if ended else None,
        }


def _openai_row(rid: str, status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"req-{uuid.uuid4().hex[:8]}",
        "custom_id": rid,
        "response": {"status_code": status, "request_id": uuid.uuid4().hex, "body": body},
        "error": None,
    }


def _anthropic_row(rid: str, payload: dict[str, Any]) -> dict[str, Any]:
    choice = payload["choices"][0]
    usage = payload["usage"]
    return {
        "custom_id": rid,
        "result": {
            "type": "succeeded",
            "message": {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "text", "text": choice["message"]["content"]}],
                "stop_reason": "end_turn" if choice["finish_reason"] == "stop" else "max_tokens",
                "usage": {
                    "input_tokens": usage["prompt_tokens"],
                    "output_tokens": usage["completion_tokens"],
                },
            },
        },
    }


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode("utf-8")


def _multipart(content_type: str, body: bytes) -> dict[str, bytes]:
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser().parsebytes(head + body)
    parts: dict[str, bytes] = {}
    for part in message.get_payload():  # type: ignore[union-attr]
        name = part.get_param("name", header="content-disposition")
        parts[str(name)] = part.get_payload(decode=True) or b""
    return parts


class _BatchHandler(_RequestHandler):
    server: _Server

    @property
    def batches(self) -> BatchServer:
        return self.server.stub  # type: ignore[return-value]

    def _key(self) -> bool:
        """Record the request's key; False (a 401 sent) if it is refused."""
        key = self.headers.get("x-api-key") or self.headers.get("Authorization", "")[7:]
        with self.batches._lock:
            self.batches.keys.add(key)
        if key in self.batches.refuse:
            self._send(401, {"error": {"message": f"Incorrect API key provided: {key}"}})
            return False
        return True

    def do_POST(self) -> None:
        path = self.path.split("?")[0].rstrip("/")
        if path.endswith("/chat/completions"):
            super().do_POST()
            return
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not self._key():
            return
        srv = self.batches
        if path.endswith("/v1/files"):
            parts = _multipart(self.headers.get("Content-Type", ""), raw)
            if parts.get("purpose") != b"batch":
                self._send(400, {"error": {"message": "purpose must be batch"}})
                return
            self._send(200, srv.upload(parts["file"]))
        elif path.endswith("/v1/batches"):
            body = json.loads(raw)
            data = srv.files.get(body.get("input_file_id", ""))
            if data is None:
                self._send(404, {"error": {"message": "no such file"}})
                return
            lines = [json.loads(x) for x in data.decode().splitlines() if x.strip()]
            self._send(200, srv.openai_view(srv.create("openai", lines, body["input_file_id"])))
        elif path.endswith("/v1/messages/batches"):
            lines = json.loads(raw)["requests"]
            self._send(200, srv.anthropic_view(srv.create("anthropic", lines)))
        elif path.endswith("/cancel"):
            batch = srv.batches.get(path.split("/")[-2])
            if batch is None:
                self._send(404, {"error": {"message": "no such batch"}})
                return
            batch.cancelling = True
            if batch.api == "openai":
                batch.status = "cancelling"
                self._send(200, srv.openai_view(batch))
            else:
                self._send(200, srv.anthropic_view(batch))
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_GET(self) -> None:
        if not self._key():
            return
        srv = self.batches
        path = self.path.split("?")[0].rstrip("/")
        bits = path.split("/")
        if path.endswith("/content"):
            data = srv.files.get(bits[-2])
            if data is None:
                self._send(404, {"error": {"message": "no such file"}})
                return
            self._raw(data)
        elif path.endswith("/v1/batches"):
            views = [srv.openai_view(b) for b in srv.batches.values() if b.api == "openai"]
            self._send(200, {"object": "list", "data": views[::-1], "has_more": False})
        elif path.endswith("/results") and bits[-2] in srv.batches:
            self._raw(_jsonl(srv.batches[bits[-2]].results))
        elif bits[-1] in srv.batches:
            batch = srv.batches[bits[-1]]
            srv.advance(batch)
            view = srv.openai_view if batch.api == "openai" else srv.anthropic_view
            self._send(200, view(batch))
        else:
            super().do_GET()

    def _raw(self, data: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/jsonl")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def wait_for(check: Any, timeout_s: float = 60.0) -> bool:
    """Poll ``check()`` until it is true or ``timeout_s`` passes."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.02)
    return False
