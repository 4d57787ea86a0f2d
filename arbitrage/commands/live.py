"""The live panel of ``arbitrage run``: one row per teacher (or judge), redrawn while
calls run.

    teacher  circuit  flight  req/s  tokens  cached  retry  429  err  moved  $

``flight`` is calls in flight / the current adaptive concurrency; ``moved`` counts
calls that met an open circuit and went to another teacher.

Teachers in batch mode add a table of their batch jobs: each job's teacher, provider
batch id, state (validating, in_progress, finalizing, ended ...) and requests.

``req/s`` is measured over the last few seconds, not since the start, so a teacher
that slows down shows it at once. The panel reads the callers' counters; it never
touches a call. Anything that calls through ``calls/client.py`` can be shown: a
``Teacher``, an ``LLMJudge`` (``Caller``).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from rich.console import Group
from rich.table import Table

if TYPE_CHECKING:
    from rich.console import JustifyMethod

    from arbitrage.calls.batch import BatchJournal
    from arbitrage.calls.breaker import CircuitBreaker
    from arbitrage.calls.client import CallStats
    from arbitrage.calls.limits import TeacherLimits


class Caller(Protocol):
    """What the panel reads of a teacher or a judge."""

    @property
    def name(self) -> str: ...

    @property
    def stats(self) -> CallStats: ...

    @property
    def limits(self) -> TeacherLimits: ...

    @property
    def breaker(self) -> CircuitBreaker: ...


WINDOW_S = 5.0
COLUMNS: tuple[tuple[str, JustifyMethod], ...] = (
    ("teacher", "left"),
    ("circuit", "left"),
    ("flight", "right"),  # calls in flight / current (adaptive) concurrency
    ("req/s", "right"),
    ("tokens", "right"),
    ("cached", "right"),
    ("retry", "right"),
    ("429", "right"),
    ("err", "right"),
    ("moved", "right"),  # calls that met an open circuit and went to another teacher
    ("$", "right"),
)


def _short(n: int) -> str:
    """4 characters at most: 950, 12k, 3.4M."""
    if n < 1000:
        return str(n)
    if n < 100_000:
        return f"{n / 1000:.1f}k" if n < 10_000 else f"{n // 1000}k"
    return f"{n / 1e6:.1f}M" if n < 10_000_000 else f"{n // 1_000_000}M"


class TeacherPanel:
    """A rich renderable of the teachers' engine counters (give it to ``rich.live.Live``).

    Args:
        clock: Seconds, monotonic.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.teachers: list[Caller] = []
        self.journal: BatchJournal | None = None
        self._clock = clock
        self._samples: dict[int, deque[tuple[float, int]]] = {}

    def attach(self, teachers: Sequence[Caller], journal: BatchJournal | None = None) -> None:
        """Show these teachers, and judges if given (a run calls this once it has built
        them), and the batch jobs of ``journal`` if given."""
        self.teachers = list(teachers)
        self.journal = journal
        self._samples = {id(t): deque() for t in self.teachers}

    def rate(self, teacher: Caller) -> float:
        """Requests per second sent by ``teacher`` over the last ``WINDOW_S`` seconds."""
        now = self._clock()
        samples = self._samples.setdefault(id(teacher), deque())
        samples.append((now, teacher.stats.requests))
        while len(samples) > 2 and now - samples[1][0] >= WINDOW_S:
            samples.popleft()
        then, first = samples[0]
        return (teacher.stats.requests - first) / (now - then) if now > then else 0.0

    def table(self) -> Table:
        """One row per teacher; narrow enough for an 80-column terminal with 4 teachers."""
        table = Table(box=None, padding=(0, 1), header_style="bold underline")
        for col, justify in COLUMNS:
            table.add_column(col, justify=justify, no_wrap=True)
        for t in self.teachers:
            s = t.stats
            state = t.breaker.state
            circuit = {"closed": "[green]up[/]", "open": "[red]open[/]"}.get(
                state, f"[yellow]{state}[/]"
            )
            table.add_row(
                t.name,
                circuit,
                f"{t.limits.in_flight}/{t.limits.concurrency}",
                f"{self.rate(t):.1f}",
                _short(s.tokens),
                _short(s.cached),
                _short(s.retries),
                _short(s.rate_limited),
                f"[red]{_short(s.failed)}[/]" if s.failed else "0",
                _short(s.rerouted),
                f"{s.cost_usd:.2f}",
            )
        return table

    def jobs(self) -> Table:
        """One row per batch job in flight (and the last few ended)."""
        from arbitrage.calls.batch import jobs_of

        table = Table(box=None, padding=(0, 1), header_style="bold underline")
        for col in ("batch job", "teacher", "state", "requests", "done"):
            table.add_column(col, no_wrap=True)
        for job in jobs_of(self.journal):
            done = job.counts.get("completed", job.counts.get("succeeded", ""))
            table.add_row(
                job.batch_id or job.job, job.teacher, job.status, str(len(job.ids)), str(done)
            )
        return table

    def __rich__(self) -> Table | Group | str:
        if not self.teachers:
            return ""
        if self.journal is None or not self.journal.jobs:
            return self.table()
        return Group(self.table(), self.jobs())
