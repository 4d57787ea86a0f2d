"""The actors that make the calls: generation workers (teachers) and reward workers.

A generation worker holds one ordinary ``Teacher`` per configured teacher, built with
limits and a breaker that ask the run's gate: the call path (``calls/client.py``:
retries, ``Retry-After``, the total timeout, failures as data) is the single-process
one. The call cache is the driver's: it serves what is there before a call is sent, and
stores every answer the moment it comes back (``remote.RemoteTeacher``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from arbitrage.calls.breaker import CircuitBreaker
from arbitrage.calls.limits import TeacherLimits
from arbitrage.calls.teachers import Teacher, open_cache
from arbitrage.config import RunConfig
from arbitrage.errors import TeacherUnavailable
from arbitrage.factories import reward_spent
from arbitrage.records import Generation, Prompt
from reward.base import Score


@dataclass(frozen=True)
class Refused:
    """The teacher's circuit is open: route elsewhere, look again in ``retry_in_s``."""

    retry_in_s: float


@dataclass(frozen=True)
class OverBudget:
    """The call could cross ``budget_usd`` (the ``BudgetExceeded`` message)."""

    message: str


def _warm_calls() -> None:
    """Import litellm now, as the actor starts, not at its first call: in a fresh worker
    process that takes seconds. Started together, the workers import side by side while
    the driver prepares; a reward worker left to import at its first call, which comes
    only once the first answers are back, would add those seconds to the run."""
    from arbitrage.calls.llm import litellm

    litellm()


def _actor(name: str) -> Any:
    """A named actor of this run (by name: a handle among the arguments would pin them in
    the object store, which an actor restart must not depend on)."""
    import ray

    from arbitrage.executors.ray.session import NAMESPACE

    return ray.get_actor(name, namespace=NAMESPACE)


class SharedLimits(TeacherLimits):
    """A teacher's limits as the gate holds them: every worker waits on the same ones.

    Successes (of the limits and of the breaker, both inside a slot) travel with the
    slot's release: one message to the gate per call instead of three."""

    def __init__(self, teacher: str, gate: Any, incarnation: str) -> None:
        super().__init__(1)
        self.teacher = teacher
        self.successes = 0
        self.closes = 0
        self._gate = gate
        self._incarnation = incarnation

    @asynccontextmanager
    async def slot(self, tokens: int = 0) -> AsyncIterator[None]:
        grant = await self._gate.acquire.remote(self._incarnation, self.teacher, tokens)
        if grant.ticket is None:
            raise TeacherUnavailable(
                f"teacher {self.teacher!r} is out of rotation (circuit open)", teacher=self.teacher
            )
        try:
            yield
        finally:
            self._gate.release.remote(grant.ticket, self.successes, self.closes)
            self.successes = self.closes = 0

    def success(self) -> None:
        self.successes += 1

    def overloaded(self, retry_after: float | None = None) -> None:
        self._gate.overloaded.remote(self.teacher, retry_after)


class SharedBreaker(CircuitBreaker):
    """A teacher's circuit breaker as the gate holds it (the gate decides at ``acquire``)."""

    def __init__(self, teacher: str, gate: Any, limits: SharedLimits) -> None:
        super().__init__(teacher)
        self._gate = gate
        self._limits = limits

    def available(self) -> bool:
        return True

    def allow(self) -> bool:
        return True

    def success(self) -> None:
        self._limits.closes += 1

    def failure(self, why: str) -> None:
        self._gate.breaker_failure.remote(self.teacher, why)


class GenerationWorker:
    """Answers (teacher, prompt) calls (a Ray actor, restarted if it dies).

    Args:
        name: Stable across restarts, so a restart frees what the dead one held.
        config: The run's config.
        gate: The name of the run's gate actor.
        env: Environment variables to set first (the API keys the config names).
    """

    def __init__(self, name: str, config: RunConfig, gate: str, env: dict[str, str]) -> None:
        os.environ.update(env)
        self.incarnation = uuid.uuid4().hex
        self.gate = _actor(gate)
        # Whenever it runs, the gate frees what a dead predecessor of this name held.
        self.gate.register.remote(name, self.incarnation)
        self.limited = config.budget_usd is not None
        self.teachers: dict[str, Teacher] = {}
        for cfg in config.teachers:
            limits = SharedLimits(cfg.name, self.gate, self.incarnation)
            breaker = SharedBreaker(cfg.name, self.gate, limits)
            self.teachers[cfg.name] = Teacher(cfg, breaker=breaker, limits=limits)
        _warm_calls()

    async def call(
        self, teacher: str, request: dict[str, Any]
    ) -> Generation | Refused | OverBudget:
        """One call of the teacher (not in the cache; ``request``: ``Teacher.request``);
        the budget is reserved run-wide."""
        t = self.teachers[teacher]
        estimate = 0.0
        if self.limited:
            estimate = t.worst_case_usd(request["messages"], int(request["max_tokens"]))
            stop = await self.gate.reserve.remote(self.incarnation, teacher, estimate)
            if stop is not None:
                return OverBudget(stop)
        gen: Generation | None = None
        try:
            gen = await t.client.call(request)
        except TeacherUnavailable:
            return Refused(await self.gate.retry_in.remote(teacher))
        finally:
            cost = 0.0 if gen is None else gen.cost_usd
            if estimate or cost:
                self.gate.settle.remote(self.incarnation, estimate, cost)
        return gen

    def stats(self) -> dict[str, Any]:
        """Per-teacher counters of this incarnation."""
        return {
            "incarnation": self.incarnation,
            "pid": os.getpid(),
            "teachers": {name: t.stats.to_dict() for name, t in self.teachers.items()},
        }


class RewardWorker:
    """Scores (prompt, answer) pairs with the configured reward model (a Ray actor).

    A judge keeps its replies in the run's call cache, so judge workers run on the
    driver's machine (SQLite is shared by processes of one machine, not across machines).
    A reward model's worker may run on any machine with a GPU; it caches its scores
    only when it runs on the driver's.

    Args:
        config: The run's config.
        gate: The name of the run's gate (a judge's spend counts against the run's budget).
        env: Environment variables to set first (the judge's API key).
        driver_node: The Ray node id of the driver's machine.
    """

    def __init__(self, config: RunConfig, gate: str, env: dict[str, str], driver_node: str) -> None:
        import ray

        from arbitrage.factories import attach_reward, build_scorer

        os.environ.update(env)
        self.gate = _actor(gate)
        # Only the scorer: what the config wraps around it keeps running statistics,
        # which live on the driver so that every worker's answers count alike.
        self.reward = build_scorer(config)
        calls = any(hasattr(part, "cache") for part in self.reward.parts())
        local = ray.get_runtime_context().get_node_id() == driver_node
        self.cache = open_cache(config) if calls and local else None
        attach_reward(self.reward, self.cache, None)
        self.incarnation = uuid.uuid4().hex
        if calls:
            _warm_calls()

    async def score(self, pairs: Sequence[tuple[Prompt, str]]) -> list[Score]:
        before = reward_spent(self.reward)
        try:
            return await self.reward.ascore_batch(pairs)
        finally:
            spent = reward_spent(self.reward) - before
            if spent:
                self.gate.settle.remote(self.incarnation, 0.0, spent)

    def describe(self) -> str:
        return self.reward.describe()

    def per_prompt(self) -> bool:
        """Whether the scorer compares the answers of one prompt with each other."""
        return any(part.per_prompt for part in self.reward.parts())

    def stats(self) -> dict[str, Any]:
        """This incarnation's cache hits and judge spend."""
        return {
            "incarnation": self.incarnation,
            "pid": os.getpid(),
            "cache_hits": 0 if self.cache is None else self.cache.hits,
            "judge_usd": reward_spent(self.reward),
        }
