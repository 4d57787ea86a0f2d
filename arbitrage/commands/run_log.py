"""What ``arbitrage run`` prints besides its live panel: the start-up banner, and plain
progress lines for when stderr is not a terminal (a log file, CI, a cluster job).

A terminal gets the live bar and panel (``arbitrage.commands.live``); a log gets one line every
``interval_s`` seconds, and one at the end::

    progress: 120/300 prompts (40%), 3.2 calls/s, 95 with a winner, $0.0123, ETA 4m10s

The banner puts one teacher on each line, so it reads the same in an 80-column log
as on a wide terminal.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import TracebackType

    from rich.progress import Progress

    from arbitrage.commands.live import Caller
    from arbitrage.config import RunConfig

#: Seconds between two progress lines in a log (``arbitrage run --progress-every``).
INTERVAL_S = 30.0


def banner_lines(config: RunConfig, version: str) -> list[str]:
    """The start-up banner: the run's reward and router, then one line per teacher."""
    width = max(len(t.name) for t in config.teachers)
    lines = [f"data-arbitrage {version}: reward {config.reward.kind}, router {config.router.name}"]
    lines += [f"  teacher {t.name:<{width}}  {t.model}" for t in config.teachers]
    return lines


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ProgressLog:
    """Writes a progress line every ``interval_s`` seconds from a thread, and a last one
    on exit. It reads the run's ``Progress`` task (prompts done, total, ``kept``) and
    the callers' counters (calls, dollars); it never touches a call.

    Args:
        progress: The ``Progress`` the run advances (never rendered in a log).
        callers: The teachers and judges (``TeacherPanel.teachers``), read when a line
            is written, so a list filled once the run has built them works.
        write: Where a line goes (``print`` to stderr in the CLI).
        interval_s: Seconds between two lines.
        clock: Seconds, monotonic.
    """

    def __init__(
        self,
        progress: Progress,
        callers: Callable[[], Sequence[Caller]],
        write: Callable[[str], None],
        interval_s: float = INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._progress = progress
        self._callers = callers
        self._write = write
        self._interval_s = interval_s
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress-log", daemon=True)
        self._seen: tuple[float, int] | None = None  # (time, prompts done) when the bar appeared
        self._last = (clock(), 0)  # (time, calls) at the previous line
        self._done_written = False

    def line(self) -> str:
        """The progress line for now."""
        now = self._clock()
        tasks = self._progress.tasks
        done, total = (int(tasks[0].completed), int(tasks[0].total or 0)) if tasks else (0, 0)
        kept = int(tasks[0].fields.get("kept", 0)) if tasks else 0
        callers = list(self._callers())
        calls = sum(c.stats.requests + c.stats.cached for c in callers)
        spent = sum(c.stats.cost_usd for c in callers)
        then, calls_then = self._last
        rate = (calls - calls_then) / (now - then) if now > then else 0.0
        self._last = (now, calls)
        share = f" ({done / total:.0%})" if total else ""
        eta = "?"
        if done >= total and total:
            eta = "0s"
        elif self._seen is not None and done > self._seen[1] and now > self._seen[0]:
            # from the prompts done since the bar appeared: resumed ones took no time
            eta = _duration((total - done) * (now - self._seen[0]) / (done - self._seen[1]))
        return (
            f"progress: {done}/{total} prompts{share}, {rate:.1f} calls/s, "
            f"{kept} with a winner, ${spent:.4f}, ETA {eta}"
        )

    def _finished(self) -> bool:
        tasks = self._progress.tasks
        return bool(tasks) and tasks[0].completed >= (tasks[0].total or 0) > 0

    def _loop(self) -> None:
        due = self._clock() + self._interval_s
        while not self._stop.wait(min(0.5, self._interval_s)):
            if self._seen is None and self._progress.tasks:
                self._seen = (self._clock(), int(self._progress.tasks[0].completed))
            if self._finished():  # one line says so; the outputs are written next
                self._write(self.line() + "; writing the dataset and the report")
                self._done_written = True
                return
            if self._clock() >= due:
                self._write(self.line())
                due = self._clock() + self._interval_s

    def __enter__(self) -> ProgressLog:
        self._last = (self._clock(), 0)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        if exc_type is None and not self._done_written:
            self._write(self.line())
