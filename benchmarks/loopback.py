"""A loopback OpenAI-compatible server with fixed or heavy-tailed latency, in its own
process, for benchmarks.

    with loopback_server(latency_ms=50) as url:              # http://127.0.0.1:PORT/v1
        ...
    with loopback_server(latency_ms=200, sigma=1.0) as url:  # lognormal, median 200 ms
        ...
        stats = server_stats(url)   # per model: requests, mean latency, calls in flight

Requests for model ``judge`` get a judge reply (``Score: N``, N from the answer judged;
``length_judge``: N grows with the answer's length, the bias of real judges);
every other model gets a short answer that names the model and the prompt. With
``sigma`` > 0 a request's latency is lognormal (``latency_ms`` its median), drawn from a
hash of the model and the messages: the same request always waits as long. The server
is a separate process so that the client, not the server, is what a benchmark measures.
"""

from __future__ import annotations

import asyncio
import json
import math
import multiprocessing
import random
import socket
import time
import urllib.request
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

ANSWER = "A short answer."


class _Meter:
    """Requests, summed latency and the time integral of requests in flight, per model."""

    def __init__(self) -> None:
        self.requests = 0
        self.latency_s = 0.0
        self.in_flight = 0
        self.area = 0.0
        self.first = math.inf
        self.last = 0.0
        self.last_start = 0.0
        self.events: list[tuple[float, int]] = []  # (time, +1 start / -1 end)
        self._t = 0.0

    def _tick(self, now: float) -> None:
        if self.in_flight:
            self.area += self.in_flight * (now - self._t)
        self._t = now

    def start(self, now: float) -> None:
        self._tick(now)
        self.first = min(self.first, now)
        self.last_start = max(self.last_start, now)
        self.in_flight += 1
        self.events.append((now, 1))

    def end(self, now: float, latency: float) -> None:
        self._tick(now)
        self.in_flight -= 1
        self.events.append((now, -1))
        self.requests += 1
        self.latency_s += latency
        self.last = max(self.last, now)

    def to_dict(self) -> dict[str, float]:
        return {
            "requests": self.requests,
            "latency_s": self.latency_s,
            "area": self.area,
            "first": self.first if self.requests else 0.0,
            "last": self.last,
            "last_start": self.last_start,
            "events": self.events,
        }


def _delay(body: dict[str, Any], median_s: float, sigma: float) -> float:
    if sigma <= 0:
        return median_s
    seed = zlib.crc32(json.dumps([body.get("model"), body.get("messages")]).encode())
    return median_s * random.Random(seed).lognormvariate(0.0, sigma)


def _judged(content: str) -> str:
    """The answer inside a judge prompt (between ``[Answer]`` and ``[End of answer]``)."""
    return content.split("[Answer]", 1)[-1].split("[End of answer]", 1)[0].strip()


def _serve(port: int, latency_s: float, sigma: float) -> None:
    from aiohttp import web

    meters: dict[str, _Meter] = {}

    async def complete(request: web.Request) -> web.Response:
        body = await request.json()
        model = str(body.get("model", ""))
        meter = meters.setdefault(model, _Meter())
        start = time.monotonic()
        meter.start(start)
        delay = _delay(body, latency_s, sigma)
        await asyncio.sleep(delay)
        content = str((body.get("messages") or [{}])[-1].get("content", ""))
        if model == "judge":
            text = f"Fine.\nScore: {zlib.crc32(content.encode()) % 9 + 1}"
        elif model == "length_judge":  # a judge that prefers longer answers, as real ones do
            text = f"Thorough.\nScore: {min(10, 1 + len(_judged(content)) // 40)}"
        else:
            text = f"{ANSWER} ({model}, {zlib.crc32(content.encode()) % 1000})"
        meter.end(time.monotonic(), delay)
        n = int(body.get("n") or 1)
        return web.json_response(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [  # n choices where the request asks for n
                    {
                        "index": i,
                        "message": {"role": "assistant", "content": f"{text} #{i}" if i else text},
                        "finish_reason": "stop",
                    }
                    for i in range(n)
                ],
                "usage": {
                    "prompt_tokens": 5,
                    "completion_tokens": 3 * n,
                    "total_tokens": 5 + 3 * n,
                },
            }
        )

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({m: meter.to_dict() for m, meter in meters.items()})

    async def reset(request: web.Request) -> web.Response:
        meters.clear()
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", complete)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, backlog=4096)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_stats(url: str, *, reset: bool = False) -> dict[str, dict[str, float]]:
    """Per model: ``requests``, summed ``latency_s``, ``area`` (request-seconds in flight),
    ``first`` / ``last`` / ``last_start`` (server clock), ``events`` ((time, +1 for a
    start, -1 for an end)); ``reset`` clears them after reading."""
    root = url.removesuffix("/v1")
    with urllib.request.urlopen(f"{root}/stats", timeout=10) as reply:
        data: dict[str, dict[str, float]] = json.loads(reply.read())
    if reset:
        urllib.request.urlopen(urllib.request.Request(f"{root}/reset", method="POST"), timeout=10)
    return data


@contextmanager
def loopback_server(latency_ms: float, sigma: float = 0.0) -> Iterator[str]:
    """Start the server, wait until it accepts connections, yield its base URL."""
    port = free_port()
    server = multiprocessing.Process(
        target=_serve, args=(port, latency_ms / 1000, sigma), daemon=True
    )
    server.start()
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.terminate()
