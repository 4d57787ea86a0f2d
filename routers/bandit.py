"""The online arbitrage router: per-language × task reward estimates, then a budgeted cascade.

Each teacher's mean reward is estimated per language × task cell, shrunk towards
the teacher's language-wide and overall means. How hard to shrink is estimated
from the run (empirical Bayes: the spread of rewards within a cell against the
spread between cells), as is everything else about the reward's scale — a judge
on 1–10, a win probability in [0, 1] and a 0/1 verifier all work untuned.

Each prompt goes to the teacher whose estimate is best (a Thompson draw, so
close teachers keep being compared), and once its answer is scored the cascade
in ``routers/cascade.py`` decides whether a second opinion is worth a generation
by its expected gain, spending ``max_generations_per_prompt`` on average.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from arbitrage.errors import ConfigError
from arbitrage.records import Prompt
from routers.cascade import DEFAULT_BUDGET, CascadeRouter


class _Stats:
    __slots__ = ("n", "squares", "total")

    def __init__(self) -> None:
        self.n = 0
        self.total = 0.0
        self.squares = 0.0

    def add(self, value: float) -> None:
        self.n += 1
        self.total += value
        self.squares += value * value

    def mean(self, prior_mean: float, prior_n: float) -> float:
        return (self.total + prior_n * prior_mean) / (self.n + prior_n)


def _strength(groups: list[tuple[_Stats, float]], noise: float) -> float:
    """Empirical-Bayes shrinkage (method of moments): noise variance over the variance of
    the group means around their parents' that noise alone does not explain."""
    if len(groups) < 2:
        return 4.0
    n_total = sum(s.n for s, _ in groups)
    between = sum(s.n * (s.total / s.n - parent) ** 2 for s, parent in groups)
    signal = (between - noise * len(groups)) / n_total
    return min(50.0, max(0.5, noise / signal)) if signal > 0 else 50.0


class CellModel:
    """Teacher × language × task reward means with empirical-Bayes shrinkage.

    Args:
        teachers: Teacher names.
        prior: Shrinkage strength in pseudo-observations; ``None`` estimates it.
    """

    def __init__(self, teachers: Sequence[str], prior: float | None = None) -> None:
        self.teachers = list(teachers)
        self.prior = prior
        self._all = _Stats()
        self._overall: defaultdict[str, _Stats] = defaultdict(_Stats)
        self._language: defaultdict[tuple[str, str], _Stats] = defaultdict(_Stats)
        self._cell: defaultdict[tuple[str, str, str], _Stats] = defaultdict(_Stats)
        self._fitted: tuple[float, float, float] | None = None

    def add(self, teacher: str, language: str, task: str, reward: float) -> None:
        self._all.add(reward)
        self._overall[teacher].add(reward)
        self._language[(teacher, language)].add(reward)
        self._cell[(teacher, language, task)].add(reward)
        self._fitted = None

    def _fit(self) -> tuple[float, float, float]:
        """(noise variance within a cell, shrinkage of a teacher towards all teachers,
        shrinkage of a cell towards its teacher), the last two in pseudo-observations."""
        if self._fitted is not None:
            return self._fitted
        within = sum(s.squares - s.total * s.total / s.n for s in self._cell.values() if s.n > 1)
        dof = sum(s.n - 1 for s in self._cell.values() if s.n > 1)
        total_var = (
            (self._all.squares - self._all.total**2 / self._all.n) / (self._all.n - 1)
            if self._all.n > 1
            else 0.0
        )
        noise = max(within / dof if dof > 0 else total_var, 1e-12)
        if self.prior is not None:
            self._fitted = (noise, self.prior, self.prior)
            return self._fitted
        grand = self._all.total / self._all.n if self._all.n else 0.0
        teachers = [(s, grand) for s in self._overall.values() if s.n > 1]
        cells = [
            (s, self._overall[t].total / self._overall[t].n)
            for (t, _, _), s in self._cell.items()
            if s.n > 1
        ]
        self._fitted = (noise, _strength(teachers, noise), _strength(cells, noise))
        return self._fitted

    @property
    def noise(self) -> float:
        """Standard deviation of a reward around its cell mean, as estimated so far."""
        return math.sqrt(self._fit()[0])

    @property
    def strength(self) -> float:
        """Pseudo-observations with which a cell is shrunk towards its teacher's mean."""
        return self._fit()[2]

    def posterior(self, teacher: str, language: str, task: str) -> tuple[float, float]:
        """Mean and standard error of ``teacher``'s reward in a cell."""
        noise, k_teacher, k = self._fit()
        grand = self._all.total / self._all.n if self._all.n else 0.0
        overall = self._overall[teacher].mean(grand, k_teacher)
        lang = self._language[(teacher, language)].mean(overall, k)
        cell = self._cell[(teacher, language, task)]
        spread = math.sqrt(noise) if self._all.n > 1 else 1.0
        return cell.mean(lang, k), spread / math.sqrt(cell.n + k)

    def cells(self) -> list[tuple[str, str]]:
        return sorted({(lang, task) for (_, lang, task) in self._cell})


class BanditRouter(CascadeRouter):
    """Per-cell reward estimates + the budgeted cascade (see ``CascadeRouter``).

    Args:
        teachers: Configured teacher names.
        seed: Seed for the Thompson draws.
        max_generations_per_prompt: Average generations per prompt to spend.
        prior: Shrinkage strength towards coarser levels (pseudo-observations);
            default: estimated from the run (empirical Bayes).
        **cascade: ``warmup``, ``explore``, ``horizon``, ``failure_reward``
            (see ``CascadeRouter``).
    """

    name = "bandit"

    def __init__(
        self,
        teachers: Sequence[str],
        *,
        seed: int = 0,
        max_generations_per_prompt: float = DEFAULT_BUDGET,
        prior: float | None = None,
        warmup: int = 0,
        explore: float = 0.0,
        horizon: int = 40,
        failure_reward: float | None = None,
    ) -> None:
        super().__init__(
            teachers,
            seed=seed,
            max_generations_per_prompt=max_generations_per_prompt,
            warmup=warmup,
            explore=explore,
            horizon=horizon,
            failure_reward=failure_reward,
        )
        if prior is not None and prior <= 0:
            raise ConfigError(f"router {self.name}: prior must be > 0 (got {prior})")
        self.cells = CellModel(self.teachers, prior)

    def posterior(self, teacher: str, language: str, task: str) -> tuple[float, float]:
        """Posterior mean and standard error of ``teacher``'s reward in a cell."""
        return self.cells.posterior(teacher, language, task)

    def predict(self, prompts: Sequence[Prompt]) -> list[dict[str, tuple[float, float]]]:
        return [
            {t: self.cells.posterior(t, p.language, p.task) for t in self.teachers} for p in prompts
        ]

    def observe(self, prompt: Prompt, rewards: dict[str, float]) -> None:
        for teacher, reward in rewards.items():
            self.cells.add(teacher, prompt.language, prompt.task, reward)

    def state(self) -> dict[str, Any]:
        return {
            **super().state(),
            "noise": round(self.cells.noise, 4),
            "shrinkage": round(self.cells.strength, 2),
            "mean_reward": {
                f"{lang}/{task}": {
                    t: round(self.cells.posterior(t, lang, task)[0], 4) for t in self.teachers
                }
                for lang, task in self.cells.cells()
            },
        }
