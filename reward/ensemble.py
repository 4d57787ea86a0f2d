"""Weighted ensembles of reward models and judges.

``Panel`` asks every member about every pair (concurrently) and keeps each
member's score in the details; ``WeightedSum`` combines them. They are two steps
so that a cluster run can score on workers (the panel) and combine on the driver,
where the running statistics live.

Members speak different scales (a judge's [0, 1], a classifier's logits), so by
default each member's scores are z-scored per language (running statistics, as in
``reward.calibrate``) before weighting: a weight then means the member's share of
the say, whatever its scale. An answer that any member could not score is left
unscored: the ensemble never stands in for a missing member.

    reward = ensemble([("rm", HFRewardModel("Skywork/..."), 1.0),
                       ("judge", JudgeReward("openai/gpt-4o-mini"), 2.0)])
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import ClassVar

from arbitrage.errors import ConfigError
from arbitrage.records import Outcome, Prompt
from reward.base import RewardModel, RewardWrapper, Score, gather_all
from reward.calibrate import Moments


class Panel(RewardModel):
    """Scores each pair with every member; ``details[label]`` holds each member's value.

    A member's own details are kept as ``"<label>.<key>"``; a ``language_fidelity``
    detail is also kept as is, for the language gate and the mixture filter. The
    panel's own value is the members' plain mean (``WeightedSum`` gives the real one).
    """

    name: ClassVar[str] = "panel"

    def __init__(self, members: Mapping[str, RewardModel]) -> None:
        if len(members) < 2:
            raise ConfigError(f"an ensemble needs at least two members, got {len(members)}")
        self.members = dict(members)

    @property
    def batched(self) -> bool:  # type: ignore[override]
        return any(m.batched for m in self.members.values())

    async def ascore_batch(self, pairs: Sequence[tuple[Prompt, str]]) -> list[Score]:
        if not pairs:
            return []
        results = await gather_all(m.ascore_batch(pairs) for m in self.members.values())
        by_member = dict(zip(self.members, results, strict=True))
        out = []
        for i in range(len(pairs)):
            details: dict[str, float] = {}
            values = []
            for label, scores in by_member.items():
                score = scores[i]
                details.update({f"{label}.{k}": v for k, v in score.details.items()})
                if "language_fidelity" in score.details:
                    details.setdefault("language_fidelity", score.details["language_fidelity"])
                if score.value is not None:
                    details[label] = score.value
                    values.append(score.value)
            mean = sum(values) / len(values) if len(values) == len(by_member) else None
            out.append(Score(mean, details))
        return out

    def replay(self, outcomes: Sequence[Outcome]) -> None:
        for member in self.members.values():
            member.replay(outcomes)

    def parts(self) -> list[RewardModel]:
        return [part for member in self.members.values() for part in member.parts()]

    def describe(self) -> str:
        return " + ".join(f"{label}={m.describe()}" for label, m in self.members.items())


class WeightedSum(RewardWrapper):
    """``Σ weight × member score / Σ weight`` over a panel's members.

    An answer the inner model left unscored (a member could not score it, or the
    language gate stopped it) stays unscored and does not enter the statistics.

    Args:
        inner: A ``Panel`` (or anything that puts each member's value in
            ``details[label]``).
        weights: Member label → weight (> 0).
        normalise: z-score each member per language (running statistics) first.
    """

    name: ClassVar[str] = "ensemble"

    def __init__(
        self, inner: RewardModel, weights: Mapping[str, float], *, normalise: bool = True
    ) -> None:
        if not weights or min(weights.values()) <= 0:
            raise ConfigError("ensemble weights must be > 0, one per member")
        super().__init__(inner)
        self.weights = dict(weights)
        self.normalise = normalise
        self.stats: defaultdict[tuple[str, str], Moments] = defaultdict(Moments)

    async def adjust(self, pairs: Sequence[tuple[Prompt, str]], scores: list[Score]) -> list[Score]:
        for (prompt, _), score in zip(pairs, scores, strict=True):
            if self._complete(score.value, score.details):
                self._observe(prompt.language, score.details)
        total = sum(self.weights.values())
        out = []
        for (prompt, _), score in zip(pairs, scores, strict=True):
            if not self._complete(score.value, score.details):
                out.append(Score(None, score.details))
                continue
            value = sum(
                weight * self._standard(label, prompt.language, score.details[label])
                for label, weight in self.weights.items()
            )
            out.append(Score(value / total, score.details))
        return out

    def _complete(self, value: float | None, details: Mapping[str, float]) -> bool:
        """Every member scored it, and nothing (the language gate) left it unscored."""
        return value is not None and all(label in details for label in self.weights)

    def _observe(self, language: str, details: Mapping[str, float]) -> None:
        if self.normalise:
            for label in self.weights:
                self.stats[label, language].add(details[label])

    def _standard(self, label: str, language: str, value: float) -> float:
        if not self.normalise:
            return value
        stats = self.stats[label, language]
        return (value - stats.mean_y) / (stats.std_y or 1.0)

    def replay(self, outcomes: Sequence[Outcome]) -> None:
        for outcome in outcomes:
            for candidate in outcome.candidates:
                details = candidate.reward_details
                # What adjust saw: the panel's value is None exactly when it was gated.
                seen = None if details.get("language_gated") else 0.0
                if self._complete(seen, details):
                    self._observe(outcome.prompt.language, details)
        self.inner.replay(outcomes)

    def describe(self) -> str:
        weights = ", ".join(f"{label} ×{w:g}" for label, w in self.weights.items())
        how = ", members z-scored per language" if self.normalise else ""
        return f"ensemble({self.inner.describe()}; {weights}{how})"


def ensemble(
    members: Sequence[tuple[str, RewardModel, float]], *, normalise: bool = True
) -> WeightedSum:
    """A weighted ensemble of ``(label, model, weight)`` members."""
    labels = [label for label, _, _ in members]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"ensemble member labels must be unique, got {labels}")
    panel = Panel({label: model for label, model, _ in members})
    return WeightedSum(panel, {label: w for label, _, w in members}, normalise=normalise)
