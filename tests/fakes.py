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

from arbitrage.calls.breaker import CircuitBreaker
from arbitrage.calls.teachers import TeacherStats
from arbitrage.errors import BudgetExceeded
from arbitrage.records import Generation, Prompt
from reward.base import RewardModel, Score


def quality(teacher: str, prompt: Prompt) -> float:
    """A fixed pseudo-random reward in [0, 10) for (teacher, prompt)."""
    return zlib.crc32(f"{teacher}|{prompt.text}".encode()) % 1000 / 100


class FakeTeacher:
    """A teacher whose answer to ``prompt`` is ``"<name> <quality>"`` after ``delay(prompt)``
    seconds; ``calls`` counts what it was asked, ``in_flight`` / ``peak`` how many at once.

    ``budget_after``: the call after that many raises ``BudgetExceeded``. ``samples``:
    answers per prompt (``asample``); sample ``i`` > 0 answers with the quality of
    ``"<name>#<i>"``. ``acomplete`` answers any messages likewise (a fuser).
    """

    def __init__(
        self,
        name: str,
        *,
        delay: Callable[[Prompt], float] = lambda prompt: 0.0,
        budget_after: int | None = None,
        samples: int = 1,
    ) -> None:
        self.name = name
        self.delay = delay
        self.budget_after = budget_after
        self.samples = samples
        self.stats = TeacherStats()
        self.breaker = CircuitBreaker(name)
        self.calls: list[str] = []
        self.landed: list[str] = []
        self.in_flight = 0
        self.peak = 0

    def available(self) -> bool:
        return self.breaker.available()

    async def asample(self, prompt: Prompt) -> list[Generation]:
        return list(
            await asyncio.gather(*(self.agenerate(prompt, sample=i) for i in range(self.samples)))
        )

    async def acomplete(
        self, messages: list[dict[str, str]], *, prompt_id: str = "", max_tokens: int | None = None
    ) -> Generation:
        text = messages[-1]["content"]
        prompt = Prompt(text=text, language="en", task="qa", id=prompt_id)
        return await self.agenerate(prompt, who=f"{self.name} fusing")

    async def agenerate(self, prompt: Prompt, *, sample: int = 0, who: str = "") -> Generation:
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
        who = who or (self.name if sample == 0 else f"{self.name}#{sample}")
        text = f"{self.name} {quality(who, prompt):.2f} {prompt.text}"
        return Generation(
            prompt.id,
            self.name,
            f"fake/{self.name}",
            text=text,
            finish_reason="stop",
            sample=sample,
        )


class TextReward(RewardModel):
    """Reads the quality a ``FakeTeacher`` wrote into its answer."""

    name = "text"

    async def ascore_batch(self, pairs: Sequence[tuple[Prompt, str]]) -> list[Score]:
        return [Score(float(text.split()[1])) for _, text in pairs]
