"""The learned router: learns who wins per language × task, then sends prompts to the likely winner.

It starts like reward routing (``warmup`` prompts go to every teacher), learns
win rates from every outcome where two or more teachers answered (a truncated or
empty answer counts as a loss; a failed call does not count), and then
routes each prompt to the teacher with the highest estimated win rate for its
language × task. With probability ``explore`` a prompt goes to the likely winner
plus ``explore_teachers - 1`` others, so the estimates keep improving.

Estimates are shrunk towards coarser levels (cell → language → overall →
uniform) with ``prior`` pseudo-comparisons, so a cell seen twice does not
override what the language as a whole says.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from arbitrage.errors import ConfigError
from arbitrage.records import Outcome, Prompt
from routers.base import Route, Router


class _Tally:
    def __init__(self) -> None:
        self.wins: defaultdict[str, float] = defaultdict(float)
        self.trials: defaultdict[str, int] = defaultdict(int)

    def rate(self, teacher: str, prior_rate: float, prior: float) -> float:
        return (self.wins[teacher] + prior * prior_rate) / (self.trials[teacher] + prior)


class LearnedRouter(Router):
    """Win-rate router with warm-up, exploration and hierarchical shrinkage.

    Args:
        teachers: Configured teacher names (ties go to the one listed first).
        seed: Seed for exploration draws.
        warmup: Number of prompts routed to every teacher before exploiting.
        explore: Probability of comparing the likely winner with other teachers.
        explore_teachers: How many teachers an exploration prompt goes to.
        prior: Strength of the shrinkage towards coarser levels (pseudo-comparisons).
        fallback: A prompt whose answers all failed or went unscored (cut at
            ``max_tokens``, in the wrong language, a failed call) is asked of the next
            teacher in rank, until one answer can win or every teacher has answered.
    """

    name = "learned"

    def __init__(
        self,
        teachers: Sequence[str],
        *,
        seed: int = 0,
        warmup: int = 20,
        explore: float = 0.1,
        explore_teachers: int = 2,
        prior: float = 2.0,
        fallback: bool = False,
    ) -> None:
        super().__init__(teachers, seed=seed)
        if warmup < 0:
            raise ConfigError(f"router learned: warmup must be >= 0 (got {warmup})")
        if not 0.0 <= explore <= 1.0:
            raise ConfigError(f"router learned: explore must be in [0, 1] (got {explore})")
        if explore_teachers < 2:
            raise ConfigError(
                f"router learned: explore_teachers must be >= 2 (got {explore_teachers})"
            )
        if prior <= 0:
            raise ConfigError(f"router learned: prior must be > 0 (got {prior})")
        self.warmup = warmup
        self.explore = explore
        self.explore_teachers = explore_teachers
        self.prior = prior
        self.fallback = fallback
        self.routed = 0
        self._overall = _Tally()
        self._by_language: defaultdict[str, _Tally] = defaultdict(_Tally)
        self._by_cell: defaultdict[tuple[str, str], _Tally] = defaultdict(_Tally)

    def win_rate(self, teacher: str, language: str, task: str) -> float:
        """Estimated probability that ``teacher`` wins a prompt of this language × task."""
        uniform = 1.0 / len(self.teachers)
        overall = self._overall.rate(teacher, uniform, self.prior)
        lang = self._by_language[language].rate(teacher, overall, self.prior)
        return self._by_cell[(language, task)].rate(teacher, lang, self.prior)

    def best(self, prompt: Prompt) -> str:
        """The likely winner for a prompt (config order breaks ties)."""
        rates = [self.win_rate(t, prompt.language, prompt.task) for t in self.teachers]
        return self.teachers[max(range(len(rates)), key=lambda i: (rates[i], -i))]

    def rank(self, prompt: Prompt) -> list[str]:
        """Teachers by estimated win rate for the prompt's language × task."""
        order = {t: i for i, t in enumerate(self.teachers)}
        rates = {t: self.win_rate(t, prompt.language, prompt.task) for t in self.teachers}
        return sorted(self.teachers, key=lambda t: (-rates[t], order[t]))

    def route(self, prompts: Sequence[Prompt]) -> list[Route]:
        routes = []
        for prompt in prompts:
            if self.routed < self.warmup or len(self.teachers) == 1:
                route = Route(list(self.teachers), "warmup")
            else:
                best = self.best(prompt)
                if self.rng.random() < self.explore:
                    others = [t for t in self.teachers if t != best]
                    extra = self.rng.sample(others, min(len(others), self.explore_teachers - 1))
                    route = Route([best, *extra], "explore")
                else:
                    route = Route([best], "exploit")
            self.routed += 1
            routes.append(route)
        return routes

    def escalates(self) -> bool:
        return self.fallback

    def escalate(self, outcomes: Sequence[Outcome]) -> list[Route]:
        """With ``fallback``: the next teacher in rank for a prompt without a winner."""
        routes = []
        for outcome in outcomes:
            asked = {c.teacher for c in outcome.candidates}
            left = [t for t in self.rank(outcome.prompt) if t not in asked]
            if self.fallback and outcome.winner is None and left:
                routes.append(Route(left[:1], "fallback"))
            else:
                routes.append(Route([]))
        return routes

    def update(self, outcomes: Sequence[Outcome]) -> None:
        for outcome in outcomes:
            # A truncated or empty answer loses to a usable one: that is the teacher's doing.
            # A failed call (rate limit, outage) says nothing about quality and is left out.
            scored = [c.teacher for c in outcome.candidates if not c.generation.failed]
            if len(scored) < 2 or outcome.winner is None:
                continue  # one answer is no comparison
            lang, task = outcome.prompt.language, outcome.prompt.task
            for tally in (self._overall, self._by_language[lang], self._by_cell[(lang, task)]):
                for teacher in scored:
                    tally.trials[teacher] += 1
                tally.wins[outcome.winner] += 1.0

    def replay(self, outcomes: Sequence[Outcome]) -> None:
        self.routed += len(outcomes)
        self.update(outcomes)

    def state(self) -> dict[str, Any]:
        cells = sorted(self._by_cell)
        return {
            "routed": self.routed,
            "win_rates": {
                f"{lang}/{task}": {t: round(self.win_rate(t, lang, task), 4) for t in self.teachers}
                for lang, task in cells
            },
            "comparisons": {
                f"{lang}/{task}": dict(self._by_cell[(lang, task)].trials) for lang, task in cells
            },
        }
