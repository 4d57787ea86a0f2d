"""``engine: ray``: the same run, its calls spread over a Ray cluster (docs/cluster.md).

    driver (where ``arbitrage run`` runs)           Ray actors
    ─────────────────────────────────────           ──────────
    prompts.jsonl ─► read a line at a time, windows of batch_size
    router.route(window)
    call cache (SQLite) ─miss─► generation ───────► GenerationWorker × ray.workers ─► teachers
         ▲                                                │ before every attempt
         └──────── every answer, as it arrives            ▼
                                                    Gate: every teacher's rate limits,
                                                    concurrency and circuit breaker, and
                                                    the budget: one for the whole run
    reward.ascore_batch ──────► scoring ──────────► RewardWorker × ray.reward_workers (GPUs)
    router.update, outcomes.jsonl ◄── winners

The run's lifecycle and its loop (``arbitrage.commands.run``, ``Arbitrage.astream``) are the
ones a single-process run uses, on the driver, with the same windows in the same
order (``arbitrage.schedule``), so a Ray run routes exactly as a single-process run of
the same config and seed; only the calls move (``RayExecutor``).
The driver keeps the call cache: it answers what the cache holds and stores
each answer the moment it comes back, so a worker that dies is restarted and only the
calls it had in flight are sent again.

    session.py   connect to a cluster or start a local instance; shut down only our own
    gate.py      the run-wide limits actor
    workers.py   generation and reward actors
    remote.py    the teachers and reward model the loop sees, whose calls actors make
    driver.py    RayExecutor: actors up, the stand-ins for the loop, the report
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported on first use: ``arbitrage.executors.ray.session`` (``preflight``'s Ray check) must
# not pull in the driver, which imports the run's factories.
_EXPORTS = {
    "RayExecutor": "arbitrage.executors.ray.driver",
    "require_ray": "arbitrage.executors.ray.session",
}

__all__ = ["RayExecutor", "require_ray"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'arbitrage.executors.ray' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
