"""``arbitrage retry-failed RUN_DIR``: ask again only for what failed.

Outcomes with a failed candidate are dropped from ``outcomes.jsonl`` and the run is
resumed: their prompts are routed again, every answer that came back before is served
from the call cache (failed calls are never cached), so only the failed calls are
sent again. The outcomes are rewritten and the mixture is rebuilt.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from arbitrage.errors import ConfigError, DataError

if TYPE_CHECKING:
    from rich.progress import Progress

    from arbitrage.pipeline import RunResult
    from arbitrage.run import RunDir


async def aretry_failed(
    run_dir: str | Path, *, progress: Progress | None = None
) -> tuple[int, RunResult | None]:
    """Retry the failed calls of a run; returns (prompts retried, the run's result)."""
    from arbitrage.run import RunDir
    from arbitrage.run_lock import hold_run_dir

    path = Path(run_dir)
    if not (path / "run.json").is_file() or not (path / "config.yaml").is_file():
        raise DataError(f"{path} is not a run directory (no run.json / config.yaml)")
    with hold_run_dir(path):  # from before outcomes.jsonl is rewritten; arun_config re-enters
        return await _aretry(RunDir(path), progress)


async def _aretry(directory: RunDir, progress: Progress | None) -> tuple[int, RunResult | None]:
    from arbitrage.run import arun_config

    config = directory.config()
    if not config.cache.enabled:
        raise ConfigError(
            "retry-failed needs the call cache (cache.enabled: true), else every answer "
            "of a retried prompt would be paid for again"
        )
    outcomes = directory.load_outcomes()
    keep = [o for o in outcomes if all(c.generation.status != "error" for c in o.candidates)]
    retried = len(outcomes) - len(keep)
    if retried == 0:
        return 0, None
    directory.rewrite_outcomes(keep)
    return retried, await arun_config(config, progress=progress)
