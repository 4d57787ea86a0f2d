"""Score calibration: per-language normalisation and length-bias control.

Both keep running statistics per language, updated with each batch *before* the
batch is adjusted (so every answer of a batch is adjusted the same way), and
relearnt from the outcomes of an interrupted run (``replay``): a resumed run
adjusts exactly as an uninterrupted one would.

Within one prompt every candidate shares the language, so normalisation never
changes who wins a prompt; it changes what scores *mean across languages*:
mixture thresholds, preference-pair margins, quotas, report averages and what a
bandit router learns. Length control does change winners: that is its purpose.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from arbitrage.errors import ConfigError
from arbitrage.records import Outcome, Prompt
from reward.base import RewardModel, RewardWrapper, Score


@dataclass
class Moments:
    """Running mean, variance and covariance of (x, y) pairs (Welford's update)."""

    n: int = 0
    mean_x: float = 0.0
    mean_y: float = 0.0
    m2_x: float = 0.0
    m2_y: float = 0.0
    c_xy: float = 0.0

    def add(self, y: float, x: float = 0.0) -> None:
        """Add one observation."""
        self.n += 1
        dx = x - self.mean_x
        dy = y - self.mean_y
        self.mean_x += dx / self.n
        self.mean_y += dy / self.n
        self.m2_x += dx * (x - self.mean_x)
        self.m2_y += dy * (y - self.mean_y)
        self.c_xy += dx * (y - self.mean_y)

    @property
    def std_y(self) -> float:
        """Sample standard deviation of y (0 with fewer than two observations)."""
        return math.sqrt(self.m2_y / (self.n - 1)) if self.n > 1 else 0.0

    @property
    def slope(self) -> float:
        """Least-squares slope of y on x (0 when x has not varied)."""
        return self.c_xy / self.m2_x if self.m2_x > 0 else 0.0


def _observed(outcomes: Sequence[Outcome], key: str) -> list[tuple[Prompt, str, float]]:
    """(prompt, answer, the value stored under ``key``) of every candidate that has one."""
    return [
        (o.prompt, c.generation.text, c.reward_details[key])
        for o in outcomes
        for c in o.candidates
        if key in c.reward_details
    ]


class LanguageNormalised(RewardWrapper):
    """Per-language z-scores: ``(value - mean) / std`` of the language's scores so far.

    A language whose scores run high (classifier reward models often score English
    above Swahili for answers of equal quality) then favours no teacher in pooled
    statistics. Until a language has two distinct scores, values are only centred.
    The unnormalised value is kept in ``details["unnormalised"]``.
    """

    name: ClassVar[str] = "normalised"
    KEY: ClassVar[str] = "unnormalised"

    def __init__(self, inner: RewardModel) -> None:
        super().__init__(inner)
        self.stats: defaultdict[str, Moments] = defaultdict(Moments)

    async def adjust(self, pairs: Sequence[tuple[Prompt, str]], scores: list[Score]) -> list[Score]:
        for (prompt, _), score in zip(pairs, scores, strict=True):
            if score.value is not None:
                self.stats[prompt.language].add(score.value)
        out = []
        for (prompt, _), score in zip(pairs, scores, strict=True):
            if score.value is None:
                out.append(score)
                continue
            stats = self.stats[prompt.language]
            z = (score.value - stats.mean_y) / (stats.std_y or 1.0)
            out.append(Score(z, {**score.details, self.KEY: score.value}))
        return out

    def replay(self, outcomes: Sequence[Outcome]) -> None:
        for prompt, _, value in _observed(outcomes, self.KEY):
            self.stats[prompt.language].add(value)
        self.inner.replay(outcomes)

    def describe(self) -> str:
        return f"{self.inner.describe()}, z-scored per language"


class LengthControl(RewardWrapper):
    """Takes length out of the score, so verbosity does not win by itself.

    ``regress``: per language, the least-squares slope of score on log(characters)
    over the answers scored so far; when it is positive (longer scored higher) the
    score loses ``slope × (log length − mean log length)``, as in length-controlled
    win rates. Waits for ``min_samples`` answers of a language first. A negative
    slope (the reward already prefers brevity) is left alone.

    ``penalty``: the score loses ``per_1k_chars`` for every 1,000 characters.

    The adjustment is kept in ``details["length_adjustment"]``, the value before it
    in ``details["before_length"]``.
    """

    name: ClassVar[str] = "length"
    KEY: ClassVar[str] = "before_length"

    def __init__(
        self,
        inner: RewardModel,
        mode: Literal["regress", "penalty"] = "regress",
        *,
        per_1k_chars: float = 0.1,
        min_samples: int = 20,
    ) -> None:
        if mode not in ("regress", "penalty"):
            raise ConfigError(f"length control mode must be 'regress' or 'penalty', got {mode!r}")
        if per_1k_chars < 0 or min_samples < 2:
            raise ConfigError("length control needs per_1k_chars >= 0 and min_samples >= 2")
        super().__init__(inner)
        self.mode = mode
        self.per_1k_chars = per_1k_chars
        self.min_samples = min_samples
        self.stats: defaultdict[str, Moments] = defaultdict(Moments)

    async def adjust(self, pairs: Sequence[tuple[Prompt, str]], scores: list[Score]) -> list[Score]:
        if self.mode == "regress":
            for (prompt, text), score in zip(pairs, scores, strict=True):
                if score.value is not None:
                    self.stats[prompt.language].add(score.value, _log_length(text))
        out = []
        for (prompt, text), score in zip(pairs, scores, strict=True):
            if score.value is None:
                out.append(score)
                continue
            delta = self._adjustment(prompt.language, text)
            details = {**score.details, self.KEY: score.value, "length_adjustment": delta}
            out.append(Score(score.value + delta, details))
        return out

    def _adjustment(self, language: str, text: str) -> float:
        if self.mode == "penalty":
            return -self.per_1k_chars * len(text) / 1000
        stats = self.stats[language]
        if stats.n < self.min_samples or stats.slope <= 0:
            return 0.0
        return -stats.slope * (_log_length(text) - stats.mean_x)

    def replay(self, outcomes: Sequence[Outcome]) -> None:
        if self.mode == "regress":
            for prompt, text, value in _observed(outcomes, self.KEY):
                self.stats[prompt.language].add(value, _log_length(text))
        self.inner.replay(outcomes)

    def describe(self) -> str:
        how = "regressed out" if self.mode == "regress" else f"-{self.per_1k_chars}/1k chars"
        return f"{self.inner.describe()}, length {how}"


def _log_length(text: str) -> float:
    return math.log1p(len(text))
