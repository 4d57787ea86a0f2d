"""A loopback OpenAI-compatible server with fixed latency, in its own process, for benchmarks.

    with loopback_server(latency_ms=50) as url:   # http://127.0.0.1:PORT/v1
        ...

Requests for model ``judge`` get a judge reply (``Score: 7``); every other model gets
``ANSWER``. The server is a separate process so that the client, not the server, is
what a benchmark measures.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

ANSWER = "A short answer."
JUDGE_REPLY = "Fine.\nScore: 7"


def _serve(port: int, latency_s: float) -> None:
    from aiohttp import web

    async def complete(request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(latency_s)
        text = JUDGE_REPLY if body.get("model") == "judge" else ANSWER
        return web.json_response(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", ""),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
            }
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", complete)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, backlog=4096)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def loopback_server(latency_ms: float) -> Iterator[str]:
    """Start the server, wait until it accepts connections, yield its base URL."""
    port = free_port()
    server = multiprocessing.Process(target=_serve, args=(port, latency_ms / 1000), daemon=True)
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
