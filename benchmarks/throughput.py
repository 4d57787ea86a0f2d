"""Calls per second through the Teacher layer, per configuration, vs a raw aiohttp client.

A loopback OpenAI-compatible aiohttp server with a fixed latency (50 ms) runs in its
own process, so the client, not the server, is what is measured. Each configuration
runs in fresh worker processes (litellm's settings are process-wide), is warmed up,
then sends distinct prompts at concurrency c: a semaphore of c in the driver, as for
the raw client, and the teacher's ``max_concurrency`` = c. A cell is the best of
``--repeat`` runs (the machine may be shared: the best run is the least disturbed).
The fast rows (direct, raw) send 4 × ``--calls`` a run, so that a run lasts long enough
to meet the garbage collector as a long run does. About 2 minutes on an idle 2-core
machine.

    python benchmarks/throughput.py [--calls 512] [--latency-ms 50] [--repeat 2] [--processes 2]

Rows (docs/long-runs.md, "Throughput", explains them):

    litellm, prices each answer twice   the Teacher before: litellm prices the answer,
                                        then we called completion_cost() again
    litellm                             now: litellm's own price is reused
    litellm, httpx transport            litellm.disable_aiohttp_transport = True
    litellm + gc.freeze()               the import-time object graph frozen
    litellm, N processes                N workers, each with c/N calls in flight
    direct transport                    transport: direct
    direct + gc.freeze()
    direct, N processes
    raw aiohttp                         the ceiling: a bare client on the same server
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import os
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from loopback import loopback_server

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("BENCH_KEY", "sk-bench")


@dataclass(frozen=True)
class Row:
    label: str
    kind: str  # "litellm", "twice", "direct" or "raw"
    processes: int = 1
    freeze: bool = False
    httpx: bool = False


def _sender(row: Row, url: str) -> tuple[Any, Any]:
    """``send(tag, calls, concurrency)`` for this row and its ``close()``; run in a worker."""
    if row.kind == "raw":
        import aiohttp

        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

        async def raw(tag: str, calls: int, concurrency: int) -> None:
            gate = asyncio.Semaphore(concurrency)

            async def one(i: int) -> None:
                async with gate:
                    body = {
                        "model": "bench",
                        "messages": [{"role": "user", "content": tag + str(i)}],
                    }
                    async with session.post(f"{url}/chat/completions", json=body) as resp:
                        await resp.json()

            await asyncio.gather(*(one(i) for i in range(calls)))

        return raw, session.close

    from arbitrage.calls.llm import litellm
    from arbitrage.calls.teachers import Teacher, completion_cost
    from arbitrage.config import TeacherConfig
    from arbitrage.records import Prompt

    if row.httpx:
        litellm().disable_aiohttp_transport = True

    class PricedTwice(Teacher):  # what Teacher._cost did before it reused litellm's price
        def _cost(self, response: Any, usage: Any) -> float:
            try:
                return completion_cost(response)
            except Exception:
                return 0.0

    cls = PricedTwice if row.kind == "twice" else Teacher

    async def teacher(tag: str, calls: int, concurrency: int) -> None:
        config = TeacherConfig(
            name="bench",
            model="openai/bench",
            api_base=url,
            api_key_env="BENCH_KEY",
            transport="direct" if row.kind == "direct" else "litellm",
            max_concurrency=concurrency,
            retries=0,
        )
        t = cls(config)
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> bool:
            async with gate:
                prompt = Prompt(text=f"{tag} {i}", language="en", task="open_qa")
                gen = await t.agenerate(prompt)
                assert gen.ok, gen.error
                return gen.ok

        await asyncio.gather(*(one(i) for i in range(calls)))

    from arbitrage.calls.transport import close

    return teacher, close


def _worker(row: Row, url: str, conn: Connection, barrier: Any, index: int) -> None:
    async def main() -> None:
        send, close = _sender(row, url)
        await send(f"warm{index}", 8, 8)  # imports, connection pool, litellm's lazy setup
        if row.freeze:
            gc.freeze()  # everything imported so far: never scanned by a collection again
        conn.send("ready")
        while (job := conn.recv()) is not None:
            tag, calls, concurrency = job
            barrier.wait()
            start = time.monotonic()
            await send(f"{tag}-{index}", calls, concurrency)
            conn.send((start, time.monotonic()))
        await close()

    asyncio.run(main())


def _measure(row: Row, url: str, plan: list[tuple[int, int, int]]) -> list[float | None]:
    """Calls/s for each (calls, concurrency, repeats) of ``plan``: the best run of each."""
    ctx = multiprocessing.get_context("spawn")
    n = row.processes
    barrier = ctx.Barrier(n)
    pipes = [ctx.Pipe() for _ in range(n)]
    workers = [
        ctx.Process(target=_worker, args=(row, url, child, barrier, i), daemon=True)
        for i, (_, child) in enumerate(pipes)
    ]
    for w in workers:
        w.start()
    for parent, _ in pipes:
        assert parent.recv() == "ready"
    rates: list[float | None] = []
    try:
        for calls, concurrency, repeats in plan:
            if concurrency < n:
                rates.append(None)
                continue
            best = 0.0
            for r in range(repeats):
                for parent, _ in pipes:
                    parent.send((f"c{concurrency}r{r}", calls // n, concurrency // n))
                spans = [parent.recv() for parent, _ in pipes]
                elapsed = max(end for _, end in spans) - min(start for start, _ in spans)
                best = max(best, (calls // n) * n / elapsed)
            rates.append(best)
    finally:
        for parent, _ in pipes:
            parent.send(None)
        for w in workers:
            w.join(timeout=10)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=512)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--processes", type=int, default=min(os.cpu_count() or 2, 4))
    args = parser.parse_args()
    with loopback_server(args.latency_ms) as url:
        table(url, args)


def table(url: str, args: argparse.Namespace) -> None:
    n = args.processes
    rows = [
        Row("litellm, prices each answer twice", "twice"),
        Row("litellm", "litellm"),
        Row("litellm, httpx transport", "litellm", httpx=True),
        Row("litellm + gc.freeze()", "litellm", freeze=True),
        Row(f"litellm, {n} processes", "litellm", processes=n),
        Row("direct transport", "direct"),
        Row("direct + gc.freeze()", "direct", freeze=True),
        Row(f"direct, {n} processes", "direct", processes=n),
        Row("raw aiohttp (ceiling)", "raw"),
    ]
    levels = (1, 64, 256)
    print(
        f"calls/s, best of {args.repeat} runs of {args.calls} calls (litellm) or {4 * args.calls} "
        f"(direct, raw), 32 at c=1; server latency {args.latency_ms:g} ms; {os.cpu_count()} CPUs"
    )
    header = f"{'configuration':<34}" + "".join(f"{f'c={c}':>9}" for c in levels)
    print(header + f"{'% of raw at c=64 / 256':>26}")
    results: dict[str, list[float | None]] = {}
    for row in rows:
        calls = args.calls if row.kind in ("litellm", "twice") else 4 * args.calls
        plan = [(calls, c, args.repeat) if c > 1 else (32, c, 1) for c in levels]
        results[row.label] = _measure(row, url, plan)
    raw = results[rows[-1].label]
    for row in rows:
        cells = results[row.label]
        line = f"{row.label:<34}" + "".join(
            f"{'-':>9}" if v is None else f"{v:>9.1f}" for v in cells
        )
        share = " / ".join(
            "-" if v is None or r is None else f"{100 * v / r:.0f}%"
            for v, r in zip(cells[1:], raw[1:], strict=True)
        )
        print(f"{line}{share:>26}")
    ideal = "".join(f"{c / (args.latency_ms / 1000):>9.0f}" for c in levels)
    print(f"{'ideal (c / latency)':<34}{ideal}")


if __name__ == "__main__":
    main()
