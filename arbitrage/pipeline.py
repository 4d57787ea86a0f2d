"""The arbitrage loop: prompts stream through routing, generation, scoring and learning.

``Arbitrage.astream`` is the one implementation; ``arun`` collects it and ``run`` is
its sync edge.

Prompts are taken in *windows* of ``batch_size`` (the learning unit), and ``windows``
of them are in flight at once, so the teachers stay busy while the slowest call of a
window is still out; each prompt is scored by the reward as soon as its answers land.
Every decision (routing, escalation, the reward's running statistics, learning) is
taken in the fixed order of ``arbitrage.schedule``, so the same config gives the same
mixture whatever the latencies, on any engine. With ``windows: 1`` this is the
one-batch-at-a-time loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Collection,
    Coroutine,
    Iterable,
    Sequence,
)
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from arbitrage import schedule
from arbitrage.errors import (
    ArbitrageError,
    ConfigError,
    NoTeacherAvailable,
    RewardError,
    TeacherUnavailable,
)
from arbitrage.records import Candidate, Generation, Outcome, Prompt, pick_winner
from reward.base import RewardModel, RewardWrapper, Score
from routers.base import Route, Router, escalated

if TYPE_CHECKING:
    from datasets import Dataset
    from rich.progress import Progress

    from arbitrage.calls.teachers import Teacher
    from arbitrage.fusion import Fuser

T = TypeVar("T")
OutcomeSink = Callable[[Sequence[Outcome]], None]


@dataclass
class RunResult:
    """What a run produced: one ``Outcome`` per prompt, in pool order.

    ``outcomes`` is a list for ``Arbitrage.arun``; for ``arbitrage run`` it is read from
    the run directory at each pass (``arbitrage.run_outcomes.RunOutcomes``).
    """

    outcomes: Sequence[Outcome]
    teachers: list[str]
    router: str
    router_state: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def to_dataset(self) -> Dataset:
        """The SFT mixture: winners only, TRL conversational ``messages`` + provenance."""
        from arbitrage.outputs.mixture import build_mixture

        return build_mixture(self.outcomes)

    def summary(self) -> dict[str, Any]:
        """Wins, generations, failures and cost (see ``arbitrage.outputs.report.summarise``)."""
        from arbitrage.outputs.report import summarise

        return summarise(self.outcomes, self.teachers)


class _Stopped(Exception):
    """Raised in a window when the run is stopping: no new call is started."""


@dataclass
class _Slot:
    """One prompt of a window: whom it asked (rerouting edits this) and what it has."""

    prompt: Prompt
    route: list[str]
    reason: str
    candidates: tuple[Candidate, ...] = ()


@dataclass
class _Window:
    """A window in flight: its prompts, and each round's answers (raw-scored) to come."""

    index: int
    slots: list[_Slot]
    rounds: dict[int, asyncio.Task[dict[int, list[tuple[Generation, Score]]]]] = field(
        default_factory=dict
    )
    outcomes: list[Outcome] = field(default_factory=list)
    escalating: bool = True
    #: slot → its fused answer and raw scores to come (``fusion``; None: not fused)
    fusions: dict[int, asyncio.Task[Any]] = field(default_factory=dict)


class Arbitrage:
    """Route prompts to teachers, score the answers, keep the best.

    Args:
        teachers: The teachers (names must be unique).
        reward: Scores each (prompt, completion).
        router: Chooses teachers per prompt; default: reward routing (every teacher).
        batch_size: Prompts routed together; learning routers update between windows.
        windows: Windows of ``batch_size`` prompts in flight at once (see the module
            docstring); part of what decides routing, so part of a run's config.
        progress: A rich ``Progress`` to report on, or ``None`` for silence.
        fusion: Fuses each prompt's best answers into one (``arbitrage.fusion``), or
            ``None``.
    """

    def __init__(
        self,
        teachers: Sequence[Teacher],
        reward: RewardModel,
        router: Router | None = None,
        *,
        batch_size: int = 16,
        windows: int = 1,
        progress: Progress | None = None,
        fusion: Fuser | None = None,
    ) -> None:
        names = [t.name for t in teachers]
        if not names:
            raise ConfigError("at least one teacher is needed")
        if len(set(names)) != len(names):
            raise ConfigError(f"teacher names must be unique, got {names}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1 (got {batch_size})")
        if windows < 1:
            raise ConfigError(f"windows must be >= 1 (got {windows})")
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
        self.windows = windows
        self.progress = progress
        self.fusion = fusion
        self._scorer, self._steps = _unwrap(reward)
        self._calls: set[asyncio.Future[Any]] = set()
        self._stopping = False
        self._model_lock: asyncio.Lock | None = None

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
        """Run the loop over ``prompts`` and collect the outcomes in pool order.

        Args:
            prompts: The pool, in order.
            done: Outcomes of an earlier, interrupted run of the same pool: their
                prompts are not requested again and the router and the reward relearn
                from them.
            on_outcomes: Called with each committed window (e.g. to append to disk),
                so an interruption loses at most the windows in flight.
        """
        loop = asyncio.get_running_loop()
        start = loop.time()
        finished = {o.prompt.id: o for o in done}
        self.resume(done)
        bar = self._bar(len(prompts), len(prompts) - sum(p.id not in finished for p in prompts))
        async with aclosing(self.astream(prompts, skip=frozenset(finished))) as stream:
            async for outcomes in stream:
                for outcome in outcomes:
                    finished[outcome.prompt.id] = outcome
                if on_outcomes is not None:
                    on_outcomes(outcomes)
                if bar is not None and self.progress is not None:
                    self.progress.advance(bar, len(outcomes))
        return RunResult(
            outcomes=[finished[p.id] for p in prompts if p.id in finished],
            teachers=self.order,
            router=self.router.name,
            router_state=self.router.state(),
            elapsed_s=loop.time() - start,
        )

    def resume(self, done: Sequence[Outcome]) -> None:
        """Let the router and the reward relearn an interrupted run's outcomes."""
        relearn(self.router, self.reward, done)

    async def astream(
        self,
        prompts: Iterable[Prompt] | AsyncIterable[Prompt],
        *,
        skip: Collection[str] = frozenset(),
    ) -> AsyncGenerator[list[Outcome], None]:
        """Every window's outcomes, in pool order, as each is committed.

        ``skip``: ids of prompts finished before (``resume`` relearns them); a prompt
        the pool repeats is asked again unless its id is in ``skip``.

        A budget stop or "every teacher down" lets the calls in flight land (they are
        paid for, and cached), hands on every window committed before it, and raises.
        """
        self._stopping = False
        self._model_lock = asyncio.Lock()
        rounds = len(self.order) - 1 if self.router.escalates() else 0
        source = _windows(prompts, skip, self.batch_size)
        flight: dict[int, _Window] = {}
        end: int | None = None  # the number of windows, once the source has run out
        try:
            for event in schedule.events(self.windows, rounds):
                k = event.window
                if event.kind == "route":
                    if end is None and not self._failed(flight.values()):
                        batch = await anext(source, None)
                        if batch is None:
                            end = k
                        else:
                            flight[k] = self._start(k, batch)
                    elif end is None:
                        end = k
                elif k in flight and event.kind == "settle":
                    await self._settle(flight[k], event.round, rounds)
                elif k in flight:  # commit
                    await self._fused(flight[k])  # in flight until then: a stop drains it
                    window = flight.pop(k)
                    self.router.update([o.per_teacher() for o in window.outcomes])
                    yield window.outcomes
                if end is not None and not flight:
                    return
        except ArbitrageError:
            await self._drain(flight.values())
            raise
        finally:
            for window in flight.values():
                for task in [*window.rounds.values(), *window.fusions.values()]:
                    task.cancel()
            for call in list(self._calls):
                call.cancel()

    def _failed(self, flight: Iterable[_Window]) -> bool:
        """A round in flight failed (budget, no teacher): route no more."""
        return any(
            task.done() and not task.cancelled() and task.exception() is not None
            for w in flight
            for task in w.rounds.values()
        )

    async def _drain(self, flight: Iterable[_Window]) -> None:
        """Start no call; let those in flight land; end the rounds."""
        self._stopping = True
        while self._calls:
            await asyncio.wait(set(self._calls))
        tasks = [t for w in flight for t in [*w.rounds.values(), *w.fusions.values()]]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _bar(self, total: int, completed: int = 0) -> Any:
        if self.progress is None:
            return None
        return self.progress.add_task("prompts", total=total, completed=completed)

    def _start(self, index: int, prompts: list[Prompt]) -> _Window:
        """Route a window and send its first calls."""
        up = [name for name in self.order if self.teachers[name].available()]
        if not up:
            raise NoTeacherAvailable(self._all_down())
        routes = self._routes(prompts, up)
        slots = [
            _Slot(p, list(dict.fromkeys(r.teachers)), r.reason)
            for p, r in zip(prompts, routes, strict=True)
        ]
        window = _Window(index, slots)
        asked = {i: list(s.route) for i, s in enumerate(slots)}
        window.rounds[0] = asyncio.ensure_future(self._round(slots, asked))
        return window

    def _routes(self, prompts: list[Prompt], up: list[str]) -> list[Route]:
        """The router's routes; a prompt pinned to a teacher (a later turn of a
        conversation that keeps its first turn's teacher: ``arbitrage.prompts.conversation``) goes
        to it, and the router neither routes nor escalates it."""
        free = [p for p in prompts if self._pin(p) is None]
        routed = iter(self.router.route_available(free, up) if free else ())
        return [
            Route([pin], "pinned") if (pin := self._pin(p)) is not None else next(routed)
            for p in prompts
        ]

    def _pin(self, prompt: Prompt) -> str | None:
        pin = prompt.meta.get("pin")
        return pin if pin in self.teachers else None

    async def _settle(self, window: _Window, round_: int, rounds: int) -> None:
        """Round ``round_`` of ``window``: its final scores, then whom to ask next
        (a teacher that already answered is never asked again). A reward whose scores
        depend on the other answers (``per_prompt``) rescores the prompt's whole
        candidate set; any other scores only the new answers."""
        task = window.rounds.pop(round_, None)
        if task is None:
            return
        got = await task
        await self._adjust(window.slots, got, rescored=round_ > 0 and self.per_prompt)
        for i in got:
            slot = window.slots[i]
            reason = escalated(slot.reason) if round_ > 0 else slot.reason
            if round_ == 0:
                window.outcomes.append(self._outcome(slot, reason))
            else:
                window.outcomes[i] = self._outcome(slot, reason)
                slot.reason = reason
        if round_ == rounds:
            self._fuse_final(window, list(got))
            return
        free = [i for i, o in enumerate(window.outcomes) if self._pin(o.prompt) is None]
        asks = (
            self.router.escalate_checked([window.outcomes[i].per_teacher() for i in free])
            if free
            else []
        )
        asked = {
            i: [t for t in teachers if self.teachers[t].available()]
            for i, teachers in zip(free, asks, strict=True)
        }
        asked = {i: teachers for i, teachers in asked.items() if teachers}
        self._fuse_final(window, [i for i in got if i not in asked])
        if not asked:
            return
        for i, teachers in asked.items():
            # a teacher that already answered is in the route, so never a stand-in
            answered = dict.fromkeys(c.teacher for c in window.slots[i].candidates)
            window.slots[i].route = [*answered, *teachers]
        window.rounds[round_ + 1] = asyncio.ensure_future(self._round(window.slots, asked))

    def _outcome(self, slot: _Slot, reason: str | None = None) -> Outcome:
        winner = pick_winner(slot.candidates, self.order)
        return Outcome(slot.prompt, slot.candidates, winner, routed_by=reason or slot.reason)

    # Fusion (arbitrage/fusion.py): started once a prompt has its last answers, scored
    # (the adjusting steps, in order) when its window commits.

    def _fuse_final(self, window: _Window, final: Iterable[int]) -> None:
        """Start the fusion of each ``final`` slot (it will get no more answers)."""
        if self.fusion is None:
            return
        for i in final:
            sources = self.fusion.sources(window.slots[i].candidates, self.order)
            if sources:
                window.fusions[i] = asyncio.ensure_future(self._fuse(window.slots[i], sources))

    async def _fuse(
        self, slot: _Slot, sources: list[Candidate]
    ) -> tuple[list[Candidate], Generation, list[Score]]:
        """The fused answer and its raw scores (with the slot's answers first, for a
        reward that compares a prompt's answers)."""
        assert self.fusion is not None
        fused = await self._track(self.fusion.afuse(slot.prompt, sources))
        gens = [c.generation for c in slot.candidates] if self.per_prompt else []
        pairs = [(slot.prompt, g) for g in [*gens, fused]]
        if _batched(self._scorer):
            assert self._model_lock is not None
            async with self._model_lock:
                return sources, fused, await self._track(self._raw(pairs))
        return sources, fused, await self._track(self._raw(pairs))

    async def _fused(self, window: _Window) -> None:
        """Score each fused answer of ``window`` (slot order) and record its ``Fusion``."""
        for i in sorted(window.fusions):
            sources, fused, raw = await window.fusions.pop(i)
            slot = window.slots[i]
            scratch = _Slot(slot.prompt, [], slot.reason)
            gens = [c.generation for c in slot.candidates] if self.per_prompt else []
            await self._adjust(
                [scratch], {0: list(zip([*gens, fused], raw, strict=True))}, rescored=True
            )
            *rescored, candidate = scratch.candidates
            if self.per_prompt:  # the answers were scored again beside the fused one
                slot.candidates = tuple(rescored)
                by_key = {(c.teacher, c.sample): c for c in rescored}
                sources = [by_key.get((c.teacher, c.sample), c) for c in sources]
            outcome = self._outcome(slot, window.outcomes[i].routed_by)
            assert self.fusion is not None
            window.outcomes[i] = dataclasses.replace(
                outcome, fusion=self.fusion.decide(candidate, sources)
            )

    async def _round(
        self, slots: list[_Slot], asked: dict[int, list[str]]
    ) -> dict[int, list[tuple[Generation, Score]]]:
        """The answers of one round (``asked``: slot → teachers), each raw-scored by the
        innermost reward: a prompt at a time as its last answer lands, or, for a model
        that batches, the round at once (as the model would batch it in one process)."""
        gens = dict(
            zip(
                asked,
                await _gather(self._answers(slots[i], teachers) for i, teachers in asked.items()),
                strict=True,
            )
        )
        if self.per_prompt:
            gens = {i: [c.generation for c in slots[i].candidates] + g for i, g in gens.items()}
        if _batched(self._scorer):
            flat = [(slots[i].prompt, g) for i, gs in gens.items() for g in gs]
            assert self._model_lock is not None
            async with self._model_lock:
                scores = iter(await self._track(self._raw(flat)))
            return {i: [(g, next(scores)) for g in gs] for i, gs in gens.items()}
        scored = await _gather(
            self._track(self._raw([(slots[i].prompt, g) for g in gs])) for i, gs in gens.items()
        )
        return {i: list(zip(gens[i], s, strict=True)) for i, s in zip(gens, scored, strict=True)}

    async def _answers(self, slot: _Slot, teachers: list[str]) -> list[Generation]:
        got = await _gather(self._track(self._generate(slot, t)) for t in teachers)
        return [g for samples in got if samples is not None for g in samples]

    def _track(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        """``coro`` as a task the run waits for when it stops (it may be paid for).

        Scheduled here, not when the caller first awaits: a caller cancelled before
        its first step (a stopping run cancels its rounds) would otherwise leave
        ``coro`` never started, and never closed."""
        if self._stopping:
            coro.close()
            stopped: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            stopped.set_exception(_Stopped())
            return stopped
        task = asyncio.ensure_future(coro)
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)
        return task

    async def _adjust(
        self,
        slots: list[_Slot],
        got: dict[int, list[tuple[Generation, Score]]],
        *,
        rescored: bool,
    ) -> None:
        """Run the reward's adjusting steps (running statistics: one window at a time,
        in order) over a round's raw scores and add the candidates to their slots."""
        flat = [(slots[i].prompt, g, s) for i, pairs in got.items() for g, s in pairs]
        ok = [k for k, (_, g, _) in enumerate(flat) if g.ok]
        scores = [Score(None) for _ in flat]
        if ok:
            pairs = [(flat[k][0], flat[k][1].text) for k in ok]
            adjusted = [flat[k][2] for k in ok]
            for step in self._steps:
                adjusted = await self._guard(step.adjust(pairs, adjusted), len(pairs))
            for k, score in zip(ok, adjusted, strict=True):
                scores[k] = score
        it = iter(scores)
        for i, answers in got.items():
            new = tuple(
                Candidate(g, score.value, score.details)
                for (g, _), score in zip(answers, [next(it) for _ in answers], strict=True)
            )
            slots[i].candidates = new if rescored else slots[i].candidates + new

    async def _raw(self, pairs: Sequence[tuple[Prompt, Generation]]) -> list[Score]:
        """The innermost reward's scores (``Score(None)`` for an answer not worth scoring)."""
        ok = [k for k, (_, g) in enumerate(pairs) if g.ok]
        scores = [Score(None) for _ in pairs]
        if ok:
            got = await self._guard(
                self._scorer.ascore_batch([(pairs[k][0], pairs[k][1].text) for k in ok]), len(ok)
            )
            for k, score in zip(ok, got, strict=True):
                scores[k] = score
        return scores

    async def _guard(self, coro: Any, n: int) -> list[Score]:
        try:
            got = list(await coro)
        except ArbitrageError:
            raise  # a budget stop or a config error says what it is
        except Exception as exc:
            raise RewardError(
                f"reward {self.reward.describe()} failed: {type(exc).__name__}: {exc}"
            ) from exc
        if len(got) != n:
            raise RewardError(
                f"reward {self.reward.describe()} returned {len(got)} scores for {n} answers"
            )
        return got

    async def _generate(self, slot: _Slot, teacher: str) -> list[Generation] | None:
        """One teacher's answers (its ``samples``). A teacher whose circuit is open is
        dropped from the route if another of its teachers is up, else replaced by the
        router's best-ranked teacher that is up."""
        route = slot.route
        while True:
            if self.teachers[teacher].available():
                try:
                    return await self.teachers[teacher].asample(slot.prompt)
                except TeacherUnavailable:
                    pass
            self.teachers[teacher].stats.rerouted += 1
            if any(self.teachers[t].available() for t in route if t != teacher):
                route.remove(teacher)
                return None
            spare = next(
                (
                    t
                    for t in self.router.rank(slot.prompt)
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


def relearn(router: Router, reward: RewardModel, done: Sequence[Outcome]) -> None:
    """What a resumed run replays of outcomes read back: the router each prompt's last
    outcome once, the reward every outcome as read (a repeated prompt counted as often as
    it was scored). ``arbitrage.checkpoint`` replays appended windows through this too."""
    if done:
        router.replay([o.per_teacher() for o in {o.prompt.id: o for o in done}.values()])
    reward.replay(done)


def _unwrap(reward: RewardModel) -> tuple[RewardModel, list[RewardWrapper]]:
    """The reward's innermost scorer and its adjusting steps, innermost first. A wrapper
    that scores in its own way (overrides ``ascore_batch``) counts as a scorer."""
    steps: list[RewardWrapper] = []
    while (
        isinstance(reward, RewardWrapper)
        and type(reward).ascore_batch is RewardWrapper.ascore_batch
    ):
        steps.append(reward)
        reward = reward.inner
    return reward, steps[::-1]


def _batched(scorer: RewardModel) -> bool:
    return bool(getattr(scorer, "batched", False))


async def _gather(aws: Iterable[Any]) -> list[Any]:
    """``asyncio.gather`` whose siblings keep running when one fails (the run drains
    them: they may be paid for)."""
    return list(await asyncio.gather(*aws))


async def _windows(
    prompts: Iterable[Prompt] | AsyncIterable[Prompt], skip: Collection[str], size: int
) -> AsyncIterator[list[Prompt]]:
    batch: list[Prompt] = []
    if isinstance(prompts, AsyncIterable):
        async for prompt in prompts:
            if prompt.id not in skip:
                batch.append(prompt)
                if len(batch) == size:
                    yield batch
                    batch = []
    else:
        for prompt in prompts:
            if prompt.id not in skip:
                batch.append(prompt)
                if len(batch) == size:
                    yield batch
                    batch = []
    if batch:
        yield batch
