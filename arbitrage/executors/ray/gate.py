"""The gate: one Ray actor per run holding every teacher's limits, breaker and the budget.

Workers ask it before each attempt (``acquire``: the circuit is closed, a concurrency
slot is free, the rate limits allow it) and tell it how the attempt went, so
``max_concurrency``, ``requests_per_minute``, ``tokens_per_minute``, the circuit
breaker and ``budget_usd`` hold for the run as a whole, however many workers there are.
The pieces are the single-process engine's own (``arbitrage/engine``).

A worker that dies holds slots and budget reservations it will never give back: its
restarted incarnation registers under the same name, and the gate releases what the
dead one held (its reservations count as spent: those calls may have been paid for).
"""

from __future__ import annotations

import itertools
import time
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from arbitrage.calls.breaker import CircuitBreaker
from arbitrage.calls.budget import Budget
from arbitrage.calls.limits import TeacherLimits
from arbitrage.config import BreakerConfig, TeacherConfig
from arbitrage.errors import BudgetExceeded

# A half-open circuit with its probe out takes no calls; the driver looks again after this.
PROBE_WAIT_S = 1.0


@dataclass(frozen=True)
class Grant:
    """The answer to ``acquire``: a ticket to give back, or ``None`` if the circuit is open."""

    ticket: int | None
    retry_in_s: float = 0.0


class Gate:
    """Run-wide limits (a Ray actor: ``ray.remote(Gate)``).

    Args:
        teachers: The run's teachers.
        breaker: The circuit breaker settings.
        budget_usd: The run's budget, or ``None`` to only count.
    """

    def __init__(
        self, teachers: list[TeacherConfig], breaker: BreakerConfig, budget_usd: float | None
    ) -> None:
        self.limits = {
            t.name: TeacherLimits(
                t.max_concurrency,
                requests_per_minute=t.requests_per_minute,
                tokens_per_minute=t.tokens_per_minute,
            )
            for t in teachers
        }
        self.breakers = {
            t.name: CircuitBreaker(t.name, failures=breaker.failures, cooldown_s=breaker.cooldown_s)
            for t in teachers
        }
        self.budget = Budget(budget_usd)
        self._tickets = itertools.count()
        # ticket -> (incarnation, teacher, the slot it holds)
        self._held: dict[int, tuple[str, str, AbstractAsyncContextManager[None]]] = {}
        self._reserved: dict[str, float] = {}  # incarnation -> USD reserved
        self._live: dict[str, str] = {}  # worker name -> its live incarnation
        self._dead: set[str] = set()
        self.restarts = 0

    async def register(self, worker: str, incarnation: str) -> None:
        """A worker (re)started: free what its previous incarnation held."""
        old = self._live.get(worker)
        self._live[worker] = incarnation
        if old is None:
            return
        self.restarts += 1
        self._dead.add(old)
        for ticket in [k for k, held in self._held.items() if held[0] == old]:
            await self.release(ticket)
        reserved = self._reserved.pop(old, 0.0)
        self.budget.settle(reserved, reserved)

    async def acquire(self, incarnation: str, teacher: str, tokens: int) -> Grant:
        """Wait for a slot of ``teacher`` (a pause, concurrency and rate limits)."""
        if not self.breakers[teacher].allow():
            return Grant(None, self.retry_in(teacher))
        slot = self.limits[teacher].slot(tokens)
        await slot.__aenter__()
        if incarnation in self._dead:  # asked before it died: nobody will give it back
            await slot.__aexit__(None, None, None)
            return Grant(None)
        ticket = next(self._tickets)
        self._held[ticket] = (incarnation, teacher, slot)
        return Grant(ticket)

    async def release(self, ticket: int, successes: int = 0, closes: int = 0) -> None:
        """Give a slot back, with the successes (limits, breaker) seen since the last one."""
        held = self._held.pop(ticket, None)
        if held is None:
            return
        _, teacher, slot = held
        for _ in range(successes):
            self.limits[teacher].success()
        for _ in range(closes):
            self.breakers[teacher].success()
        await slot.__aexit__(None, None, None)

    def overloaded(self, teacher: str, retry_after: float | None) -> None:
        self.limits[teacher].overloaded(retry_after)

    def breaker_failure(self, teacher: str, why: str) -> None:
        self.breakers[teacher].failure(why)

    def retry_in(self, teacher: str) -> float:
        """Seconds until ``teacher`` may take a call again (its cooldown, or a probe's wait)."""
        breaker = self.breakers[teacher]
        if breaker.state == "open" and breaker.events:
            left = breaker.cooldown_s - (time.time() - breaker.events[-1].at)
            return max(0.1, left)
        return PROBE_WAIT_S

    def reserve(self, incarnation: str, teacher: str, estimate_usd: float) -> str | None:
        """Reserve a call's worst case; the ``BudgetExceeded`` message if it would cross."""
        try:
            self.budget.reserve(estimate_usd, teacher=teacher)
        except BudgetExceeded as exc:
            return str(exc)
        self._reserved[incarnation] = self._reserved.get(incarnation, 0.0) + estimate_usd
        return None

    def settle(self, incarnation: str, estimate_usd: float, actual_usd: float) -> None:
        """Replace a reservation by what the call cost (a judge's spend: no reservation)."""
        self.budget.settle(estimate_usd, actual_usd)
        if estimate_usd and incarnation in self._reserved:
            self._reserved[incarnation] = max(0.0, self._reserved[incarnation] - estimate_usd)

    def state(self) -> dict[str, Any]:
        """Per-teacher concurrency and circuit, breaker events, spend, restarts."""
        return {
            "teachers": {
                name: {
                    "concurrency": limits.concurrency,
                    "concurrency_decreases": limits.decreases,
                    "in_flight": limits.in_flight,
                    "circuit": self.breakers[name].state,
                }
                for name, limits in self.limits.items()
            },
            "breaker": [e.to_dict() for b in self.breakers.values() for e in b.events],
            "spent_usd": self.budget.spent_usd,
            "restarts": self.restarts,
        }
