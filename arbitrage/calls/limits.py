"""Per-teacher limits: requests and tokens per minute, adaptive concurrency, Retry-After.

Concurrency is AIMD (as TCP's congestion window): every 429 or timeout halves the
teacher's effective concurrency (at most once per second, so one burst of 429s is
one halving), and every ``increase_after`` successes in a row add one back, up to
``max_concurrency``; it never drops below 1. A ``Retry-After`` from the server pauses
only that teacher. Each teacher has its own limits, so one slow teacher never
holds back another.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress

from aiolimiter import AsyncLimiter

MAX_RETRY_AFTER_S = 300.0


class TeacherLimits:
    """The limits of one teacher.

    Args:
        max_concurrency: Most calls in flight (the AIMD ceiling and start).
        requests_per_minute: Request rate limit, or ``None``.
        tokens_per_minute: Token rate limit (prompt estimate + ``max_tokens``), or ``None``.
        increase_after: Successes in a row that raise concurrency by one.
        clock: Seconds, monotonic.
    """

    def __init__(
        self,
        max_concurrency: int,
        *,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        increase_after: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_concurrency = max_concurrency
        self.concurrency = max_concurrency
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.increase_after = increase_after
        self.in_flight = 0
        self.decreases = 0
        self._clock = clock
        self._paused_until = 0.0
        self._last_decrease = -1e9
        self._streak = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cond: asyncio.Condition | None = None
        self._rpm: AsyncLimiter | None = None
        self._tpm: AsyncLimiter | None = None

    @asynccontextmanager
    async def slot(self, tokens: int = 0) -> AsyncIterator[None]:
        """Hold one call's place: waits for a pause to end, a free slot and rate budget."""
        cond = self._bind()
        async with cond:
            while True:
                wait = self._paused_until - self._clock()
                if wait > 0:
                    with suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(cond.wait(), wait)
                elif self.in_flight < self.concurrency:
                    self.in_flight += 1
                    break
                else:
                    try:
                        await cond.wait()
                    except asyncio.CancelledError:
                        cond.notify(1)  # a wake-up meant for us must not be lost
                        raise
        try:
            if self._rpm is not None:
                await self._rpm.acquire()
            if self._tpm is not None and tokens > 0:
                await self._tpm.acquire(min(float(tokens), self._tpm.max_rate))
            yield
        finally:
            async with cond:
                self.in_flight -= 1
                # Wake as many waiters as there are free slots (more than one after an
                # additive increase), not all of them: thousands of queued calls must not
                # all wake to find one slot.
                cond.notify(max(1, self.concurrency - self.in_flight))

    def success(self) -> None:
        """A call returned: additive increase."""
        self._streak += 1
        if self._streak >= self.increase_after and self.concurrency < self.max_concurrency:
            self.concurrency += 1
            self._streak = 0

    def overloaded(self, retry_after: float | None = None) -> None:
        """A 429 or a timeout: multiplicative decrease, and a pause if the server asked."""
        now = self._clock()
        self._streak = 0
        if now - self._last_decrease >= 1.0:
            self.concurrency = max(1, self.concurrency // 2)
            self._last_decrease = now
            self.decreases += 1
        if retry_after is not None and retry_after > 0:
            pause = min(retry_after, MAX_RETRY_AFTER_S)
            self._paused_until = max(self._paused_until, now + pause)

    def _bind(self) -> asyncio.Condition:
        # asyncio primitives belong to one loop; each asyncio.run starts a new one.
        loop = asyncio.get_running_loop()
        if self._cond is None or self._loop is not loop:
            self._loop = loop
            self._cond = asyncio.Condition()
            self.in_flight = 0
            rpm, tpm = self.requests_per_minute, self.tokens_per_minute
            # Spread requests over the minute (per second) rather than allow a minute's burst.
            self._rpm = (
                None
                if rpm is None
                else AsyncLimiter(rpm / 60, 1.0)
                if rpm >= 60
                else (AsyncLimiter(1, 60 / rpm))
            )
            self._tpm = None if tpm is None else AsyncLimiter(tpm, 60.0)
        return self._cond
