"""The driver of a Ray run: the run's lifecycle and loop as in one process, with its
calls made by actors.

``RayExecutor`` is the executor (``arbitrage.executors.local``) that
``arbitrage.commands.run`` uses for ``engine: ray``: it starts the gate and the
workers, and gives the loop stand-in teachers and a stand-in reward model
(``remote.py``) that send each call to an actor.
The loop itself (routing, scoring order, learning, outcomes) is the same code as in a
single-process run, so the decisions are the same.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from arbitrage.calls.breaker import BreakerEvent
from arbitrage.calls.budget import Budget
from arbitrage.calls.cache import CallCache
from arbitrage.calls.teachers import TeacherStats, engine_report
from arbitrage.config import RunConfig
from arbitrage.errors import ClusterError
from arbitrage.executors.ray.remote import (
    MAX_RESTARTS,
    Dispatch,
    MirrorBreaker,
    RemoteReward,
    RemoteTeacher,
    first_line,
)
from arbitrage.executors.ray.session import NAMESPACE, ray_session
from arbitrage.executors.ray.workers import GenerationWorker, RewardWorker
from reward.base import RewardModel

if TYPE_CHECKING:
    from arbitrage.calls.teachers import Teacher

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
    from arbitrage.executors.ray.gate import Gate

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


class RayExecutor:
    """``engine: ray``: the teachers' calls made by generation workers and the reward's by
    reward workers (or, with ``scorer``, in this process), behind one gate that holds
    every limit and the budget for the whole run. The loop stays here, on the driver."""

    def __init__(self, config: RunConfig, scorer: RewardModel | None = None) -> None:
        self.config = config
        self.scorer = scorer
        self.teachers: list[RemoteTeacher] = []
        self._stack = ExitStack()
        self._actors: Actors | None = None
        self._cache: CallCache | None = None
        self._state: dict[str, Any] = {}
        self._seen_at = 0.0

    async def __aenter__(self) -> RayExecutor:
        ray = self._stack.enter_context(ray_session(self.config))
        try:
            self._actors = start_actors(ray, self.config, reward=self.scorer is None)
        except BaseException:
            self._stack.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self._actors is not None:
                self._actors.stop()
        finally:
            self._stack.close()

    async def parts(
        self, cache: CallCache | None, budget: Budget
    ) -> tuple[list[Teacher], RewardModel]:
        from arbitrage.factories import attach_reward

        assert self._actors is not None
        self._cache = cache
        dispatch = Dispatch(self._actors.workers)
        self.teachers = [RemoteTeacher(t, dispatch, budget, cache) for t in self.config.teachers]
        if self.scorer is not None:
            attach_reward(self.scorer, cache, budget)
            return list(self.teachers), self.scorer
        return list(self.teachers), await _remote_reward(self.config, self._actors.rewards)

    async def tick(self) -> None:
        """The workers' counters and the gate's state, at most once a second."""
        now = time.monotonic()
        if self._actors is not None and now - self._seen_at >= 1.0:
            self._seen_at = now
            self._state = await self._actors.refresh(self.teachers)

    async def report(self) -> dict[str, Any]:
        from arbitrage.factories import reward_spent

        assert self._actors is not None
        self._state = await self._actors.refresh(self.teachers)
        extra = _report(self.config, self.teachers, self._cache, self._actors, self._state)
        if self.scorer is not None:  # scored on the driver
            extra["engine"]["judge_usd"] = round(reward_spent(self.scorer), 6)
        return extra


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
    scorers = config.reward.scorers()
    models = [s for s in scorers if s.kind in ("local", "hf")]
    multiple = max((int(s.params.get("batch_size") or 8) for s in models), default=1)
    by_prompt: bool = await workers[0].per_prompt.remote()
    remote = RemoteReward(workers, multiple, description, by_prompt=by_prompt)
    remote.batched = bool(models)  # type: ignore[misc]  # a model scores a round at once
    return remote
