"""A run's memory and its resume time as the run grows.

    python benchmarks/scale.py [--prompts 100000] [--resume 20000 80000] [--repeat 1]
                               [--outputs 1000000] [--router reward] [--tail 7500]

Every measurement runs in a fresh process (as a rerun of ``arbitrage run`` does), against
a loopback server that answers at once, in its own process; the config is one teacher
and an LLM judge, ``transport: direct``.

Memory: one run of ``--prompts`` prompts; its RSS is sampled as windows are committed and
printed at every quarter of the run, as growth over the RSS when the first window was
committed, with the growth per finished prompt, the peak RSS once the outputs are
written at the end, and the outputs stage's own peak (``RunDir.write_outputs``: the
kernel's peak RSS is reset as it starts) over the RSS it starts from. ``--resume``
with no numbers measures memory only.

Outputs: ``--outputs N`` runs the outputs stage alone (the end of ``arbitrage run``:
``RunDir.final_outcomes`` and ``RunDir.write_outputs``) on a run directory of N prompts,
every one finished, its outcomes written as ``--resume`` writes them; the seconds it
takes, the RSS as it starts and its peak.

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


#: RSS samples (prompts done, MB), peak RSS MB, seconds to the end of the loop, to the end,
#: and the outputs stage's RSS MB at its start and its peak RSS MB
Memory = tuple[list[tuple[int, float]], float, float, float, float, float]


def _status_mb(key: str) -> float:
    """``VmRSS`` or ``VmHWM`` (the peak RSS) of this process, from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1e3  # kB
    raise RuntimeError(f"no {key} in /proc/self/status")


class _OutputsPeak:
    """The RSS as the outputs stage starts and its own peak RSS: the kernel's peak is
    reset as it starts (``clear_refs`` 5, Linux 4.0 and later). ``wrap()`` measures
    ``RunDir.write_outputs`` whenever a run calls it."""

    def __init__(self) -> None:
        self.start_mb = self.peak_mb = 0.0

    def start(self) -> None:
        Path("/proc/self/clear_refs").write_text("5")
        self.start_mb = _status_mb("VmRSS")

    def stop(self) -> None:
        self.peak_mb = _status_mb("VmHWM")

    def wrap(self) -> _OutputsPeak:
        from arbitrage.rundir import RunDir

        write = RunDir.write_outputs

        def measured(run_dir: RunDir, *args: Any, **kwargs: Any) -> None:
            self.start()
            try:
                write(run_dir, *args, **kwargs)
            finally:
                self.stop()

        RunDir.write_outputs = measured  # type: ignore[method-assign]
        return self


class _Outputs:
    """The outputs stage alone, as ``arbitrage run`` ends, on a run directory whose every
    prompt is finished (``outs``: the warm-up's, which loads every module the stage
    does, then the measured one's): (seconds, the RSS MB as it starts, its peak RSS MB)."""

    def __init__(self, url: str, outs: list[tuple[Path, Path]], router: str) -> None:
        self.url, self.outs, self.router = url, outs, router

    def __call__(self) -> tuple[float, float, float]:
        from arbitrage.pipeline import RunResult
        from arbitrage.rundir import RunDir

        peak = _OutputsPeak()
        seconds = 0.0
        for pool, out in self.outs:
            config = _config(out, pool, self.url, self.router)
            run_dir = RunDir(config.out)
            peak.start()
            start = time.monotonic()
            result = RunResult(outcomes=run_dir.final_outcomes(), teachers=["t1"], router="x")
            run_dir.write_outputs(config, result)
            seconds = time.monotonic() - start
            peak.stop()
        return seconds, peak.start_mb, peak.peak_mb


class _Memory:
    """One run of ``n`` prompts, from a pool file: (RSS samples, peak RSS MB over the whole
    run with its outputs, seconds to the end of the loop, seconds to the end, the RSS MB
    as the outputs stage starts, its peak RSS MB)."""

    def __init__(self, url: str, pool: Path, out: Path, router: str) -> None:
        self.url, self.pool, self.out, self.router = url, pool, out, router

    def __call__(self) -> Memory:
        import resource

        from arbitrage.commands.run import run_config

        meter = _Meter()
        outputs = _OutputsPeak().wrap()
        start = time.monotonic()
        run_config(_config(self.out, self.pool, self.url, self.router), progress=meter)  # type: ignore[arg-type]
        end = time.monotonic()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # KiB on Linux
        return (
            meter.samples,
            peak,
            meter.last - start,
            end - start,
            outputs.start_mb,
            outputs.peak_mb,
        )


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


def _finished(
    url: str, pool: Path, out: Path, router: str, done: int, total: int, tail: int | None = None
) -> Any:
    """A run directory (its ``RunDir``) of a pool of ``total`` prompts, the first ``done``
    finished (outcomes written as a run writes them). ``tail``: the run saved a checkpoint
    that many outcomes before it stopped (``_checkpoint``); ``None``: it has none (a run
    from before checkpoints: a rerun replays every outcome)."""
    from arbitrage.records import Candidate, Generation, Outcome, dumps
    from arbitrage.rundir import RunDir

    _write_pool(pool, total)
    config = _config(out, pool, url, router)
    run_dir = RunDir(config.out)
    run_dir.prepare(config)
    prompts = _prompts(total)
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
    return run_dir


def outputs(url: str, n: int, router: str, tmp: Path) -> tuple[float, float, float]:
    """The outputs stage alone on a run directory with ``n`` prompts, all finished:
    seconds, the RSS MB as it starts, its peak RSS MB."""
    outs = [(tmp / f"outputs-{k}.jsonl", tmp / f"outputs-{k}") for k in (10, n)]
    for (pool, out), k in zip(outs, (10, n), strict=True):
        _finished(url, pool, out, router, k, k)
    _, result = _in_fresh_process(_Outputs(url, outs, router))
    for _, out in outs:
        shutil.rmtree(out)
    return result  # type: ignore[no-any-return]


def resume(
    url: str, done: int, router: str, tmp: Path, repeat: int = 1, tail: int | None = None
) -> tuple[float, float, float, float]:
    """On a run with ``done`` prompts finished and 1,000 to go: seconds from starting a
    fresh process to the first new request (imports included), the same once every module
    is loaded (the fastest of ``repeat`` runs), from starting the process to the end of
    the run, and its peak RSS MB. ``tail``: as ``_finished``'s."""
    pool = tmp / f"resume-{done}.jsonl"
    out = tmp / f"resume-{done}-{'none' if tail is None else tail}"
    run_dir = _finished(url, pool, out, router, done, done + 1000, tail)
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
    parser.add_argument(
        "--outputs",
        type=int,
        nargs="*",
        default=[],
        help="the outputs stage alone on a finished run of N prompts (its outcomes written "
        "directly, as --resume writes them)",
    )
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
            alone = [(n, *outputs(url, n, args.router, tmp)) for n in args.outputs]
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
    if alone:
        print("\noutputs stage alone on a finished run of N prompts (one teacher, a judge)")
        print(f"{'prompts':>10} {'seconds':>8} {'RSS at start MB':>16} {'peak RSS MB':>12} growth")
        for n, seconds, start_mb, peak_mb in alone:
            growth = f"{peak_mb - start_mb:.0f} MB, {(peak_mb - start_mb) * 1e6 / n:.0f} B/prompt"
            print(f"{n:>10,} {seconds:>8.0f} {start_mb:>16.0f} {peak_mb:>12.0f} {growth}")
    if ran is not None:
        samples, peak, loop_s, whole_s, outputs_start, outputs_peak = ran
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
        print(
            f"outputs stage: RSS {outputs_start:.0f} MB as it starts, peak {outputs_peak:.0f} MB"
            f" (+{outputs_peak - outputs_start:.0f} MB, "
            f"{(outputs_peak - outputs_start) * 1e6 / args.prompts:.0f} bytes a prompt)"
        )
        print(f"loop {loop_s:.0f} s, whole run {whole_s:.0f} s")


if __name__ == "__main__":
    main()
