"""Executors: who makes a run's calls. The loop (``Arbitrage.astream``) and the run's
lifecycle (``arbitrage.commands.run``) are the same on every engine; an executor supplies the
teachers and the scorer they drive, and reports what they did.

    async with executor:                                  # start (actors, sessions)
        teachers, scorer = await executor.parts(cache, budget)
        ... the loop; await executor.tick() after each window ...
        extra = await executor.report()                   # report.json engine / breaker

``LocalExecutor`` makes every call in this process; ``RayExecutor``
(``arbitrage.executors.ray.driver``) on Ray actors.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from arbitrage.calls.budget import Budget
    from arbitrage.calls.cache import CallCache
    from arbitrage.calls.teachers import Teacher
    from arbitrage.config import RunConfig
    from reward.base import RewardModel


class Executor(Protocol):
    """What the lifecycle needs of an engine."""

    async def __aenter__(self) -> Executor: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def parts(
        self, cache: CallCache | None, budget: Budget
    ) -> tuple[list[Teacher], RewardModel]:
        """The teachers and the (unwrapped) scorer the loop calls."""
        ...

    async def tick(self) -> None:
        """A window was committed (refresh what the live panel shows)."""
        ...

    async def report(self) -> dict[str, Any]:
        """``report.json``'s ``engine`` and ``breaker``."""
        ...


class LocalExecutor:
    """Every call in this process: the run's teachers, and the scorer given (which the
    run's cache and budget reach too)."""

    def __init__(self, config: RunConfig, scorer: RewardModel) -> None:
        self.config = config
        self.scorer = scorer
        self.teachers: list[Teacher] = []
        self._cache: CallCache | None = None

    async def __aenter__(self) -> LocalExecutor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for teacher in self.teachers:  # batch jobs stay in the journal: a rerun re-attaches
            await teacher.aclose()

    async def parts(
        self, cache: CallCache | None, budget: Budget
    ) -> tuple[list[Teacher], RewardModel]:
        from arbitrage.calls.teachers import engine_teachers
        from arbitrage.factories import attach_reward

        self._cache = cache
        self.teachers = engine_teachers(self.config, cache=cache, budget=budget)
        attach_reward(self.scorer, cache, budget)
        return self.teachers, self.scorer

    async def tick(self) -> None:
        return None

    async def report(self) -> dict[str, Any]:
        from arbitrage.calls.teachers import engine_report
        from arbitrage.factories import reward_spent
        from reward.judge import LLMJudge

        extra = engine_report(self.teachers, self._cache)
        extra["engine"]["judge_usd"] = round(reward_spent(self.scorer), 6)
        judges = [p for p in self.scorer.parts() if isinstance(p, LLMJudge)]
        extra["engine"]["judges"] = {
            f"{j.name} {j.model}": {**j.stats.to_dict(), "concurrency": j.limits.concurrency}
            for j in judges
        }
        journal = Path(self.config.out) / "batches.jsonl"  # teachers' and judges' jobs
        if journal.exists():
            from arbitrage.calls.batch import BatchJournal

            extra["batch"] = BatchJournal(journal).summary()
        return extra
