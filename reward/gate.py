"""The language gate: an answer not written in the prompt's language does not win on content.

Reward models, classifier and judge alike, often score a fluent English answer to a
Swahili prompt above a clumsy Swahili one. The gate measures each answer's
language fidelity (``reward.fidelity``: lingua, offline) and either leaves answers
below a threshold unscored (``gate``: they cannot win or enter the mixture) or
subtracts ``penalty × (1 − fidelity)`` (``penalty``). Thresholds and penalties can
differ per language (``per_language``), e.g. lower for a language whose speakers
mix in English terms.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import ClassVar, Literal

from arbitrage.errors import ConfigError
from arbitrage.records import Prompt
from reward.base import RewardModel, RewardWrapper, Score
from reward.fidelity import language_fidelity


class LanguageGate(RewardWrapper):
    """Gates or penalises answers by language fidelity.

    Details gain ``language_fidelity`` (reused from the wrapped model when it has
    one, e.g. the ``local`` reward) and, for a gated answer, ``language_gated: 1``
    and its ungated value in ``before_gate``.

    Args:
        inner: The reward model whose scores are gated.
        mode: ``"gate"`` or ``"penalty"``.
        threshold: ``gate``: the lowest fidelity that keeps a score.
        penalty: ``penalty``: what an answer in a wholly other language loses.
        per_language: Language code → its own threshold (``gate``) or penalty
            (``penalty``); ``0`` turns the check off for that language.
    """

    name: ClassVar[str] = "language_gate"

    def __init__(
        self,
        inner: RewardModel,
        mode: Literal["gate", "penalty"] = "gate",
        *,
        threshold: float = 0.5,
        penalty: float = 1.0,
        per_language: Mapping[str, float] | None = None,
    ) -> None:
        if mode not in ("gate", "penalty"):
            raise ConfigError(f"language gate mode must be 'gate' or 'penalty', got {mode!r}")
        per_language = dict(per_language or {})
        if mode == "gate" and not all(0 <= t <= 1 for t in [threshold, *per_language.values()]):
            raise ConfigError("language gate thresholds must lie in [0, 1]")
        if min([penalty, *per_language.values()]) < 0:
            raise ConfigError("language penalties must be >= 0")
        super().__init__(inner)
        self.mode = mode
        self.threshold = threshold
        self.penalty = penalty
        self.per_language = per_language

    def level(self, language: str) -> float:
        """The threshold (``gate``) or penalty (``penalty``) for ``language``."""
        default = self.threshold if self.mode == "gate" else self.penalty
        return self.per_language.get(language, default)

    async def adjust(self, pairs: Sequence[tuple[Prompt, str]], scores: list[Score]) -> list[Score]:
        # lingua is CPU-bound (~1 ms an answer): keep it off the event loop.
        return await asyncio.to_thread(self._adjust, pairs, scores)

    def _adjust(self, pairs: Sequence[tuple[Prompt, str]], scores: list[Score]) -> list[Score]:
        out = []
        for (prompt, text), score in zip(pairs, scores, strict=True):
            level = self.level(prompt.language)
            if score.value is None or level == 0:
                out.append(score)
                continue
            fidelity = score.details.get("language_fidelity")
            if fidelity is None:
                fidelity = language_fidelity(text, prompt.language)
            details = {**score.details, "language_fidelity": fidelity}
            if self.mode == "penalty":
                out.append(Score(score.value - level * (1 - fidelity), details))
            elif fidelity < level:
                details.update(language_gated=1.0, before_gate=score.value)
                out.append(Score(None, details))
            else:
                out.append(Score(score.value, details))
        return out

    def describe(self) -> str:
        if self.mode == "gate":
            return f"{self.inner.describe()}, language-gated below fidelity {self.threshold}"
        return f"{self.inner.describe()}, language penalty {self.penalty}"
