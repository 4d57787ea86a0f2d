"""In-process stand-ins for the loop's tests that need no HTTP: a teacher that answers
after a chosen delay, and a reward that reads the answer's text.

    teacher = FakeTeacher("a", delay=lambda prompt: 0.01)
    Arbitrage([teacher, ...], TextReward(), router, windows=4)

What goes over HTTP (retries, limits, transports, secrets) is tested against the
loopback stub server instead (``stub_server.py``).
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable, Sequence

from arbitrage.engine.breaker import CircuitBreaker
from arbitrage.errors import BudgetExceeded
from arbitrage.records import Generation, Prompt
from arbitrage.teachers import TeacherStats
from reward.base import RewardModel, Score


def quality(teacher: str, prompt: Prompt) -> float:
    """A fixed pseudo-random reward in [0, 10) for (teacher, prompt)."""
    return zlib.crc32(f"{teacher}|{prompt.text}".encode()) % 1000 / 100


class FakeTeacher:
    """A teacher whose answer to ``prompt`` is ``"<name> <quality>"`` after ``delay(prompt)``
    seconds; ``calls`` counts what it was asked, ``in_flight`` / ``peak`` how many at once.

    ``budget_after``: the call after that many raises ``BudgetExceeded``.
    """

    def __init__(
        self,
        name: str,
        *,
        delay: Callable[[Prompt], float] = lambda prompt: 0.0,
        budget_after: int | None = None,
    ) -> None:
        self.name = name
        self.delay = delay
        self.budget_after = budget_after
        self.stats = TeacherStats()
        self.breaker = CircuitBreaker(name)
        self.calls: list[str] = []
        self.landed: list[str] = []
        self.in_flight = 0
        self.peak = 0

    def available(self) -> bool:
        return self.breaker.available()

    async def agenerate(self, prompt: Prompt) -> Generation:
        if self.budget_after is not None and len(self.calls) >= self.budget_after:
            raise BudgetExceeded(f"budget reached at {self.name}")
        self.calls.append(prompt.id)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.delay(prompt))
        finally:
            self.in_flight -= 1
        self.landed.append(prompt.id)
        text = f"{self.name} {quality(self.name, prompt):.2f} {prompt.text}"
        return Generation(
            prompt.id, self.name, f"fake/{self.name}", text=text, finish_reason="stop"
        )


class TextReward(RewardModel):
    """Reads the quality a ``FakeTeacher`` wrote into its answer."""

    name = "text"

    async def ascore_batch(self, pairs: Sequence[tuple[Prompt, str]]) -> list[Score]:
        return [Score(float(text.split()[1])) for _, text in pairs]
