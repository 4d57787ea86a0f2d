"""A run's memory and its resume time as the run grows.

    python benchmarks/scale.py [--prompts 100000] [--resume 20000 80000] [--repeat 1]
                               [--router reward] [--tail 7500]

Every measurement runs in a fresh process (as a rerun of ``arbitrage run`` does), against
a loopback server that answers at once, in its own process; the config is one teacher
and an LLM judge, ``transport: direct``.

Memory: one run of ``--prompts`` prompts; its RSS is sampled as windows are committed and
printed at every quarter of the run, as growth over the RSS when the first window was
committed, with the growth per finished prompt and the peak RSS once the outputs are
written at the end.

Resume: a run directory with ``--resume`` prompts finished (outcomes written as a run
writes them) and 1,000 to go, resumed twice: from the checkpoint a run saves as it goes
(``arbitrage.checkpoint``), written ``--tail`` outcomes before the stop, and with no
checkpoint (every outcome replayed, as a run from before checkpoints); the time to the
first request the server sees from starting the process (imports included) and, in a
second process, from calling ``run_config`` once a one-prompt run has loaded every module
(the fastest of ``--repeat`` runs: other processes on the machine only ever slow a run
down); the time to the end of the run and its peak RSS."""

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
    """A stand-in for rich's Progress (the calls ``arun_config`` makes) that samples RSS
    whenever a window is committed."""

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self.samples: list[tuple[int, float]] = []  # (prompts done, RSS MB)
        self._done = 0
        self.last = 0.0  # the monotonic clock at the last commit

    def add_task(self, what: str, total: float = 0, completed: int = 0, **fields: Any) -> int:
        self._done = completed
        return 0

    def update(self, task: int, *, advance: float = 0, **fields: Any) -> None:
        if advance:
            self._done += int(advance)
            self.samples.append((self._done, self._proc.memory_info().rss / 1e6))
            self.last = time.monotonic()

    def advance(self, task: int, n: float = 1) -> None:
        self.update(task, advance=n)


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


def _child(job: Any, queue: Any) -> None:
    """Run ``job`` in a fresh interpreter (spawned: imports counted, no heap left over from
    an earlier measurement) and hand back what it returns."""
    queue.put(job())


def _in_fresh_process(job: Any) -> tuple[float, Any]:
    """(the monotonic clock when the process was started, what ``job`` returned)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(job, queue))
    start = time.monotonic()
    process.start()
    result = queue.get()
    process.join()
    return start, result


#: RSS samples (prompts done, MB), peak RSS MB, seconds to the end of the loop, to the end
Memory = tuple[list[tuple[int, float]], float, float, float]


class _Memory:
    """One run of ``n`` prompts, from a pool file: (RSS samples, peak RSS MB over the whole
    run with its outputs, seconds to the end of the loop, seconds to the end)."""

    def __init__(self, url: str, pool: Path, out: Path, router: str) -> None:
        self.url, self.pool, self.out, self.router = url, pool, out, router

    def __call__(self) -> Memory:
        import resource

        from arbitrage.commands.run import run_config

        meter = _Meter()
        start = time.monotonic()
        run_config(_config(self.out, self.pool, self.url, self.router), progress=meter)  # type: ignore[arg-type]
        end = time.monotonic()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # KiB on Linux
        return meter.samples, peak, meter.last - start, end - start


class _Resume:
    """``arbitrage run`` on a prepared run directory, as a rerun does: (the monotonic clock
    when ``run_config`` was called, when it returned, the peak RSS MB)."""

    def __init__(self, url: str, pool: Path, out: Path, router: str) -> None:
        self.url, self.pool, self.out, self.router = url, pool, out, router

    def __call__(self) -> tuple[float, float, float]:
        import resource

        from arbitrage.commands.run import run_config

        start = time.monotonic()
        run_config(_config(self.out, self.pool, self.url, self.router), on_pool=lambda line: None)
        end = time.monotonic()
        return start, end, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


class _WarmResumes:
    """A one-prompt run in ``warm`` (so that every module a run loads is loaded), then
    ``arbitrage run`` on each of ``outs`` (copies of one prepared run directory): the
    seconds from calling ``run_config`` to the first request the server sees, for each."""

    def __init__(self, url: str, pool: Path, outs: list[Path], router: str, warm: Path) -> None:
        self.url, self.pool, self.outs, self.router, self.warm = url, pool, outs, router, warm

    def __call__(self) -> list[float]:
        from arbitrage.commands.run import run_config

        self.warm.mkdir()
        _write_pool(self.warm / "pool.jsonl", 1)
        run_config(_config(self.warm / "run", self.warm / "pool.jsonl", self.url, self.router))
        seconds = []
        for out in self.outs:
            server_stats(self.url, reset=True)
            start = time.monotonic()
            run_config(_config(out, self.pool, self.url, self.router), on_pool=lambda line: None)
            seconds.append(min(s["first"] for s in server_stats(self.url).values()) - start)
        return seconds


def memory(url: str, n: int, router: str, tmp: Path) -> Memory:
    pool = tmp / "memory.jsonl"
    _write_pool(pool, n)
    _, result = _in_fresh_process(_Memory(url, pool, tmp / "memory", router))
    shutil.rmtree(tmp / "memory")
    return result  # type: ignore[no-any-return]


def _checkpoint(config: Any, outcomes: list[Any], tail: int) -> None:
    """The checkpoint a run of ``config`` saves as it goes, as of all but the last
    ``tail`` of ``outcomes`` (a kill comes at most ``checkpoint.INTERVAL_S`` after one)."""
    from arbitrage import checkpoint
    from arbitrage.factories import build_router, build_scorer, wrap_reward
    from arbitrage.prompts.pool import describe
    from arbitrage.rundir import RunDir

    run_dir = RunDir(config.out)
    learned = outcomes[: len(outcomes) - tail]
    shadow = checkpoint.shadow_of(build_router(config), wrap_reward(config, build_scorer(config)))
    assert shadow is not None, "this config's router and reward cannot be checkpointed"
    end = 0
    for i in range(0, len(learned), config.batch_size):
        window = learned[i : i + config.batch_size]
        end = run_dir.append_outcomes(window)
        shadow.learn(window)
    held = describe(run_dir.iter_prompts())
    checkpoint.save(
        run_dir.path,
        shadow,
        offset=end,
        position=len(learned),
        ahead=(),
        finished=len(learned),
        kept=len(learned),
        pool=(held, sum(1 for _ in run_dir.iter_prompts())),
    )
    run_dir.append_outcomes(outcomes[len(learned) :])


def resume(
    url: str, done: int, router: str, tmp: Path, repeat: int = 1, tail: int | None = None
) -> tuple[float, float, float, float]:
    """On a run with ``done`` prompts finished and 1,000 to go: seconds from starting a
    fresh process to the first new request (imports included), the same once every module
    is loaded (the fastest of ``repeat`` runs), from starting the process to the end of
    the run, and its peak RSS MB. ``tail``: the run saved a checkpoint that many outcomes
    before it stopped; ``None``: it has none (a run from before checkpoints: every outcome
    is replayed)."""
    from arbitrage.records import Candidate, Generation, Outcome, dumps
    from arbitrage.rundir import RunDir

    pool = tmp / f"resume-{done}.jsonl"
    _write_pool(pool, done + 1000)
    config = _config(tmp / f"resume-{done}", pool, url, router)
    run_dir = RunDir(config.out)
    run_dir.prepare(config)
    prompts = _prompts(done + 1000)
    run_dir.save_prompts(prompts)
    ok = {"text": "A short answer.", "finish_reason": "stop"}
    outcomes = [
        Outcome(p, (Candidate(Generation(p.id, "t1", "openai/t1", **ok), 5.0, {}),), "t1", "all")
        for p in prompts[:done]
    ]
    if tail is None:
        with (run_dir.path / "outcomes.jsonl").open("w", encoding="utf-8") as fh:
            fh.writelines(dumps(o) + "\n" for o in outcomes)
    else:
        _checkpoint(config, outcomes, min(tail, done))
    del prompts, outcomes
    copies = [tmp / f"resume-{done}-warm-{i}" for i in range(repeat)]
    for copy in copies:
        shutil.copytree(run_dir.path, copy)
    server_stats(url, reset=True)
    spawned, (_, end, peak) = _in_fresh_process(_Resume(url, pool, run_dir.path, router))
    cold = min(s["first"] for s in server_stats(url).values()) - spawned
    _, seconds = _in_fresh_process(_WarmResumes(url, pool, copies, router, tmp / "warm"))
    warm = min(seconds)  # the load of other processes only ever slows a run down
    for path in (run_dir.path, *copies, tmp / "warm"):
        shutil.rmtree(path)
    return cold, warm, end - spawned, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=100_000)
    parser.add_argument("--resume", type=int, nargs="*", default=[20_000, 80_000])
    parser.add_argument("--router", default="reward")
    parser.add_argument(
        "--tail",
        type=int,
        default=7_500,
        help="resumes from a checkpoint saved this many outcomes before the stop (30 s of "
        "a run at 250 calls/s); each size is also resumed without one",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="resumes with every module loaded, per size: the fastest",
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        with loopback_server(0) as url:
            resumed = [
                (n, how, *resume(url, n, args.router, tmp, args.repeat, tail))
                for n in args.resume
                for how, tail in ((f"checkpoint, {args.tail:,} after", args.tail), ("none", None))
            ]
            ran = memory(url, args.prompts, args.router, tmp) if args.prompts else None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if resumed:
        print(f"\nresume (router {args.router}): a run directory with N prompts done, 1,000 to go;")
        print("seconds from starting the process (imports included) / with every module loaded")
        print(f"(the fastest of {args.repeat})")
        print(
            f"{'done':>8} {'checkpoint':>24} {'to first new call s':>20} {'modules loaded s':>17}"
            f" {'whole run s':>12} {'peak RSS MB':>12}"
        )
        for n, how, first, after_imports, whole, peak in resumed:
            print(
                f"{n:>8,} {how:>24} {first:>20.2f} {after_imports:>17.2f} {whole:>12.2f}"
                f" {peak:>12.0f}"
            )
    if ran is not None:
        samples, peak, loop_s, whole_s = ran
        base = samples[0][1]
        print(f"\nmemory over a {args.prompts:,}-prompt run (router {args.router}): RSS growth")
        print(f"over the RSS when the first window was committed ({base:.0f} MB)")
        print(f"{'prompts done':>12} {'RSS MB':>8} {'growth MB':>10}")
        step = max(1, args.prompts // 4)
        marks = {
            min(range(len(samples)), key=lambda i: abs(samples[i][0] - m))
            for m in range(0, args.prompts + 1, step)
        }
        for i in sorted(marks):
            done, rss = samples[i]
            print(f"{done:>12,} {rss:>8.0f} {rss - base:>10.0f}")
        (first_done, _), (last_done, last_rss) = samples[0], samples[-1]
        per = (last_rss - base) * 1e6 / max(1, last_done - first_done)
        print(f"growth per finished prompt over the loop: {per:.0f} bytes")
        print(f"peak RSS with the outputs written at the end: {peak:.0f} MB")
        print(f"loop {loop_s:.0f} s, whole run {whole_s:.0f} s")


if __name__ == "__main__":
    main()
