"""The arbitrage loop: route a batch → generate → score → pick winners → let the router learn.

``Arbitrage.arun`` is the one implementation; ``Arbitrage.run`` is its sync edge.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from arbitrage.errors import (
    ArbitrageError,
    ConfigError,
    NoTeacherAvailable,
    RewardError,
    TeacherUnavailable,
)
from arbitrage.records import Candidate, Generation, Outcome, Prompt, pick_winner
from arbitrage.teachers import Teacher
from reward.base import RewardModel, Score
from routers.base import Router, escalated

if TYPE_CHECKING:
    from datasets import Dataset
    from rich.progress import Progress

OutcomeSink = Callable[[Sequence[Outcome]], None]


@dataclass
class RunResult:
    """What a run produced: one ``Outcome`` per prompt, in pool order."""

    outcomes: list[Outcome]
    teachers: list[str]
    router: str
    router_state: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def to_dataset(self) -> Dataset:
        """The SFT mixture: winners only, TRL conversational ``messages`` + provenance."""
        from arbitrage.mixture import build_mixture

        return build_mixture(self.outcomes)

    def summary(self) -> dict[str, Any]:
        """Wins, generations, failures and cost (see ``arbitrage.report.summarise``)."""
        from arbitrage.report import summarise

        return summarise(self.outcomes, self.teachers)


class Arbitrage:
    """Route prompts to teachers, score the answers, keep the best.

    Args:
        teachers: The teachers (names must be unique).
        reward: Scores each (prompt, completion).
        router: Chooses teachers per prompt; default: reward routing (every teacher).
        batch_size: Prompts routed together; learning routers update between batches.
        progress: A rich ``Progress`` to report on, or ``None`` for silence.
    """

    def __init__(
        self,
        teachers: Sequence[Teacher],
        reward: RewardModel,
        router: Router | None = None,
        *,
        batch_size: int = 16,
        progress: Progress | None = None,
    ) -> None:
        names = [t.name for t in teachers]
        if not names:
            raise ConfigError("at least one teacher is needed")
        if len(set(names)) != len(names):
            raise ConfigError(f"teacher names must be unique, got {names}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1 (got {batch_size})")
        if router is None:
            from routers.reward import RewardRouter

            router = RewardRouter(names)
        unknown = set(router.teachers) - set(names)
        if unknown:
            raise ConfigError(f"router knows teachers that are not configured: {sorted(unknown)}")
        self.teachers = {t.name: t for t in teachers}
        self.order = names
        self.reward = reward
        # Asked of the parts that make the calls: a wrapper (the language gate, length
        # control, an ensemble) does not compare answers itself, but what it wraps may.
        self.per_prompt = any(part.per_prompt for part in reward.parts())
        self.router = router
        self.batch_size = batch_size
        self.progress = progress

    def run(self, prompts: Sequence[Prompt], **kwargs: Any) -> RunResult:
        """Synchronous ``arun`` (do not call from inside a running event loop)."""
        return asyncio.run(self.arun(prompts, **kwargs))

    async def arun(
        self,
        prompts: Sequence[Prompt],
        *,
        done: Sequence[Outcome] = (),
        on_outcomes: OutcomeSink | None = None,
    ) -> RunResult:
        """Run the loop over ``prompts``.

        Args:
            prompts: The pool, in order.
            done: Outcomes of an earlier, interrupted run of the same pool: their
                prompts are not requested again and the router relearns from them.
            on_outcomes: Called with each finished batch (e.g. to append to disk),
                so an interruption loses at most the batch in flight.
        """
        start = time.perf_counter()
        finished = {o.prompt.id: o for o in done}
        if finished:
            self.router.replay(list(finished.values()))
        # As read: a repeated prompt counted as often as it was scored.
        self.reward.replay(done)
        todo = [p for p in prompts if p.id not in finished]
        bar = self._bar("prompts", len(prompts), completed=len(prompts) - len(todo))
        for i in range(0, len(todo), self.batch_size):
            batch = todo[i : i + self.batch_size]
            outcomes = await self._run_batch(batch)
            self.router.update(outcomes)
            for outcome in outcomes:
                finished[outcome.prompt.id] = outcome
            if on_outcomes is not None:
                on_outcomes(outcomes)
            if bar is not None and self.progress is not None:
                self.progress.advance(bar, len(batch))
        ordered = [finished[p.id] for p in prompts if p.id in finished]
        return RunResult(
            outcomes=ordered,
            teachers=self.order,
            router=self.router.name,
            router_state=self.router.state(),
            elapsed_s=time.perf_counter() - start,
        )

    def _bar(self, what: str, total: int, completed: int = 0) -> Any:
        if self.progress is None:
            return None
        return self.progress.add_task(what, total=total, completed=completed)

    async def _run_batch(self, batch: Sequence[Prompt]) -> list[Outcome]:
        up = [name for name in self.order if self.teachers[name].available()]
        if not up:
            raise NoTeacherAvailable(self._all_down())
        routes = self.router.route_available(batch, up)
        assigned = {
            p.id: list(dict.fromkeys(r.teachers)) for p, r in zip(batch, routes, strict=True)
        }
        by_prompt = await self._candidates(batch, await self._generate_all(batch, assigned))
        outcomes = []
        for prompt, route in zip(batch, routes, strict=True):
            cands = tuple(by_prompt[prompt.id])
            outcomes.append(
                Outcome(prompt, cands, pick_winner(cands, self.order), routed_by=route.reason)
            )
        return await self._escalate(outcomes)

    async def _escalate(self, outcomes: list[Outcome]) -> list[Outcome]:
        """Ask the router for second opinions until it wants none (at most N - 1 rounds).

        A reward whose scores depend on the other answers (``per_prompt``) rescores the
        prompt's whole candidate set; any other scores only the new answers."""
        for _ in range(len(self.order) - 1):
            asks = self.router.escalate_checked(outcomes)
            picked = [
                i
                for i, teachers in enumerate(asks)
                if any(self.teachers[t].available() for t in teachers)
            ]
            if not picked:
                break
            prompts = [outcomes[i].prompt for i in picked]
            asked = {
                outcomes[i].prompt.id: [t for t in asks[i] if self.teachers[t].available()]
                for i in picked
            }
            # a teacher that already answered is in the route, so it is never a stand-in
            assigned = {
                outcomes[i].prompt.id: [c.teacher for c in outcomes[i].candidates]
                + asked[outcomes[i].prompt.id]
                for i in picked
            }
            new = await self._generate_all(prompts, assigned, only=asked)
            old = [c.generation for i in picked for c in outcomes[i].candidates]
            by_prompt = await self._candidates(prompts, old + new if self.per_prompt else new)
            for i in picked:
                o = outcomes[i]
                got = tuple(by_prompt[o.prompt.id])
                cands = got if self.per_prompt else o.candidates + got
                outcomes[i] = Outcome(
                    o.prompt, cands, pick_winner(cands, self.order), escalated(o.routed_by)
                )
        return outcomes

    async def _candidates(
        self, prompts: Sequence[Prompt], gens: Sequence[Generation]
    ) -> dict[str, list[Candidate]]:
        """``gens`` scored, grouped by prompt id (every prompt has a list, maybe empty)."""
        scores = await self._score(prompts, gens)
        by_prompt: dict[str, list[Candidate]] = {p.id: [] for p in prompts}
        for gen, score in zip(gens, scores, strict=True):
            by_prompt[gen.prompt_id].append(Candidate(gen, score.value, score.details))
        return by_prompt

    async def _generate_all(
        self,
        prompts: Sequence[Prompt],
        assigned: dict[str, list[str]],
        *,
        only: dict[str, list[str]] | None = None,
    ) -> list[Generation]:
        """Every (prompt, teacher) answer of a round (``only``: the teachers to ask, when
        ``assigned`` also lists those that already answered)."""
        asked = only if only is not None else assigned
        jobs = [(p, t) for p in prompts for t in list(asked[p.id])]
        gen_bar = self._bar("  generating", len(jobs))

        async def generate(prompt: Prompt, teacher: str) -> Generation | None:
            gen = await self._generate(prompt, teacher, assigned[prompt.id])
            if gen_bar is not None and self.progress is not None:
                self.progress.advance(gen_bar)
            return gen

        tasks = [asyncio.ensure_future(generate(p, t)) for p, t in jobs]
        try:
            answered = await asyncio.gather(*tasks)
        except ArbitrageError:
            # Budget reached or every teacher down: the calls in flight are paid for, so
            # let them land in the cache (calls not yet sent fail fast) before stopping.
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        if gen_bar is not None and self.progress is not None:
            self.progress.remove_task(gen_bar)
        return [g for g in answered if g is not None]

    async def _generate(self, prompt: Prompt, teacher: str, route: list[str]) -> Generation | None:
        """One teacher's answer. A teacher whose circuit is open is dropped from the route
        if another of its teachers is up, else replaced by the router's best-ranked
        teacher that is up."""
        while True:
            if self.teachers[teacher].available():
                try:
                    return await self.teachers[teacher].agenerate(prompt)
                except TeacherUnavailable:
                    pass
            self.teachers[teacher].stats.rerouted += 1
            if any(self.teachers[t].available() for t in route if t != teacher):
                route.remove(teacher)
                return None
            spare = next(
                (
                    t
                    for t in self.router.rank(prompt)
                    if t not in route and self.teachers[t].available()
                ),
                None,
            )
            if spare is None:
                raise NoTeacherAvailable(self._all_down())
            route[route.index(teacher)] = spare
            teacher = spare

    def _all_down(self) -> str:
        return (
            "every teacher is out of rotation (circuit breakers open: "
            f"{', '.join(self.order)}); finished prompts are saved - "
            "rerun the same command later to resume"
        )

    async def _score(self, batch: Sequence[Prompt], gens: Sequence[Generation]) -> list[Score]:
        prompts = {p.id: p for p in batch}
        todo = [i for i, g in enumerate(gens) if g.ok]
        scores = [Score(None) for _ in gens]
        if not todo:
            return scores
        score_bar = self._bar("  scoring", len(todo))
        try:
            got = await self.reward.ascore_batch(
                [(prompts[gens[i].prompt_id], gens[i].text) for i in todo]
            )
        except ArbitrageError:
            raise  # a budget stop or a config error says what it is
        except Exception as exc:
            raise RewardError(
                f"reward {self.reward.describe()} failed: {type(exc).__name__}: {exc}"
            ) from exc
        if len(got) != len(todo):
            raise RewardError(
                f"reward {self.reward.describe()} returned {len(got)} scores "
                f"for {len(todo)} answers"
            )
        for i, score in zip(todo, got, strict=True):
            scores[i] = score
        if score_bar is not None and self.progress is not None:
            self.progress.remove_task(score_bar)
        return scores
