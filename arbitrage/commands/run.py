"""A whole run from a config: check it, build the pool, run the loop, write the outputs.

One lifecycle for both engines: the run directory is locked and prepared, the pool is
built (or read back), an executor (``arbitrage.executors.local``: this process, or Ray
actors) supplies the teachers and the scorer, the loop (``Arbitrage.astream``) streams
the prompts not yet done through them, appending each window to ``outcomes.jsonl``,
and the outputs are written from what is on disk, read again at each of their passes
(``RunDir.final_outcomes``): neither the loop nor the outputs hold every outcome. The
run directory and its files are ``arbitrage.rundir``; the objects a config describes
are built by ``arbitrage.factories``. Re-running the same command after an interruption skips
every prompt already in ``outcomes.jsonl``. A second run on the same directory while
one is going refuses at once (``RunLocked``); a killed run's lock dies with it
(``arbitrage.run_lock``).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from arbitrage import checkpoint
from arbitrage.calls.budget import Budget
from arbitrage.calls.teachers import engine_teachers, open_cache
from arbitrage.config import RunConfig
from arbitrage.errors import BudgetExceeded
from arbitrage.executors.local import Executor, LocalExecutor
from arbitrage.factories import RunParts, abuild_pool, pool_line, preflight, wrap_reward
from arbitrage.fusion import make_fuser
from arbitrage.pipeline import Arbitrage, RunResult
from arbitrage.prompts.conversation import conversations_for, turns_of
from arbitrage.prompts.targets import Rounds, TargetNotMet, short_line
from arbitrage.run_lock import hold_run_dir
from arbitrage.rundir import RunDir
from reward.judge import LLMJudge

if TYPE_CHECKING:
    from rich.progress import Progress

    from arbitrage.calls.cache import CallCache
    from arbitrage.commands.live import TeacherPanel
    from arbitrage.records import Outcome, Prompt
    from reward.base import RewardModel
    from routers.base import Router


def executor_for(config: RunConfig, scorer: RewardModel | None, parts: RunParts) -> Executor:
    """The engine's executor; ``scorer`` (default: the config's) scores in this process
    (on Ray: instead of on reward workers)."""
    if config.engine == "ray":
        from arbitrage.executors.ray.driver import RayExecutor

        return RayExecutor(config, scorer)
    return LocalExecutor(config, scorer if scorer is not None else parts.scorer)


def run_budget(config: RunConfig, cache: CallCache | None) -> Budget:
    """The run's budget, counting what its cache already paid for: ``budget_usd``
    covers the run directory across reruns and ``retry-failed``, not one process."""
    budget = Budget(config.budget_usd)
    if cache is not None:
        budget.spent_usd = cache.paid_usd()
    return budget


async def arun_config(
    config: RunConfig,
    *,
    progress: Progress | None = None,
    reward_model: RewardModel | None = None,
    panel: TeacherPanel | None = None,
    on_pool: Callable[[str], None] | None = None,
    parts: RunParts | None = None,
) -> RunResult:
    """Run a config end to end and write its run directory; resumes an interrupted run.

    ``on_pool`` is given ``pool_line`` once the pool is built (or, resuming, read back).
    ``parts`` is what ``preflight(config)`` returned, if the caller already ran it.
    ``reward_model`` replaces the config's scorer (it scores in this process).
    """
    if parts is None:
        parts = preflight(config)
    with hold_run_dir(config.out):
        run_dir = RunDir(config.out)
        run_dir.prepare(config)
        cache = open_cache(config)
        try:
            return await _arun(
                config, parts, run_dir, cache, reward_model, progress, panel, on_pool
            )
        finally:
            if cache is not None:
                cache.close()


async def _arun(
    config: RunConfig,
    parts: RunParts,
    run_dir: RunDir,
    cache: CallCache | None,
    reward_model: RewardModel | None,
    progress: Progress | None,
    panel: TeacherPanel | None,
    on_pool: Callable[[str], None] | None,
) -> RunResult:
    began = time.perf_counter()
    budget = run_budget(config, cache)
    if not (run_dir.path / "prompts.jsonl").exists():  # written once, before any answer
        writers = engine_teachers(config, cache=cache, budget=budget, batch=False)
        prompts, origin = await abuild_pool(config, writers)
        run_dir.save_prompts(prompts)
        del prompts
    else:
        origin = f"resumed from {run_dir.path / 'prompts.jsonl'}"
    run_dir.mend_outcomes()  # the next window is appended after the last whole row
    talks = conversations_for(config, run_dir, cache=cache, budget=budget)
    point = checkpoint.load(run_dir.path) if talks is None else None
    async with executor_for(config, reward_model, parts) as executor:
        teachers, scorer = await executor.parts(cache, budget)
        if panel is not None:  # the judges make calls like teachers and show with them
            panel.attach(
                [*teachers, *(p for p in scorer.parts() if isinstance(p, LLMJudge))],
                next((t.batch.journal for t in teachers if t.batch is not None), None),
            )
        back = _read_back(run_dir, point, parts.router, wrap_reward(config, scorer))
        skip, (held, total) = back.skip, back.pool
        if on_pool is not None:
            on_pool(pool_line(held, origin))
        engine = Arbitrage(
            teachers,
            back.reward,
            parts.router,
            batch_size=config.batch_size,
            windows=config.windows_in_flight(parts.router.escalates()),
            fusion=make_fuser(config, teachers),
        )
        engine.resume(back.done)
        kept = back.kept + sum(o.winner is not None for o in back.done)  # for the log
        offset = run_dir.outcomes_path.stat().st_size  # mended: whole rows only
        mark = _Marks(back.start, offset, back.ahead, back.finished, kept)
        del back  # a finished prompt costs nothing in memory from here on
        shadow = checkpoint.shadow_of(parts.router, engine.reward) if talks is None else None
        pool_now: tuple[str, int] | None = (held, total)

        def save() -> None:
            if shadow is not None:
                checkpoint.save(run_dir.path, shadow, pool=pool_now, **mark.fields())

        if shadow is not None and point is None and mark.finished:
            save()  # a full replay is paid once: the next rerun starts from here
        total *= turns_of(config)  # at most: a conversation may end early
        bar = (
            progress.add_task("prompts", total=total, completed=mark.finished, kept=kept)
            if progress
            else None
        )
        rounds = Rounds(config, run_dir) if config.target_rows is not None else None
        try:
            while True:  # one pass, or with target_rows a round at a time (prompts.targets)
                windows = (
                    engine.astream(
                        mark.numbered(run_dir.iter_prompts(mark.position), skip), skip=skip
                    )
                    if talks is None
                    else talks.astream(engine, skip=skip)
                )
                try:
                    async with aclosing(windows) as stream:
                        async for outcomes in stream:
                            mark.offset = run_dir.append_outcomes(outcomes)
                            mark.commit(outcomes)
                            if shadow is not None:
                                shadow.learn(outcomes)
                                if shadow.due():
                                    save()
                            if progress is not None and bar is not None:
                                progress.update(bar, advance=len(outcomes), kept=mark.kept)
                            await executor.tick()
                except BudgetExceeded:
                    if rounds is None:
                        raise
                    rounds.stopped = f"budget_usd ({config.budget_usd}) reached"
                    break
                if rounds is None:
                    break
                writers = engine_teachers(config, cache=cache, budget=budget, batch=False)
                fresh = await rounds.next_round(writers)
                pool_now = None  # the pool grew: a rerun reads it again
                if on_pool is not None:
                    more = f"; round {rounds.round}: +{len(fresh)} prompts" if fresh else ""
                    on_pool(rounds.line() + more)
                if not fresh:
                    break
                skip = frozenset(o.prompt.id for o in run_dir.iter_outcomes())
                if progress is not None and bar is not None:
                    progress.update(bar, total=rounds.drawn)
        finally:
            if shadow is not None and shadow.fresh:
                save()  # however the loop ended: what was appended is learned
        extra = await executor.report()
        if talks is not None:
            extra["conversation"] = talks.report()
    result = RunResult(
        outcomes=run_dir.final_outcomes(),  # read at each pass, never held at once
        teachers=engine.order,
        router=parts.router.name,
        router_state=parts.router.state(),
        elapsed_s=time.perf_counter() - began,
    )
    run_dir.write_outputs(config, result, extra=extra)
    if rounds is not None and rounds.stopped is not None:
        rounds.kept = rounds.count(result.outcomes)  # a budget stop ends mid-round
        rounds.answered = len(result.outcomes)
        raise TargetNotMet(short_line(rounds))
    return result


@dataclass
class _Back:
    """What a run reads back before its first call: the outcomes to relearn, the prompts
    to skip, where in the pool to start, the counts for the progress bar, the reward to
    run with (the checkpoint's steps, if there is a checkpoint)."""

    done: list[Outcome]
    skip: Collection[str]
    start: int
    ahead: frozenset[str]
    finished: int
    kept: int
    pool: tuple[str, int]  # what the pool holds, and its size
    reward: RewardModel


def _read_back(
    run_dir: RunDir, point: checkpoint.Checkpoint | None, router: Router, reward: RewardModel
) -> _Back:
    """From the checkpoint (``arbitrage.checkpoint``): its state, and only the outcomes
    appended after it to relearn. Without one (or one that does not fit): every outcome."""
    steps = checkpoint.restore(point, router, reward) if point is not None else None
    if point is not None and steps is not None:
        done = list(run_dir.iter_outcomes(point.offset))
        ids = {o.prompt.id for o in done}
        held = checkpoint.pool_cached(run_dir.path, point) or _scan(run_dir, frozenset()).pool
        return _Back(done, point.ahead | ids, point.position, point.ahead,
                     point.finished + len(ids), point.kept, held, steps)  # fmt: skip
    done = run_dir.load_outcomes()
    skip = frozenset(o.prompt.id for o in done)
    scan = _scan(run_dir, skip)
    finished = scan.finished + sum(1 for p in run_dir.iter_turns() if p.id in skip)
    return _Back(done, skip, scan.start, scan.ahead, finished, 0, scan.pool, reward)


@dataclass
class _Scan:
    pool: tuple[str, int]  # what the pool holds (its description), and its size
    finished: int  # prompts of it done
    start: int  # prompts before the first not done
    ahead: frozenset[str]  # ids done after that one


def _scan(run_dir: RunDir, skip: Collection[str]) -> _Scan:
    """One read of the pool: what it holds and its size, what of it is done, and where the loop
    starts (the prompts before the first not done are skipped unread)."""
    total = finished = 0
    first_open: int | None = None
    ahead: set[str] = set()

    def scanned() -> Iterator[Prompt]:
        nonlocal total, finished, first_open
        for prompt in run_dir.iter_prompts():
            if prompt.id in skip:
                finished += 1
                if first_open is not None:
                    ahead.add(prompt.id)
            elif first_open is None:
                first_open = total
            total += 1
            yield prompt

    from arbitrage.prompts.pool import describe

    held = describe(scanned())
    return _Scan((held, total), finished, total if first_open is None else first_open,
                 frozenset(ahead))  # fmt: skip


class _Marks:
    """Where the committed windows have got to in the pool, for the checkpoint: the
    position after the last committed prompt, and the counts the progress bar shows."""

    def __init__(
        self, start: int, offset: int, ahead: frozenset[str], finished: int, kept: int
    ) -> None:
        self.position = start
        self.offset = offset  # bytes of outcomes.jsonl up to the last window appended whole
        self.ahead = ahead
        self.finished = finished
        self.kept = kept
        self._handed: dict[str, deque[int]] = {}  # prompts in flight -> pool positions

    def numbered(self, prompts: Iterable[Prompt], skip: Collection[str]) -> Iterator[Prompt]:
        """``prompts`` (the pool from ``position``), noting where each one asked is."""
        for index, prompt in enumerate(prompts, self.position):
            if prompt.id not in skip:
                self._handed.setdefault(prompt.id, deque()).append(index)
            yield prompt

    def commit(self, outcomes: Sequence[Outcome]) -> None:
        for outcome in outcomes:
            queue = self._handed.get(outcome.prompt.id)
            if queue:  # a follow-up turn is not in the pool
                self.position = queue.popleft() + 1
                if not queue:
                    del self._handed[outcome.prompt.id]
        self.finished += len(outcomes)
        self.kept += sum(o.winner is not None for o in outcomes)

    def fields(self) -> dict[str, Any]:
        return {"offset": self.offset, "position": self.position, "ahead": self.ahead,
                "finished": self.finished, "kept": self.kept}  # fmt: skip


def run_config(config: RunConfig, **kwargs: Any) -> RunResult:
    """Synchronous ``arun_config``."""
    return asyncio.run(arun_config(config, **kwargs))
