"""The Router base class.

A router decides, for each prompt of a batch, which teachers generate an answer.
Routing to one teacher is cheap; routing to several lets the reward model pick
the best (and gives learning routers a comparison to learn from).

A router may also *escalate*: once the answers it asked for are scored, the
pipeline calls ``escalate(outcomes)`` and asks the teachers it names for a second
(or third) opinion on those prompts only. A cascade sees how good the first
answer was before it pays for another.

A custom router is one subclass::

    class ShortestFirst(Router):
        name = "shortest"

        def route(self, prompts):
            return [Route([self.teachers[0]], "rule") for _ in prompts]
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from arbitrage.errors import RoutingError
from arbitrage.records import Outcome, Prompt

#: What an escalated outcome's ``routed_by`` ends with (``predicted+escalate``).
ESCALATED = "+escalate"


def escalated(reason: str) -> str:
    """``reason`` marked as escalated, once however many rounds there were."""
    return reason if reason.endswith(ESCALATED) else reason + ESCALATED


@dataclass(frozen=True)
class Route:
    """The teachers chosen for one prompt and why (``reason`` ends up in the dataset)."""

    teachers: list[str]
    reason: str = ""


class Router(ABC):
    """Base class: route a batch of prompts to teachers.

    Args:
        teachers: Names of the configured teachers, in config order.
        seed: Seed for any randomness, so runs are reproducible.
    """

    name: ClassVar[str] = "base"

    def __init__(self, teachers: Sequence[str], *, seed: int = 0) -> None:
        if not teachers:
            raise RoutingError(f"router {self.name!r} needs at least one teacher")
        self.teachers = list(teachers)
        self.rng = random.Random(seed)

    @abstractmethod
    def route(self, prompts: Sequence[Prompt]) -> list[Route]:
        """One ``Route`` per prompt, in order."""

    def rank(self, prompt: Prompt) -> list[str]:
        """Every teacher, most likely winner first, for ``prompt``: who stands in when a
        chosen teacher is out of rotation. Default: config order; learning routers
        rank by what they have learned."""
        return list(self.teachers)

    def route_available(self, prompts: Sequence[Prompt], available: Collection[str]) -> list[Route]:
        """``route``, kept to the ``available`` teachers (the pipeline passes those whose
        circuit is not open). A chosen teacher that is down is dropped; a prompt left
        with none goes to the best-ranked teacher that is up.

        Raises:
            RoutingError: ``available`` is empty, or ``route`` returned something unusable.
        """
        up = [t for t in self.teachers if t in available]
        if not up:
            raise RoutingError(f"router {self.name!r}: no teacher is available")
        routes = self.check(self.route(prompts), prompts)
        if len(up) == len(self.teachers):
            return routes
        kept = []
        for prompt, route in zip(prompts, routes, strict=True):
            teachers = [t for t in route.teachers if t in available]
            if teachers:
                kept.append(Route(teachers, route.reason))
            else:
                stand_in = next(t for t in self.rank(prompt) if t in available)
                kept.append(Route([stand_in], f"{route.reason}; stand-in"))
        return kept

    def escalate(self, outcomes: Sequence[Outcome]) -> list[Route]:
        """After a round of answers is scored: more teachers to ask, one ``Route`` per
        outcome (no teachers = that prompt is done). Called again after each round until
        every route is empty; a teacher that already answered is never asked again.
        Default: never escalate."""
        return [Route([]) for _ in outcomes]

    def escalates(self) -> bool:
        """Whether this router ever escalates (it overrides ``escalate``)."""
        return type(self).escalate is not Router.escalate

    def escalate_checked(self, outcomes: Sequence[Outcome]) -> list[list[str]]:
        """``escalate``, validated, keeping only teachers that have not answered yet."""
        routes = self.check(self.escalate(outcomes), [o.prompt for o in outcomes], allow_empty=True)
        asks = []
        for outcome, route in zip(outcomes, routes, strict=True):
            have = {c.teacher for c in outcome.candidates}
            asks.append([t for t in dict.fromkeys(route.teachers) if t not in have])
        return asks

    def update(self, outcomes: Sequence[Outcome]) -> None:  # noqa: B027 - optional hook
        """Learn from scored outcomes. Routers that do not learn ignore this."""

    def replay(self, outcomes: Sequence[Outcome]) -> None:
        """Catch up on outcomes routed in an earlier, interrupted run (default: ``update``)."""
        self.update(outcomes)

    def state(self) -> dict[str, Any]:
        """What the router has learned, JSON-serialisable (for reports)."""
        return {}

    def check(
        self, routes: Sequence[Route], prompts: Sequence[Prompt], *, allow_empty: bool = False
    ) -> list[Route]:
        """Validate a ``route`` (or, with ``allow_empty``, an ``escalate``) result; raises
        ``RoutingError`` naming the problem."""
        if len(routes) != len(prompts):
            raise RoutingError(
                f"router {self.name!r} returned {len(routes)} routes for {len(prompts)} prompts"
            )
        known = set(self.teachers)
        for route, prompt in zip(routes, prompts, strict=True):
            if not route.teachers and not allow_empty:
                raise RoutingError(f"router {self.name!r} chose no teacher for prompt {prompt.id}")
            unknown = [t for t in route.teachers if t not in known]
            if unknown:
                raise RoutingError(
                    f"router {self.name!r} chose unknown teacher {unknown[0]!r} "
                    f"for prompt {prompt.id}; configured: {', '.join(self.teachers)}"
                )
        return list(routes)
