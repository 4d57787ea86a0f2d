"""Calls per second through the Teacher layer vs a raw aiohttp client.

A loopback OpenAI-compatible aiohttp server with 50 ms latency runs in a separate
process (so the client, not the server, is what is measured). Each row sends the
same number of distinct prompts at a fixed concurrency.

    python benchmarks/throughput.py [--calls 512] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def _serve(port: int, latency_s: float) -> None:
    from aiohttp import web

    async def complete(request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(latency_s)
        return web.json_response(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", ""),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "A short answer."},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
            }
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", complete)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, backlog=1024)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _teacher(url: str, calls: int, concurrency: int) -> float:
    from arbitrage.records import Prompt
    from arbitrage.teachers import Teacher

    teacher = Teacher.from_model(
        "bench", "openai/bench", api_base=url, max_concurrency=concurrency, retries=0
    )
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench")
    prompts = [
        Prompt(text=f"q{concurrency}-{i}", language="en", task="open_qa") for i in range(calls)
    ]
    await teacher.agenerate(prompts[0])  # warm: connection pool, litellm lazy imports
    start = time.perf_counter()
    gens = await asyncio.gather(*(teacher.agenerate(p) for p in prompts))
    elapsed = time.perf_counter() - start
    assert all(g.ok for g in gens), next(g.error for g in gens if not g.ok)
    return calls / elapsed


async def _raw(url: str, calls: int, concurrency: int) -> float:
    import aiohttp

    limit = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> None:
            async with limit:
                body = {"model": "bench", "messages": [{"role": "user", "content": f"q{i}"}]}
                async with session.post(f"{url}/chat/completions", json=body) as resp:
                    await resp.json()

        await one(-1)
        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(calls)))
        return calls / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=512)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args()
    port = _free_port()
    server = multiprocessing.Process(
        target=_serve, args=(port, args.latency_ms / 1000), daemon=True
    )
    server.start()
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.1)
    print(
        f"{args.calls} calls per row, server latency {args.latency_ms:g} ms, {os.cpu_count()} CPUs"
    )
    print(f"{'concurrency':>11} | {'Teacher calls/s':>15} | {'raw aiohttp calls/s':>19} | ideal")
    try:
        for concurrency in (1, 64, 256):
            calls = min(args.calls, 64) if concurrency == 1 else args.calls
            ours = asyncio.run(_teacher(url, calls, concurrency))
            raw = asyncio.run(_raw(url, calls, concurrency))
            ideal = concurrency / (args.latency_ms / 1000)
            print(f"{concurrency:>11} | {ours:>15.1f} | {raw:>19.1f} | {ideal:.0f}")
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
