"""The live panel of ``arbitrage run``: one row per teacher, redrawn while calls run.

    teacher  circuit  in flight  req/s  tokens  cached  retries  429s  errors  rerouted  $ spent

``req/s`` is measured over the last few seconds, not since the start, so a teacher
that slows down shows it at once. The panel reads the teachers' counters; it never
touches a call.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    from arbitrage.teachers import Teacher

WINDOW_S = 5.0


class TeacherPanel:
    """A rich renderable of the teachers' engine counters (give it to ``rich.live.Live``).

    Args:
        clock: Seconds, monotonic.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.teachers: list[Teacher] = []
        self._clock = clock
        self._samples: dict[str, deque[tuple[float, int]]] = {}

    def attach(self, teachers: Sequence[Teacher]) -> None:
        """Show these teachers (a run calls this once it has built them)."""
        self.teachers = list(teachers)
        self._samples = {t.name: deque() for t in self.teachers}

    def rate(self, teacher: Teacher) -> float:
        """Requests per second sent by ``teacher`` over the last ``WINDOW_S`` seconds."""
        now = self._clock()
        samples = self._samples.setdefault(teacher.name, deque())
        samples.append((now, teacher.stats.requests))
        while len(samples) > 2 and now - samples[1][0] >= WINDOW_S:
            samples.popleft()
        then, first = samples[0]
        return (teacher.stats.requests - first) / (now - then) if now > then else 0.0

    def table(self) -> Table:
        table = Table(title="teachers", title_justify="left", expand=False)
        for col in ("teacher", "circuit", "in flight", "req/s", "tokens", "cached"):
            table.add_column(col, justify="left" if col in ("teacher", "circuit") else "right")
        for col in ("retries", "429s", "errors", "rerouted", "$ spent"):
            table.add_column(col, justify="right")
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
                f"{s.tokens:,}",
                f"{s.cached:,}",
                f"{s.retries:,}",
                f"{s.rate_limited:,}",
                f"[red]{s.failed:,}[/]" if s.failed else "0",
                f"{s.rerouted:,}",
                f"{s.cost_usd:.4f}",
            )
        return table

    def __rich__(self) -> Table | str:
        return self.table() if self.teachers else ""
