"""A run's memory and its resume time as the run grows.

    python benchmarks/scale.py [--prompts 100000] [--resume 20000 80000] [--router reward]

Memory: one ``arbitrage run`` of ``--prompts`` prompts (one teacher and an LLM judge,
``transport: direct``, on a loopback server that answers at once, in its own process);
the run's RSS is sampled as windows are committed and printed at every tenth of the
run, as growth over the RSS when the first window was committed.

Resume: a run directory with ``--resume`` prompts finished (outcomes written as a run
writes them) and 1,000 to go; the time from starting ``arbitrage run`` on it to the first
request the server sees, and to the end of the run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from loopback import loopback_server, server_stats

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("BENCH_KEY", "sk-bench")


class _Meter:
    """A stand-in for rich's Progress that samples RSS whenever a window is committed."""

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self.samples: list[tuple[int, float]] = []  # (prompts done, RSS MB)
        self._done = 0

    def add_task(self, what: str, total: int = 0, completed: int = 0) -> int:
        self._done = completed
        return 0

    def advance(self, task: int, n: float = 1) -> None:
        self._done += int(n)
        self.samples.append((self._done, self._proc.memory_info().rss / 1e6))


def _config(out: Path, pool: Path, url: str, router: str) -> Any:
    from arbitrage.config import parse_config

    common = {"api_base": url, "api_key_env": "BENCH_KEY", "transport": "direct"}
    return parse_config(
        {
            "out": str(out),
            "pool": {"prompts": str(pool)},
            "teachers": [{"name": "t1", "model": "openai/t1", "max_concurrency": 64, **common}],
            "reward": {"kind": "judge", "model": "openai/judge", **common},
            "router": {"name": router},
        }
    )


def _prompts(n: int, start: int = 0) -> list[Any]:
    from arbitrage.records import Prompt

    tasks = ("open_qa", "coding", "math")
    return [
        Prompt(
            text=f"Question {i}: one idea from field {i % 997}.", language="en", task=tasks[i % 3]
        )
        for i in range(start, start + n)
    ]


def _write_pool(path: Path, n: int) -> None:
    from arbitrage.records import dumps

    with path.open("w", encoding="utf-8") as fh:
        for p in _prompts(n):
            fh.write(dumps(p) + "\n")


def memory(url: str, n: int, router: str, tmp: Path) -> list[tuple[int, float]]:
    from arbitrage.commands.run import run_config

    pool = tmp / "memory.jsonl"
    _write_pool(pool, n)
    meter = _Meter()
    run_config(_config(tmp / "memory", pool, url, router), progress=meter)  # type: ignore[arg-type]
    shutil.rmtree(tmp / "memory")
    return meter.samples


def resume(url: str, done: int, router: str, tmp: Path) -> tuple[float, float]:
    """(seconds to the first new request, seconds to the end) on a run with ``done``
    prompts finished."""
    from arbitrage.commands.run import run_config
    from arbitrage.records import Candidate, Generation, Outcome, dumps
    from arbitrage.rundir import RunDir

    pool = tmp / f"resume-{done}.jsonl"
    _write_pool(pool, done + 1000)
    config = _config(tmp / f"resume-{done}", pool, url, router)
    run_dir = RunDir(config.out)
    run_dir.prepare(config)
    prompts = _prompts(done + 1000)
    run_dir.save_prompts(prompts)
    with (run_dir.path / "outcomes.jsonl").open("w", encoding="utf-8") as fh:
        for p in prompts[:done]:
            gen = Generation(p.id, "t1", "openai/t1", text="A short answer.", finish_reason="stop")
            fh.write(dumps(Outcome(p, (Candidate(gen, 5.0, {}),), "t1", "all")) + "\n")
    server_stats(url, reset=True)
    start = time.monotonic()
    run_config(config)
    end = time.monotonic()
    first = min(s["first"] for s in server_stats(url).values())
    shutil.rmtree(run_dir.path)
    return first - start, end - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=100_000)
    parser.add_argument("--resume", type=int, nargs="*", default=[20_000, 80_000])
    parser.add_argument("--router", default="reward")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        with loopback_server(0) as url:
            resumed = [(n, *resume(url, n, args.router, tmp)) for n in args.resume]
            samples = memory(url, args.prompts, args.router, tmp) if args.prompts else []
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nresume (router {args.router}): a run directory with N prompts done, 1,000 to go")
    print(f"{'done':>8} {'to first new call s':>20} {'whole run s':>12}")
    for n, first, whole in resumed:
        print(f"{n:>8,} {first:>20.2f} {whole:>12.2f}")
    if samples:
        base = samples[0][1]
        print(f"\nmemory over a {args.prompts:,}-prompt run (router {args.router}): RSS growth")
        print(f"{'prompts done':>12} {'RSS MB':>8} {'growth MB':>10}")
        step = max(1, args.prompts // 10)
        marks = {
            min(range(len(samples)), key=lambda i: abs(samples[i][0] - m))
            for m in range(step, args.prompts + 1, step)
        }
        for i in sorted(marks):
            done, rss = samples[i]
            print(f"{done:>12,} {rss:>8.0f} {rss - base:>10.0f}")


if __name__ == "__main__":
    main()
