"""``engine: ray``: the same run, its calls spread over a Ray cluster (docs/cluster.md).

    driver (where ``arbitrage run`` runs)           Ray actors
    ─────────────────────────────────────           ──────────
    prompts.jsonl ─► Ray Data, batch by batch
    router.route(batch)
    call cache (SQLite) ─miss─► generation ───────► GenerationWorker × ray.workers ─► teachers
         ▲                                                │ before every attempt
         └──────── every answer, as it arrives            ▼
                                                    Gate: every teacher's rate limits,
                                                    concurrency and circuit breaker, and
                                                    the budget: one for the whole run
    reward.ascore_batch ──────► scoring ──────────► RewardWorker × ray.reward_workers (GPUs)
    router.update, outcomes.jsonl ◄── winners

The routing and learning loop stays on the driver, batch by batch in pool order, so a
Ray run routes exactly as a single-process run of the same config and seed; only the
calls move. The driver keeps the call cache: it answers what the cache holds and stores
each answer the moment it comes back, so a worker that dies is restarted and only the
calls it had in flight are sent again.

    session.py   connect to a cluster or start a local instance; shut down only our own
    stream.py    the pool, streamed by Ray Data
    gate.py      the run-wide limits actor
    workers.py   generation and reward actors
    remote.py    the teachers and reward model the loop sees, whose calls actors make
    driver.py    the run: actors up, the loop, the report
"""

from arbitrage.cluster.driver import arun_ray
from arbitrage.cluster.session import require_ray

__all__ = ["arun_ray", "require_ray"]
