"""The offline default reward: a small bundled judge, language fidelity and a degeneracy check.

This is a PROXY. A 135M-parameter judge cannot check facts, arithmetic or code;
what it does is separate fluent on-topic answers from garbage. The language and
degeneracy terms are reliable for what they measure (wrong language, loops,
empty answers). Use ``judge`` or ``hf`` rewards for a dataset you care about.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import ClassVar

from arbitrage.errors import ConfigError
from arbitrage.records import Prompt
from reward.base import RewardModel, Score
from reward.fidelity import language_fidelity

# Chosen over longer rubric-style prompts, which the 135M judge answered at
# random (5/10 hand-made good-vs-bad pairs ordered vs 9/10 with this one). The
# language requirement is left to the fidelity term, which does it far better.
_JUDGE_PROMPT = """\
Question: {instruction}
Answer: {response}

Is this answer correct and helpful? Answer Yes or No."""

# The judge reads only the start of long texts: a 135M model gains nothing from more.
_MAX_INSTRUCTION_CHARS = 1000
_MAX_RESPONSE_CHARS = 1500
_MIN_WORDS = 3


def degeneracy(text: str) -> float:
    """How degenerate ``text`` is, in [0, 1]: the larger of its repetition and shortness.

    Repetition is the fraction of repeated word 3-grams (character 5-grams for
    text written without spaces); shortness is 1 for an empty text and falls to 0
    at ``_MIN_WORDS`` words.
    """
    words = text.split()
    compact = re.sub(r"\s+", "", text)
    if len(compact) > 8 * len(words):  # no spaces between words (Chinese, Japanese, Thai)
        tokens, n = list(compact), 5
        size = len(compact) / 5
    else:
        tokens, n = [w.lower() for w in words], 3
        size = len(words)
    shortness = max(0.0, (_MIN_WORDS - size) / _MIN_WORDS)
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    repetition = 1 - len(set(grams)) / len(grams) if grams else 0.0
    return max(shortness, repetition)


def _instruction(prompt: Prompt) -> str:
    # A later turn keeps its end (the new message), a first turn its start.
    if prompt.meta.get("history"):
        return prompt.instruction()[-_MAX_INSTRUCTION_CHARS:]
    return prompt.text[:_MAX_INSTRUCTION_CHARS]


class LocalJudgeReward(RewardModel):
    """Offline proxy reward: ``judge_yes × fidelity^fw − degeneracy_weight × degeneracy``.

    ``fw`` is ``fidelity_weight``. ``judge_yes`` is the judge model's probability
    of answering "Yes" (rather than "No") to "is this answer correct and
    helpful?", read from one forward pass; the language requirement is the
    fidelity term's job. Values lie in [-degeneracy_weight, 1].

    Args:
        judge_model: A bundled local model (see ``arbitrage.calls.local.MODELS``).
        fidelity_weight: Exponent on language fidelity; 0 ignores the language.
        degeneracy_weight: How much a fully degenerate answer loses.
        batch_size: Pairs per judge forward pass.
    """

    name: ClassVar[str] = "local"
    batched: ClassVar[bool] = True

    def __init__(
        self,
        judge_model: str = "smollm2-135m-instruct",
        *,
        fidelity_weight: float = 1.0,
        degeneracy_weight: float = 0.5,
        batch_size: int = 8,
    ) -> None:
        if fidelity_weight < 0 or degeneracy_weight < 0:
            raise ConfigError("local reward fidelity_weight and degeneracy_weight must be >= 0")
        if batch_size < 1:
            raise ConfigError(f"local reward batch_size must be at least 1, got {batch_size}")
        from arbitrage.calls.local import MODELS

        if judge_model not in MODELS:
            raise ConfigError(
                f"unknown local judge_model {judge_model!r}; choose from {', '.join(MODELS)}"
            )
        self.judge_model = judge_model
        self.fidelity_weight = fidelity_weight
        self.degeneracy_weight = degeneracy_weight
        self.batch_size = batch_size

    def _judge(self, pairs: Sequence[tuple[Prompt, str]]) -> list[float]:
        from arbitrage.calls.local import get_model

        conversations = [
            [
                {
                    "role": "user",
                    "content": _JUDGE_PROMPT.format(
                        instruction=_instruction(prompt),
                        response=completion[:_MAX_RESPONSE_CHARS],
                    ),
                }
            ]
            for prompt, completion in pairs
        ]
        model = get_model(self.judge_model)
        yes: list[float] = []
        for start in range(0, len(conversations), self.batch_size):
            chunk = conversations[start : start + self.batch_size]
            yes.extend(p["Yes"] for p in model.option_probs(chunk, ("Yes", "No")))
        return yes

    def _score(self, pairs: Sequence[tuple[Prompt, str]]) -> list[Score]:
        scores = []
        for (prompt, completion), yes in zip(pairs, self._judge(pairs), strict=True):
            fidelity = language_fidelity(completion, prompt.language)
            degenerate = degeneracy(completion)
            value = yes * fidelity**self.fidelity_weight - self.degeneracy_weight * degenerate
            scores.append(
                Score(
                    value,
                    {"judge_yes": yes, "language_fidelity": fidelity, "degeneracy": degenerate},
                )
            )
        return scores

    async def ascore_batch(self, pairs: Sequence[tuple[Prompt, str]]) -> list[Score]:
        # The judge and the language detector are CPU-bound: keep them off the event loop.
        return await asyncio.to_thread(self._score, pairs) if pairs else []

    def describe(self) -> str:
        return (
            f"local (offline PROXY: {self.judge_model} judge P(Yes) × language fidelity"
            f"^{self.fidelity_weight} − {self.degeneracy_weight} × degeneracy)"
        )
