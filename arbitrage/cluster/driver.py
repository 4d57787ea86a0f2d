"""The driver of a Ray run: the single-process loop, with its calls made by actors.

The pool is streamed from ``prompts.jsonl`` one batch at a time; each batch goes through
``Arbitrage.arun`` exactly as in a single-process run (the router routes, teachers
answer, the reward scores, the router learns, outcomes are appended), so the routing
decisions are the same. The teachers and the reward model the loop sees are stand-ins
(``remote.py``) that send each call to an actor.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arbitrage.cluster.remote import (
    MAX_RESTARTS,
    Dispatch,
    MirrorBreaker,
    RemoteReward,
    RemoteTeacher,
    first_line,
)
from arbitrage.cluster.session import NAMESPACE, ray_session
from arbitrage.cluster.stream import count_lines, quiet_ray_data, stream_prompts, todo_batches
from arbitrage.cluster.workers import GenerationWorker, RewardWorker
from arbitrage.config import RunConfig
from arbitrage.engine.breaker import BreakerEvent
from arbitrage.engine.budget import Budget
from arbitrage.engine.cache import CallCache
from arbitrage.errors import ClusterError
from arbitrage.pipeline import Arbitrage, RunResult
from arbitrage.records import Outcome
from arbitrage.teachers import TeacherStats, engine_report, engine_teachers, open_cache
from reward.base import RewardModel

if TYPE_CHECKING:
    from rich.progress import Progress

    from arbitrage.live import TeacherPanel
    from arbitrage.run import RunDir

# Set on the driver, handed to every actor if set: a remote node does not inherit them.
FORWARD_ENV = (
    "ARBITRAGE_CACHE_DIR",
    "ARBITRAGE_LOCAL_BACKEND",
    "LITELLM_LOCAL_MODEL_COST_MAP",
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "TRANSFORMERS_OFFLINE",
)
GATE_CONCURRENCY = 100_000  # every waiting acquire holds one; releases must never queue
WORKER_CONCURRENCY = 10_000


@dataclass
class Actors:
    """The actors of one run."""

    gate: Any
    workers: list[Any]
    rewards: list[Any] = field(default_factory=list)
    seen: dict[str, dict[str, Any]] = field(default_factory=dict)  # incarnation -> last stats

    def all(self) -> list[Any]:
        return [self.gate, *self.workers, *self.rewards]

    async def refresh(self, teachers: Sequence[RemoteTeacher]) -> dict[str, Any]:
        """Copy the workers' counters and the gate's state onto the driver's teachers.

        A dead worker's counters are kept as they were last seen."""
        stats = await asyncio.gather(*(a.stats.remote() for a in (*self.workers, *self.rewards)))
        for s in stats:
            self.seen[s["incarnation"]] = s
        state: dict[str, Any] = await self.gate.state.remote()
        for t in teachers:
            # the driver counts cache hits and reroutes; the workers count everything sent
            total = TeacherStats(cached=t.stats.cached, rerouted=t.stats.rerouted)
            for s in self.seen.values():
                for key, value in s.get("teachers", {}).get(t.name, {}).items():
                    if key not in ("cached", "rerouted"):
                        setattr(total, key, getattr(total, key) + value)
            t.stats = total
            gate = state["teachers"][t.name]
            t.limits.concurrency = gate["concurrency"]
            t.limits.decreases = gate["concurrency_decreases"]
            t.limits.in_flight = gate["in_flight"]
            assert isinstance(t.breaker, MirrorBreaker)
            t.breaker.mirrored = gate["circuit"]
            events = [e for e in state["breaker"] if e["teacher"] == t.name]
            t.breaker.events = [BreakerEvent(**e) for e in events]
        if teachers:
            teachers[0].budget.spent_usd = state["spent_usd"]
        return state

    def stop(self) -> None:
        import ray

        for actor in self.all():
            with suppress(Exception):
                ray.kill(actor)


def _env(config: RunConfig) -> dict[str, str]:
    names = [t.api_key_env for t in config.teachers]
    names += [s.api_key_env for s in config.reward.scorers()]
    names += FORWARD_ENV
    return {n: os.environ[n] for n in names if n and n in os.environ}


def start_actors(ray: Any, config: RunConfig, *, reward: bool) -> Actors:
    """The gate, ``ray.workers`` generation workers and (``reward``) the reward workers."""
    from arbitrage.cluster.gate import Gate

    run = uuid.uuid4().hex[:8]
    env = _env(config)
    common = {"namespace": NAMESPACE, "num_cpus": 0}
    gate_name = f"{run}-gate"
    gate = (
        ray.remote(Gate)
        .options(name=gate_name, max_concurrency=GATE_CONCURRENCY, **common)
        .remote(config.teachers, config.breaker, config.budget_usd)
    )
    restart = {"max_restarts": MAX_RESTARTS, "max_task_retries": -1}
    worker = ray.remote(GenerationWorker)
    workers = [
        worker.options(
            name=f"{run}-generate-{i}", max_concurrency=WORKER_CONCURRENCY, **common, **restart
        ).remote(f"generate-{i}", config, gate_name, env)
        for i in range(config.ray.workers)
    ]
    actors = Actors(gate, workers)
    if reward:
        kinds = {s.kind for s in config.reward.scorers()}
        model = bool(kinds & {"local", "hf"})
        gpus = config.ray.reward_gpus
        if gpus is None:
            gpus = 1.0 if model and ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        place: dict[str, Any] = {"num_cpus": 1 if model else 0, "num_gpus": gpus}
        here = ray.get_runtime_context().get_node_id()
        if kinds & {"judge", "pairwise"} and config.cache.enabled:
            # its replies go to the run's SQLite cache: on this machine, as the driver's
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            place["scheduling_strategy"] = NodeAffinitySchedulingStrategy(here, soft=False)
        scorer = ray.remote(RewardWorker)
        actors.rewards = [
            scorer.options(
                name=f"{run}-reward-{i}", namespace=NAMESPACE, **place, **restart
            ).remote(config, gate_name, env, here)
            for i in range(config.ray.reward_workers)
        ]
    return actors


async def arun_ray(
    config: RunConfig,
    *,
    progress: Progress | None = None,
    reward_model: RewardModel | None = None,
    panel: TeacherPanel | None = None,
    on_pool: Callable[[str], None] | None = None,
) -> RunResult:
    """``arun_config`` on Ray: the same run directory, outcomes and mixture.

    ``reward_model``, if given, scores on the driver instead of on reward workers.
    """
    from arbitrage.run import RunDir, abuild_pool, pool_line, reward_spent, wrap_reward
    from routers import get_router

    names = [t.name for t in config.teachers]
    router = get_router(config.router.name, names, seed=config.seed, **config.router.params)
    run_dir = RunDir(config.out)
    run_dir.prepare(config)
    cache = open_cache(config)
    pool = run_dir.path / "prompts.jsonl"
    try:
        if not pool.exists():  # the pool is written once, on the driver, before any call
            writers = engine_teachers(config)
            for t in writers:
                t.cache = cache
            prompts, origin = await abuild_pool(config, writers)
            run_dir.save_prompts(prompts)
            if on_pool is not None:
                on_pool(pool_line(prompts, origin))
        elif on_pool is not None:
            on_pool(pool_line(run_dir.iter_prompts(), f"resumed from {pool}"))
        done = run_dir.load_outcomes()
        run_dir.rewrite_outcomes(done)  # drop a torn last line before appending
        with ray_session(config) as ray, quiet_ray_data():
            actors = start_actors(ray, config, reward=reward_model is None)
            try:
                dispatch = Dispatch(actors.workers)
                budget = Budget(config.budget_usd)
                teachers = [RemoteTeacher(t, dispatch, budget, cache) for t in config.teachers]
                if panel is not None:
                    panel.attach(teachers)
                if reward_model is not None:
                    reward = wrap_reward(config, reward_model)
                else:
                    reward = await _remote_reward(config, actors.rewards)
                engine = Arbitrage(teachers, reward, router, batch_size=config.batch_size)
                result = await _loop(engine, actors, pool, done, run_dir, config, progress)
                state = await actors.refresh(teachers)
            finally:
                actors.stop()
        extra = _report(config, teachers, cache, actors, state)
        if reward_model is not None:  # scored on the driver
            extra["engine"]["judge_usd"] = round(reward_spent(reward), 6)
    finally:
        if cache is not None:
            cache.close()
    run_dir.write_outputs(config, result, extra=extra)
    return result


def _report(
    config: RunConfig,
    teachers: Sequence[RemoteTeacher],
    cache: CallCache | None,
    actors: Actors,
    state: dict[str, Any],
) -> dict[str, Any]:
    """``report.json``'s ``engine`` and ``breaker``, as a single-process run writes them,
    plus ``engine.ray``: workers, restarts, requests each worker incarnation sent."""
    extra = engine_report(teachers, cache)
    rewards = [s for s in actors.seen.values() if "judge_usd" in s]
    workers = [s for s in actors.seen.values() if "teachers" in s]
    if cache is not None:  # the judge's hits, in the reward workers
        extra["engine"]["cache"]["hits"] = cache.hits + sum(s["cache_hits"] for s in rewards)
    extra["engine"]["judge_usd"] = round(sum(s["judge_usd"] for s in rewards), 6)
    extra["engine"]["ray"] = {
        "address": config.ray_address or "local",
        "workers": config.ray.workers,
        "reward_workers": len(actors.rewards),
        "restarts": state["restarts"],
        "requests_per_worker": {
            t.name: [s["teachers"][t.name]["requests"] for s in workers] for t in teachers
        },
    }
    return extra


async def _remote_reward(config: RunConfig, workers: Sequence[Any]) -> RewardModel:
    from ray.exceptions import RayError

    try:
        description: str = await workers[0].describe.remote()
    except RayError as exc:
        raise ClusterError(f"reward worker did not start: {first_line(exc)}") from None
    from arbitrage.run import wrap_reward

    scorers = config.reward.scorers()
    models = [s for s in scorers if s.kind in ("local", "hf")]
    multiple = max((int(s.params.get("batch_size") or 8) for s in models), default=1)
    by_prompt: bool = await workers[0].per_prompt.remote()
    remote = RemoteReward(workers, multiple, description, by_prompt=by_prompt)
    return wrap_reward(config, remote)


async def _loop(
    engine: Arbitrage,
    actors: Actors,
    pool: Path,
    done: Sequence[Outcome],
    run_dir: RunDir,
    config: RunConfig,
    progress: Progress | None,
) -> RunResult:
    """Batch by batch in pool order, as ``Arbitrage.arun`` does over a list."""
    start = time.perf_counter()
    finished = {o.prompt.id: o for o in done}
    if finished:
        engine.router.replay(list(finished.values()))
    engine.reward.replay(done)  # as read: a repeated prompt counted as often as it was scored
    seen: list[str] = []
    size = config.batch_size
    # the prompts done before this run, not those done in it: a pool may repeat a prompt,
    # and a single-process run asks again for a repeat whose first copy this run answered
    before = frozenset(finished)
    batches = todo_batches(stream_prompts(pool, size), before, size, seen)
    bar = None
    if progress is not None:
        bar = progress.add_task("prompts", total=count_lines(pool), completed=len(finished))
    teachers = [t for t in engine.teachers.values() if isinstance(t, RemoteTeacher)]
    try:
        while (batch := await asyncio.to_thread(next, batches, None)) is not None:
            got = await engine.arun(batch, on_outcomes=run_dir.append_outcomes)
            finished.update((o.prompt.id, o) for o in got.outcomes)
            if progress is not None and bar is not None:
                progress.advance(bar, len(batch))
            await actors.refresh(teachers)
    finally:
        with suppress(ValueError):  # still running in its thread (a cancelled run)
            batches.close()
    return RunResult(
        outcomes=[finished[i] for i in seen if i in finished],
        teachers=engine.order,
        router=engine.router.name,
        router_state=engine.router.state(),
        elapsed_s=time.perf_counter() - start,
    )
