"""``arbitrage retry-failed RUN_DIR``: ask again only for what failed.

Everything is checked first, as ``arbitrage run`` checks it (``preflight``: the router,
the reward, every API key variable), with the call cache on. Only then are the
outcomes with a failed call dropped from ``outcomes.jsonl`` (rewritten at once: a kill
leaves the old file or the new one) and the run resumed: their prompts are routed
again, every answer that came back before is served from the call cache (failed calls
are never cached), so only the failed calls are sent again, and the mixture is rebuilt.
"""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from arbitrage.errors import ConfigError
from arbitrage.factories import RunParts, preflight
from arbitrage.run_lock import hold_run_dir
from arbitrage.rundir import RunDir

if TYPE_CHECKING:
    from rich.progress import Progress

    from arbitrage.config import RunConfig
    from arbitrage.pipeline import RunResult


class Resume(Protocol):
    """What resumes a run (``arbitrage.commands.run.arun_config``)."""

    def __call__(
        self, config: RunConfig, *, parts: RunParts, progress: Progress | None
    ) -> Awaitable[RunResult]: ...


async def aretry_failed(
    run_dir: str | Path, *, resume: Resume, progress: Progress | None = None
) -> tuple[int, RunResult | None]:
    """Retry the failed calls of a run, resuming it with ``resume``; returns (prompts
    retried, the run's result), or ``(0, None)`` when no call failed."""
    directory = RunDir.open(run_dir)
    with hold_run_dir(directory.path):  # from before outcomes.jsonl is rewritten; resume re-enters
        config = directory.config()
        if not config.cache.enabled:
            raise ConfigError(
                "retry-failed needs the call cache (cache.enabled: true), else every answer "
                "of a retried prompt would be paid for again"
            )
        parts = preflight(config)
        retried = sum(o.has_failed_call for o in directory.iter_outcomes())  # every row read
        if retried == 0:
            return 0, None
        directory.rewrite_outcomes(o for o in directory.iter_outcomes() if not o.has_failed_call)
        return retried, await resume(config, parts=parts, progress=progress)
