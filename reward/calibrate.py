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
from abc import abstractmethod
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


class RunningStep(RewardWrapper):
    """A step with running statistics: a batch's scores are all observed before any is
    adjusted, and each adjusted score keeps the value it was given under ``KEY``, from
    which ``replay`` relearns the statistics. Unscored answers pass through unobserved.

    Subclasses implement ``observe`` and ``transform``.
    """

    KEY: ClassVar[str]

    @abstractmethod
    def observe(self, prompt: Prompt, text: str, value: float) -> None:
        """Add one scored answer to the statistics."""

    @abstractmethod
    def transform(self, prompt: Prompt, text: str, value: float) -> tuple[float, dict[str, float]]:
        """The adjusted value, and details to add."""

    async def adjust(self, pairs: Sequence[tuple[Prompt, str]], scores: list[Score]) -> list[Score]:
        for (prompt, text), score in zip(pairs, scores, strict=True):
            if score.value is not None:
                self.observe(prompt, text, score.value)
        out = []
        for (prompt, text), score in zip(pairs, scores, strict=True):
            if score.value is None:
                out.append(score)
                continue
            value, extra = self.transform(prompt, text, score.value)
            out.append(Score(value, {**score.details, self.KEY: score.value, **extra}))
        return out

    def replay(self, outcomes: Sequence[Outcome]) -> None:
        for outcome in outcomes:
            for candidate in outcome.candidates:
                if self.KEY in candidate.reward_details:
                    value = candidate.reward_details[self.KEY]
                    self.observe(outcome.prompt, candidate.generation.text, value)
        self.inner.replay(outcomes)


class LanguageNormalised(RunningStep):
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

    def observe(self, prompt: Prompt, text: str, value: float) -> None:
        self.stats[prompt.language].add(value)

    def transform(self, prompt: Prompt, text: str, value: float) -> tuple[float, dict[str, float]]:
        stats = self.stats[prompt.language]
        return (value - stats.mean_y) / (stats.std_y or 1.0), {}

    def describe(self) -> str:
        return f"{self.inner.describe()}, z-scored per language"


class LengthControl(RunningStep):
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

    def observe(self, prompt: Prompt, text: str, value: float) -> None:
        if self.mode == "regress":
            self.stats[prompt.language].add(value, _log_length(text))

    def transform(self, prompt: Prompt, text: str, value: float) -> tuple[float, dict[str, float]]:
        delta = self._adjustment(prompt.language, text)
        return value + delta, {"length_adjustment": delta}

    def _adjustment(self, language: str, text: str) -> float:
        if self.mode == "penalty":
            return -self.per_1k_chars * len(text) / 1000
        stats = self.stats[language]
        if stats.n < self.min_samples or stats.slope <= 0:
            return 0.0
        return -stats.slope * (_log_length(text) - stats.mean_x)

    def describe(self) -> str:
        how = "regressed out" if self.mode == "regress" else f"-{self.per_1k_chars}/1k chars"
        return f"{self.inner.describe()}, length {how}"


def _log_length(text: str) -> float:
    return math.log1p(len(text))
