"""End to end: how much of the configured concurrency a whole ``arbitrage run`` uses.

    python benchmarks/pipeline.py [--prompts 1000] [--routers reward bandit]
        [--windows auto 1] [--engines local] [--transport litellm] [--profile]

Three teachers at ``max_concurrency: 64`` and an LLM judge at 192, on a loopback
OpenAI-compatible server in its own process whose latency is lognormal (median
``--median-ms`` 200, σ = ``--sigma`` 1; the same request always waits as long), over
``--prompts`` prompts, default settings otherwise. ``windows 1`` is the loop one batch
at a time (before streaming); ``auto`` the default.

Printed per run: calls (teachers + judge) per second, against the ceiling the
configured concurrency allows by Little's law (concurrency / mean latency measured by
the server); the time-weighted mean calls in flight (seen by the server) against the
configured concurrency; the same two over the steady part of the run (until the loop
had no new prompt to send, i.e. without the drain of the last calls' latency tail);
the run's process CPU per call, in all and without the end (``loop``: writing the
dataset, report and figures at the end); and the teacher layer's CPU per
call on the same server (``Teacher.agenerate`` alone at concurrency 256), for comparison.
``--profile`` prints where the CPU of each run goes (cProfile, top 30 by ``--sort``).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from loopback import loopback_server, server_stats

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("BENCH_KEY", "sk-bench")

TEACHERS = ("t1", "t2", "t3")
TEACHER_CONCURRENCY = 64
JUDGE_CONCURRENCY = 192


def _pool(path: Path, n: int) -> None:
    from arbitrage.records import Prompt, dumps

    tasks = ("open_qa", "coding", "math")
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            text = f"Question {i}: explain one idea from field {i % 997} with an example."
            fh.write(dumps(Prompt(text=text, language="en", task=tasks[i % 3])) + "\n")


def _config(out: Path, pool: Path, url: str, args: Any, router: str, windows: str, engine: str):  # type: ignore[no-untyped-def]
    from arbitrage.config import parse_config

    common = {"api_base": url, "api_key_env": "BENCH_KEY"}
    teacher = {**common, "max_concurrency": TEACHER_CONCURRENCY, "transport": args.transport}
    data: dict[str, Any] = {
        "out": str(out),
        "pool": {"prompts": str(pool)},
        "teachers": [{"name": t, "model": f"openai/{t}", **teacher} for t in TEACHERS],
        "reward": {
            "kind": "judge",
            "model": "openai/judge",
            **common,
            "params": {"max_concurrency": JUDGE_CONCURRENCY, "transport": args.transport},
        },
        "router": {"name": router},
        "engine": engine,
    }
    if windows != "auto":
        data["windows"] = int(windows)
    return parse_config(data)


def _in_window(events: list[tuple[float, int]], t0: float, t1: float) -> tuple[float, int]:
    """(request-seconds in flight, requests ended) within [t0, t1]."""
    area, level, last, ended = 0.0, 0, t0, 0
    for t, step in sorted(events):
        if t > t1:
            break
        if t > t0:
            area += level * (t - last)
            last = t
            ended += step < 0
        level += step
    return area + level * (t1 - last), ended


def run_once(url: str, args: Any, router: str, windows: str, engine: str, tmp: Path) -> dict:  # type: ignore[type-arg]
    from arbitrage.commands.cli import _freeze_imports
    from arbitrage.commands.run import run_config
    from arbitrage.factories import build_router
    from arbitrage.rundir import RunDir

    out = tmp / f"{router}-{windows}-{engine}"
    pool = tmp / "pool.jsonl"
    config = _config(out, pool, url, args, router, windows, engine)
    server_stats(url, reset=True)
    profile = cProfile.Profile() if args.profile else None
    outputs = [0.0]  # CPU of writing the dataset, the report and its figures at the end
    write = RunDir.write_outputs

    def timed(self: RunDir, *a: Any, **kw: Any) -> None:
        t = time.process_time()
        try:
            write(self, *a, **kw)
        finally:
            outputs[0] += time.process_time() - t

    RunDir.write_outputs = timed  # type: ignore[method-assign]
    _freeze_imports()  # as ``arbitrage run`` does before its run (commands/cli.py)
    cpu, wall = time.process_time(), time.perf_counter()
    if profile is not None:
        profile.enable()
    try:
        run_config(config)
    finally:
        RunDir.write_outputs = write  # type: ignore[method-assign]
    if profile is not None:
        profile.disable()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    shutil.rmtree(out)
    stats = server_stats(url)
    calls = sum(s["requests"] for s in stats.values())
    latency = sum(s["latency_s"] for s in stats.values()) / max(1, calls)
    first = min(s["first"] for s in stats.values())
    last = max(s["last"] for s in stats.values())
    span = last - first
    concurrency = TEACHER_CONCURRENCY * len(TEACHERS) + JUDGE_CONCURRENCY
    # steady: until the loop had nothing new to send (the last teacher request), not the
    # drain of the last calls' tail
    steady_end = max(s["last_start"] for m, s in stats.items() if m != "judge")
    steady = [_in_window(s["events"], first, steady_end) for s in stats.values()]
    steady_span = max(1e-9, steady_end - first)
    row = {
        "router": router,
        "windows": config.windows_in_flight(build_router(config).escalates()),
        "engine": engine,
        "calls": calls,
        "wall_s": wall,
        "calls_per_s": calls / span,
        "ceiling": concurrency / latency,
        "in_flight": sum(s["area"] for s in stats.values()) / span,
        "steady_calls_per_s": sum(n for _, n in steady) / steady_span,
        "steady_in_flight": sum(a for a, _ in steady) / steady_span,
        "steady_s": steady_span,
        "cpu_ms_per_call": 1000 * cpu / max(1, calls),
        "loop_ms_per_call": 1000 * (cpu - outputs[0]) / max(1, calls),
        "concurrency": concurrency,
    }
    if profile is not None:
        buffer = io.StringIO()
        pstats.Stats(profile, stream=buffer).sort_stats(args.sort).print_stats(30)
        row["profile"] = buffer.getvalue()
    return row


def teacher_layer(url: str, args: Any, calls: int = 2000, concurrency: int = 256) -> float:
    """CPU ms per call of ``Teacher.agenerate`` alone (no loop, no reward)."""
    from arbitrage.calls.teachers import Teacher
    from arbitrage.config import TeacherConfig
    from arbitrage.records import Prompt

    teacher = Teacher(
        TeacherConfig(
            name="t1",
            model="openai/t1",
            api_base=url,
            api_key_env="BENCH_KEY",
            max_concurrency=concurrency,
            transport=args.transport,
        )
    )
    prompts = [
        Prompt(text=f"layer question {i}", language="en", task="open_qa") for i in range(calls)
    ]

    async def main(batch: list[Prompt]) -> None:
        await asyncio.gather(*(teacher.agenerate(p) for p in batch))

    asyncio.run(main(prompts[:100]))  # imports and connections warm, not measured
    cpu = time.process_time()
    asyncio.run(main(prompts[100:]))
    return 1000 * (time.process_time() - cpu) / (calls - 100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--routers", nargs="+", default=["reward", "bandit"])
    parser.add_argument("--windows", nargs="+", default=["1", "auto"])
    parser.add_argument("--engines", nargs="+", default=["local"])
    parser.add_argument(
        "--transport",
        default="litellm",
        choices=["litellm", "direct"],
        help="the teachers' and the judge's transport",
    )
    parser.add_argument("--median-ms", type=float, default=200.0)
    parser.add_argument("--sigma", type=float, default=1.0)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--sort", default="tottime", help="cProfile sort key (cumulative, ...)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    try:
        _pool(tmp / "pool.jsonl", args.prompts)
        with loopback_server(args.median_ms, sigma=args.sigma) as url:
            layer = teacher_layer(url, args)
            warm = argparse.Namespace(**{**vars(args), "profile": False})
            # imports and connections warm, not measured
            run_once(url, warm, args.routers[0], "auto", args.engines[0], tmp)
            rows = [
                run_once(url, args, router, windows, engine, tmp)
                for engine in args.engines
                for router in args.routers
                for windows in args.windows
            ]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"\n{args.prompts} prompts, 3 teachers × {TEACHER_CONCURRENCY} + judge × "
        f"{JUDGE_CONCURRENCY}, lognormal latency (median {args.median_ms:g} ms, "
        f"σ = {args.sigma:g}), transport {args.transport}; teacher layer alone: "
        f"{layer:.2f} CPU ms per call\n"
    )
    head = (
        f"{'engine':<6} {'router':<7} {'windows':>7} {'calls':>6} {'wall s':>7} {'calls/s':>8} "
        f"{'ceiling':>8} {'of ceil':>7} {'in flight':>9} {'of conc':>7} "
        f"{'steady of ceil':>14} {'steady of conc':>14} {'CPU ms/call':>11} {'× layer':>7} "
        f"{'loop ms/call':>12} {'× layer':>7}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['engine']:<6} {r['router']:<7} {r['windows']:>7} {r['calls']:>6} "
            f"{r['wall_s']:>7.1f} {r['calls_per_s']:>8.1f} {r['ceiling']:>8.0f} "
            f"{r['calls_per_s'] / r['ceiling']:>7.3f} {r['in_flight']:>9.1f} "
            f"{r['in_flight'] / r['concurrency']:>7.3f} "
            f"{r['steady_calls_per_s'] / r['ceiling']:>14.3f} "
            f"{r['steady_in_flight'] / r['concurrency']:>14.3f} {r['cpu_ms_per_call']:>11.2f} "
            f"{r['cpu_ms_per_call'] / layer:>7.1f} {r['loop_ms_per_call']:>12.2f} "
            f"{r['loop_ms_per_call'] / layer:>7.1f}"
        )
    for r in rows:
        if "profile" in r:
            print(f"\nprofile: {r['engine']} {r['router']} windows {r['windows']}\n{r['profile']}")


if __name__ == "__main__":
    main()
