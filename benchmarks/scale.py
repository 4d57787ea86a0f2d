"""``engine: ray``: throughput vs generation workers, and the driver's memory on a 1M pool.

    python benchmarks/scale.py [--prompts 2000] [--workers 1 2 4] [--pool 1000000]

Throughput: whole runs (reward routing, 2 teachers + an LLM judge, every call an HTTP
request) against a loopback OpenAI-compatible aiohttp server with ``--latency-ms`` of
latency, in a separate process. ``workers`` is both ``ray.workers`` (generation) and
``ray.reward_workers`` (the judge). ``steady calls/s`` counts teacher and judge calls
after the first batch (which pays for the actors' start); ``run s`` is the whole loop.

Memory: a ``prompts.jsonl`` of ``--pool`` prompts is streamed by Ray Data as a run
streams it, and then read into a list as a single-process run does; the driver's peak
RSS growth over each is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loopback import loopback_server

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("BENCH_KEY", "sk-bench")


class _Clock:
    """A stand-in for rich's Progress that notes when each batch of prompts finishes."""

    def __init__(self) -> None:
        self.done: list[tuple[float, int]] = []
        self._bars: dict[int, str] = {}

    def add_task(self, what: str, total: int = 0, completed: int = 0) -> int:
        self._bars[len(self._bars)] = what
        return len(self._bars) - 1

    def advance(self, task: int, n: float = 1) -> None:
        if self._bars.get(task) == "prompts":
            self.done.append((time.perf_counter(), int(n)))

    def remove_task(self, task: int) -> None:
        pass


def _config(out: str, url: str, prompts: int, engine: str, workers: int) -> Any:
    from arbitrage.config import parse_config

    teacher = {"api_base": url, "api_key_env": "BENCH_KEY", "max_concurrency": 64, "retries": 0}
    return parse_config(
        {
            "out": out,
            "batch_size": 256,
            "pool": {"n_prompts": prompts, "languages": ["en", "fr"], "tasks": ["open_qa"]},
            "teachers": [
                {"name": "a", "model": "openai/a", **teacher},
                {"name": "b", "model": "openai/b", **teacher},
            ],
            "reward": {
                "kind": "judge",
                "model": "openai/judge",
                "api_base": url,
                "api_key_env": "BENCH_KEY",
                "params": {"max_concurrency": 64},
            },
            "router": {"name": "reward"},
            "engine": engine,
            "ray": {"workers": workers, "reward_workers": workers},
        }
    )


def throughput(url: str, prompts: int, engine: str, workers: int, tmp: Path) -> tuple[float, float]:
    """(steady calls per second, whole loop in seconds) of one run."""
    from arbitrage.run import arun_config

    clock = _Clock()
    out = tmp / f"{engine}-{workers}"
    config = _config(str(out), url, prompts, engine, workers)
    result = asyncio.run(arun_config(config, progress=clock))  # type: ignore[arg-type]
    shutil.rmtree(out)
    (t0, _), rest = clock.done[0], clock.done[1:]
    calls_per_prompt = 2 + 2  # two teachers, a judge call for each answer
    steady = sum(n for _, n in rest) * calls_per_prompt / (rest[-1][0] - t0) if rest else 0.0
    return steady, result.elapsed_s


def _write_pool(path: Path, n: int) -> None:
    from arbitrage.records import Prompt, dumps

    tasks = ("open_qa", "coding", "math")
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            text = f"Question {i}: explain one idea from field {i % 997} with a concrete example."
            p = Prompt(text=text, language="en", task=tasks[i % 3], persona=f"persona {i % 5000}")
            fh.write(dumps(p) + "\n")


def _peak_growth(fn: Callable[[], int]) -> tuple[float, float, int, float]:
    """(peak RSS growth, peak USS growth in MB, what ``fn`` returned, seconds).

    RSS includes the object-store pages the driver maps (shared memory); USS is the
    driver's own memory. Sampled every 50 ms."""
    import psutil

    proc = psutil.Process()

    def now() -> tuple[int, int]:
        info = proc.memory_full_info()
        return info.rss, info.uss

    base = now()
    peak = list(base)
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            rss, uss = now()
            peak[0], peak[1] = max(peak[0], rss), max(peak[1], uss)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start = time.perf_counter()
    try:
        value = fn()
    finally:
        stop.set()
        thread.join()
    seconds = time.perf_counter() - start
    return (peak[0] - base[0]) / 1e6, (peak[1] - base[1]) / 1e6, value, seconds


def memory(n: int, tmp: Path) -> list[tuple[str, int, float, float, int, float]]:
    """Rows (how, pool size, RSS growth, USS growth, prompts read, seconds)."""
    from arbitrage.cluster.stream import quiet_ray_data, stream_prompts, todo_batches
    from arbitrage.rundir import RunDir

    sizes = (n // 4, n)
    for size in (1000, *sizes):
        (tmp / str(size)).mkdir()
        _write_pool(tmp / str(size) / "prompts.jsonl", size)

    def stream(size: int) -> int:
        return sum(len(b) for b in stream_prompts(tmp / str(size) / "prompts.jsonl", 512))

    def stream_with_ids(size: int) -> int:
        seen: list[str] = []
        for _ in todo_batches(
            stream_prompts(tmp / str(size) / "prompts.jsonl", 512), (), 512, seen
        ):
            pass
        return len(seen)

    def as_list(size: int) -> int:
        return len(RunDir(tmp / str(size)).load_prompts() or [])

    rows = []
    with quiet_ray_data():
        stream(1000)  # Ray Data's first use in a process imports and starts its machinery
        runs = [("Ray Data stream", stream), ("  + ids kept for pool order", stream_with_ids)]
        runs.append(("a list (single process)", as_list))
        for name, fn in runs:
            for size in sizes:
                rss, uss, count, seconds = _peak_growth(lambda fn=fn, size=size: fn(size))
                rows.append((name, size, rss, uss, count, seconds))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=2000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--pool", type=int, default=1_000_000)
    parser.add_argument("--memory-only", action="store_true", help="skip the throughput runs")
    args = parser.parse_args()

    import ray

    tmp = Path(tempfile.mkdtemp(prefix="arbitrage-scale-"))
    ray_tmp = tempfile.mkdtemp(prefix="arb-ray-")
    server = contextlib.ExitStack()
    url = server.enter_context(loopback_server(args.latency_ms))
    ray.init(
        _temp_dir=ray_tmp, include_dashboard=False, configure_logging=False, log_to_driver=False
    )
    try:
        print(
            f"{args.prompts} prompts × (2 teachers + judge) per run, batch_size 256, "
            f"server latency {args.latency_ms:g} ms, {os.cpu_count()} CPUs"
        )
        print(f"{'engine':>8} | {'workers':>7} | {'steady calls/s':>14} | {'run s':>6}")
        rows = [] if args.memory_only else [("local", 1)] + [("ray", w) for w in args.workers]
        for engine, workers in rows:
            steady, elapsed = throughput(url, args.prompts, engine, workers, tmp)
            shown = "-" if engine == "local" else str(workers)
            print(f"{engine:>8} | {shown:>7} | {steady:>14.1f} | {elapsed:>6.1f}", flush=True)
        print()
        print(
            f"{'driver reads the pool as':<28} | {'prompts':>9} | {'peak RSS +MB':>12} | "
            f"{'peak USS +MB':>12} | {'s':>5}"
        )
        for name, size, rss, uss, count, seconds in memory(args.pool, tmp):
            assert count == size
            print(
                f"{name:<28} | {size:>9,} | {rss:>12.0f} | {uss:>12.0f} | {seconds:>5.1f}",
                flush=True,
            )
    finally:
        ray.shutdown()
        server.close()
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(ray_tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
