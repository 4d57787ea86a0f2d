"""The ``math`` reward: is the final answer right?

With a ``reference`` on the prompt, a candidate scores 1.0 when its final answer
(``reward.verifiers.extract``) equals it and 0.0 otherwise (also when it states no
answer). Without one, the candidates of the prompt vote: a candidate scores the share
of the prompt's answers (every teacher's, every sample's) that agree with its own, so
the majority answer wins; one answer alone gets a neutral 0.5 (nothing to agree with).

The vote needs all of a prompt's answers at once: the class is ``per_prompt``, so the
loop hands it each prompt's candidates in one batch (and rescores them all when a
router escalates), as it does for the pairwise judge.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import ClassVar

from arbitrage.records import Prompt
from reward.base import RewardModel, Score
from reward.verifiers.basis import AGREEMENT, REFERENCE, VERIFIED
from reward.verifiers.extract import answer_key, extract_answer, same_answer


class MathVerifier(RewardModel):
    """Scores final answers against the prompt's ``reference``, else by agreement.

    ``details``: ``math_answered`` (1.0 if an answer was found), and either
    ``basis_reference: 1.0`` with ``verified`` (1.0 right, 0.0 wrong), or
    ``basis_agreement: 1.0`` with ``math_voters`` (how many answers voted; a majority
    is no proof, so there is no ``verified``).

    Args:
        agreement: Vote among the candidates when a prompt has no reference; ``False``
            leaves such answers unscored (they cannot win).
    """

    name: ClassVar[str] = "math"
    per_prompt: ClassVar[bool] = True

    def __init__(self, *, agreement: bool = True) -> None:
        self.agreement = agreement

    async def ascore_batch(self, pairs: Sequence[tuple[Prompt, str]]) -> list[Score]:
        answers = [extract_answer(text, prompt.language) for prompt, text in pairs]
        votes: dict[str, Counter[str]] = {}
        for (prompt, _), answer in zip(pairs, answers, strict=True):
            if prompt.reference is None:
                votes.setdefault(prompt.id, Counter())
                if answer is not None:
                    votes[prompt.id][answer_key(answer)] += 1
        return [
            self._score(prompt, answer, votes.get(prompt.id))
            for (prompt, _), answer in zip(pairs, answers, strict=True)
        ]

    def _score(self, prompt: Prompt, answer: str | None, votes: Counter[str] | None) -> Score:
        answered = float(answer is not None)
        if prompt.reference is not None:
            right = answer is not None and same_answer(answer, prompt.reference)
            details = {"math_answered": answered, REFERENCE: 1.0, VERIFIED: float(right)}
            return Score(float(right), details)
        if not self.agreement or votes is None:
            return Score(None, {"math_answered": answered})
        voters = sum(votes.values())
        details = {"math_answered": answered, AGREEMENT: 1.0, "math_voters": float(voters)}
        if answer is None:
            return Score(0.0, details)
        if voters == 1:
            return Score(0.5, details)
        return Score(votes[answer_key(answer)] / voters, details)

    def describe(self) -> str:
        how = "reference, else agreement" if self.agreement else "reference only"
        return f"math verifier ({how})"
