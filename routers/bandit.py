"""The online arbitrage router: Thompson sampling over teachers per language × task, under a budget.

Each teacher's mean reward in each language × task cell has a Gaussian posterior,
shrunk towards the teacher's language-wide and overall means (a cell seen twice
does not override what the language says). For every prompt the teacher with the
highest posterior mean answers. A challenger is drawn among the others by
Thompson sampling; if it could still plausibly be better (probability above
``1 - confidence``) and the generation budget allows, it answers too and the
reward model keeps the better answer. Every scored answer, not only comparisons,
updates the posteriors, so the router learns from single generations as well.

``max_generations_per_prompt`` is an average: the router spends extra generations
only while the running mean stays within it. A truncated or empty answer is
observed as reward ``failure_reward``; a failed call (outage, rate limit) is not
observed at all.

Why Thompson sampling: it explores exactly as much as the posteriors are
uncertain, needs no tuning of an exploration rate, and handles N teachers and
non-stationary starts (new languages) gracefully. See docs/routers.md.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from arbitrage.errors import ConfigError
from arbitrage.records import Outcome, Prompt
from routers.base import Route, Router


class _Stats:
    __slots__ = ("n", "total")

    def __init__(self) -> None:
        self.n = 0
        self.total = 0.0

    def add(self, value: float) -> None:
        self.n += 1
        self.total += value

    def mean(self, prior_mean: float, prior_n: float) -> float:
        return (self.total + prior_n * prior_mean) / (self.n + prior_n)


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


class BanditRouter(Router):
    """Thompson-sampling router with a generation budget.

    Args:
        teachers: Configured teacher names.
        seed: Seed for the posterior samples.
        max_generations_per_prompt: Average generations per prompt to stay within
            (1.0 = never compare; ``len(teachers)`` = may compare all).
        confidence: Compare with the runner-up while P(best is best) is below this.
        noise: Prior guess of the reward's standard deviation around a cell mean.
        prior: Strength of the shrinkage towards coarser levels (pseudo-observations).
        prior_mean: Mean reward assumed before anything is seen.
        failure_reward: Reward observed for a truncated or empty answer.
    """

    name = "bandit"

    def __init__(
        self,
        teachers: Sequence[str],
        *,
        seed: int = 0,
        max_generations_per_prompt: float = 1.4,
        confidence: float = 0.9,
        noise: float = 0.2,
        prior: float = 2.0,
        prior_mean: float = 0.5,
        failure_reward: float = 0.0,
    ) -> None:
        super().__init__(teachers, seed=seed)
        if max_generations_per_prompt < 1.0:
            raise ConfigError(
                f"router bandit: max_generations_per_prompt must be >= 1 "
                f"(got {max_generations_per_prompt})"
            )
        if not 0.5 <= confidence < 1.0:
            raise ConfigError(f"router bandit: confidence must be in [0.5, 1) (got {confidence})")
        if noise <= 0 or prior <= 0:
            raise ConfigError("router bandit: noise and prior must be > 0")
        self.budget = max_generations_per_prompt
        self.confidence = confidence
        self.noise = noise
        self.prior = prior
        self.prior_mean = prior_mean
        self.failure_reward = failure_reward
        self.routed = 0
        self.generations = 0
        self._overall: defaultdict[str, _Stats] = defaultdict(_Stats)
        self._language: defaultdict[tuple[str, str], _Stats] = defaultdict(_Stats)
        self._cell: defaultdict[tuple[str, str, str], _Stats] = defaultdict(_Stats)

    def posterior(self, teacher: str, language: str, task: str) -> tuple[float, float]:
        """Posterior mean and standard deviation of ``teacher``'s reward in a cell."""
        overall = self._overall[teacher].mean(self.prior_mean, self.prior)
        lang = self._language[(teacher, language)].mean(overall, self.prior)
        cell = self._cell[(teacher, language, task)]
        mean = cell.mean(lang, self.prior)
        return mean, self.noise / math.sqrt(cell.n + self.prior)

    def _choose(self, prompt: Prompt) -> Route:
        post = {t: self.posterior(t, prompt.language, prompt.task) for t in self.teachers}
        order = {t: i for i, t in enumerate(self.teachers)}
        # The likely winner always answers; exploration happens through comparisons,
        # so quality never drops below the greedy choice.
        best = max(self.teachers, key=lambda t: (post[t][0], -order[t]))
        allowance = self.budget * (self.routed + 1) - self.generations
        if len(self.teachers) == 1 or allowance < 2:
            return Route([best], "exploit")
        # The challenger is drawn by Thompson sampling among the others.
        draws = {t: self.rng.gauss(*post[t]) for t in self.teachers if t != best}
        rival = max(draws, key=lambda t: (draws[t], -order[t]))
        (mb, sb), (mr, sr) = post[best], post[rival]
        p_best = _phi((mb - mr) / math.sqrt(sb * sb + sr * sr))
        if p_best < self.confidence:
            return Route([best, rival], "explore")
        return Route([best], "exploit")

    def rank(self, prompt: Prompt) -> list[str]:
        """Teachers by posterior mean reward for the prompt's language × task."""
        order = {t: i for i, t in enumerate(self.teachers)}
        means = {t: self.posterior(t, prompt.language, prompt.task)[0] for t in self.teachers}
        return sorted(self.teachers, key=lambda t: (-means[t], order[t]))

    def route(self, prompts: Sequence[Prompt]) -> list[Route]:
        routes = []
        for prompt in prompts:
            route = self._choose(prompt)
            self.routed += 1
            self.generations += len(route.teachers)
            routes.append(route)
        return routes

    def update(self, outcomes: Sequence[Outcome]) -> None:
        for outcome in outcomes:
            lang, task = outcome.prompt.language, outcome.prompt.task
            for cand in outcome.candidates:
                status = cand.generation.status
                if status == "error":
                    continue
                value = cand.reward if cand.reward is not None else self.failure_reward
                t = cand.teacher
                self._overall[t].add(value)
                self._language[(t, lang)].add(value)
                self._cell[(t, lang, task)].add(value)

    def replay(self, outcomes: Sequence[Outcome]) -> None:
        self.routed += len(outcomes)
        self.generations += sum(o.n_generations for o in outcomes)
        self.update(outcomes)

    def state(self) -> dict[str, Any]:
        cells = sorted({(lang, task) for (_, lang, task) in self._cell})
        return {
            "routed": self.routed,
            "generations": self.generations,
            "mean_reward": {
                f"{lang}/{task}": {
                    t: round(self.posterior(t, lang, task)[0], 4) for t in self.teachers
                }
                for lang, task in cells
            },
        }
