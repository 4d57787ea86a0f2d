"""The teachers and the reward model the driver's loop sees: ordinary ones whose calls
actors make (``Arbitrage`` is the single-process one, unchanged).

A driver's teacher is a ``Teacher`` whose call path has one stage and a different send
step: the run's call cache answers what it holds, and everything else is sent to a
generation worker (``WorkerSend``), which runs the whole single-process call path
there (retries, ``Retry-After``, the reply checks), its limits, breaker and budget held
by the gate. Every answer is stored in the cache the moment it arrives.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from arbitrage.calls.breaker import CircuitBreaker
from arbitrage.calls.budget import Budget
from arbitrage.calls.cache import CallCache
from arbitrage.calls.client import LLMClient
from arbitrage.calls.teachers import Teacher
from arbitrage.config import TeacherConfig
from arbitrage.errors import BudgetExceeded, ClusterError, RewardError, TeacherUnavailable
from arbitrage.executors.ray.workers import OverBudget, Refused
from arbitrage.records import Generation, Prompt
from reward.base import RewardModel, Score

MAX_RESTARTS = 3  # of a worker; then its calls fail and the run stops (resumable)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Dispatch:
    """Sends each call to the generation worker with the fewest calls of that teacher in
    flight (then the fewest in all), so every teacher's calls spread over every worker."""

    def __init__(self, workers: Sequence[Any]) -> None:
        self.workers = list(workers)
        self._load = [0] * len(self.workers)
        self._teacher_load: dict[str, list[int]] = {}

    async def call(
        self, teacher: str, request: dict[str, Any]
    ) -> Generation | Refused | OverBudget:
        """One call of ``teacher`` (its request: ``Teacher.request``), made by a worker."""
        from ray.exceptions import RayError, RayTaskError

        per = self._teacher_load.setdefault(teacher, [0] * len(self.workers))
        i = min(range(len(self.workers)), key=lambda w: (per[w], self._load[w]))
        self._load[i] += 1
        per[i] += 1
        try:
            reply: Generation | Refused | OverBudget = await self.workers[i].call.remote(
                teacher, request
            )
            return reply
        except RayTaskError as exc:  # raised in the worker: a bug, not a death
            cause = getattr(exc, "cause", None) or exc
            raise ClusterError(
                f"generation worker {i} failed: {type(cause).__name__}: {first_line(cause)}"
            ) from None
        except RayError as exc:
            raise ClusterError(
                f"generation worker {i} died past {MAX_RESTARTS} restarts "
                f"({first_line(exc)}); finished prompts are saved - rerun the same command "
                "to resume"
            ) from None
        finally:
            self._load[i] -= 1
            per[i] -= 1


class MirrorBreaker(CircuitBreaker):
    """The gate's view of a teacher's circuit, as of the driver's last look (for reports);
    after a refusal the driver routes elsewhere until the gate said to look again."""

    mirrored = "closed"

    def __init__(self, teacher: str) -> None:
        super().__init__(teacher)
        self.open_until = 0.0  # time.monotonic()

    @property
    def state(self) -> str:
        return self.mirrored

    def available(self) -> bool:
        return time.monotonic() >= self.open_until

    def refused(self, retry_in_s: float) -> None:
        """The gate refused a call: the circuit is open for ``retry_in_s`` more."""
        self.open_until = time.monotonic() + retry_in_s


class WorkerSend:
    """The send step of a driver's teacher: the whole call, made by a generation worker.

    Takes ``litellm.acompletion``'s keyword arguments, as any send step does, and
    returns the worker's ``Generation``.

    Raises:
        TeacherUnavailable: the gate found the circuit open.
        BudgetExceeded: the call could cross the run's ``budget_usd``.
        ClusterError: the worker failed or died past its restarts.
    """

    def __init__(self, dispatch: Dispatch, teacher: str, breaker: MirrorBreaker) -> None:
        self.dispatch = dispatch
        self.teacher = teacher
        self.breaker = breaker

    async def __call__(self, **request: Any) -> Generation:
        reply = await self.dispatch.call(self.teacher, request)
        if isinstance(reply, Refused):
            self.breaker.refused(reply.retry_in_s)
            raise TeacherUnavailable(
                f"teacher {self.teacher!r} is out of rotation (circuit open)",
                teacher=self.teacher,
            )
        if isinstance(reply, OverBudget):
            raise BudgetExceeded(reply.message)
        return reply


class RemoteTeacher(Teacher):
    """What the loop sees of a teacher: the run's call cache answers what it holds, a
    generation worker the rest (``WorkerSend``), and its answer is stored the moment it
    arrives. ``limits``, ``breaker`` and ``budget`` mirror the gate's (for the live panel
    and the report); the worker's call path applies them."""

    def __init__(
        self, config: TeacherConfig, dispatch: Dispatch, budget: Budget, cache: CallCache | None
    ) -> None:
        breaker = MirrorBreaker(config.name)
        client = LLMClient(
            config.name,
            config.model,
            send=WorkerSend(dispatch, config.name, breaker),
            cache=cache,
            retries=0,  # the worker retries
            timeout_s=None,  # and times each attempt
            label=f"teacher {config.name!r}",
        )
        super().__init__(config, budget=budget, breaker=breaker, client=client)


class RemoteReward(RewardModel):
    """What the loop sees of the reward model: each batch is split over the reward workers.

    Chunks are multiples of ``multiple`` (the model's own batch size), so a model that
    batches in order sees the batches it would see in one process; with ``by_prompt``
    they are cut only where the prompt changes instead (a pairwise judge compares the
    answers of one prompt with each other).
    """

    name: ClassVar[str] = "ray"

    def __init__(
        self, workers: Sequence[Any], multiple: int, description: str, *, by_prompt: bool = False
    ) -> None:
        self.workers = list(workers)
        self.multiple = max(1, multiple)
        self.description = description
        self.by_prompt = by_prompt
        # the workers' scores depend on the other answers to a prompt: the pipeline must
        # rescore an escalated prompt's answers as a set, as in one process
        self.per_prompt = by_prompt  # type: ignore[misc]

    async def ascore_batch(self, pairs: Sequence[tuple[Prompt, str]]) -> list[Score]:
        from ray.exceptions import RayError, RayTaskError

        if not pairs:
            return []
        chunks = self._chunks(pairs)
        try:
            scored = await asyncio.gather(
                *(w.score.remote(c) for w, c in zip(self.workers, chunks, strict=False))
            )
        except RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, Exception):
                raise cause from None
            raise RewardError(first_line(exc)) from None
        except RayError as exc:
            raise ClusterError(f"reward worker failed: {first_line(exc)}") from None
        return [score for chunk in scored for score in chunk]

    def _chunks(self, pairs: Sequence[tuple[Prompt, str]]) -> list[list[tuple[Prompt, str]]]:
        size = -(-len(pairs) // len(self.workers))
        size = -(-size // self.multiple) * self.multiple
        chunks: list[list[tuple[Prompt, str]]] = [[]]
        for i, pair in enumerate(pairs):
            cut = not self.by_prompt or (i > 0 and pair[0].id != pairs[i - 1][0].id)
            if cut and len(chunks[-1]) >= size:
                chunks.append([])
            chunks[-1].append(pair)
        return chunks

    def describe(self) -> str:
        return self.description
