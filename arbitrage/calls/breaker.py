"""Circuit breaker: a teacher that keeps failing is taken out of rotation for a while.

    closed ──K consecutive retryable failures──► open ──cooldown──► half-open
      ▲                                                               │
      └──────────── the probe succeeds ◄── one probe call ────────────┘
                    (fails: open again)

While open (and, beyond its one probe, while half-open) the teacher refuses calls,
so the pipeline routes its prompts to the teachers that are up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class BreakerEvent:
    """One state change of a teacher's breaker (written to ``report.json``)."""

    teacher: str
    state: str  # "open", "half-open" or "closed"
    at: float  # unix time
    why: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class CircuitBreaker:
    """The breaker of one teacher.

    Args:
        teacher: Teacher name (for events).
        failures: Consecutive retryable failures that open the circuit.
        cooldown_s: How long it stays open before one probe is let through.
        clock: Seconds, monotonic (tests pass a fake one).
    """

    def __init__(
        self,
        teacher: str,
        *,
        failures: int = 5,
        cooldown_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.teacher = teacher
        self.threshold = failures
        self.cooldown_s = cooldown_s
        self.events: list[BreakerEvent] = []
        self._clock = clock
        self._state = "closed"
        self._streak = 0
        self._opened_at = 0.0
        self._probing = False

    @property
    def state(self) -> str:
        if self._state == "open" and self._clock() - self._opened_at >= self.cooldown_s:
            self._move("half-open", f"cooldown of {self.cooldown_s:g} s over; one probe")
        return self._state

    def available(self) -> bool:
        """Whether a call may be routed here now (without taking the half-open probe)."""
        state = self.state
        return state == "closed" or (state == "half-open" and not self._probing)

    def allow(self) -> bool:
        """Take permission for one call (in half-open: the single probe)."""
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self._probing:
            self._probing = True
            return True
        return False

    def success(self) -> None:
        self._streak = 0
        if self._state != "closed":
            self._probing = False
            self._move("closed", "probe succeeded")

    def failure(self, why: str) -> None:
        """A retryable failure (rate limit, 5xx, timeout, dropped connection)."""
        self._streak += 1
        if self._state == "half-open":
            self._probing = False
            self._open(f"probe failed: {why}")
        elif self._state == "closed" and self._streak >= self.threshold:
            self._open(f"{self._streak} consecutive failures, last: {why}")

    def _open(self, why: str) -> None:
        self._opened_at = self._clock()
        self._move("open", why)

    def _move(self, state: str, why: str) -> None:
        self._state = state
        self.events.append(BreakerEvent(self.teacher, state, round(time.time(), 3), why[:300]))
