"""A verifier as a gate: an answer it finds wrong cannot win, whatever the judge says.

``VerifierGate`` scores each answer with the inner reward (a judge, a reward model, an
ensemble's panel) and with a verifier; an answer whose verifier score is below
``threshold`` is left unscored (it cannot win or enter the mixture, and the running
statistics after it never see it), the others keep the inner reward's score. An
answer the verifier cannot check (no reference, no tests, no constraints) passes
unchanged: an agreement vote (``math`` without a reference) is no check, and never
gates. Config: ``reward.verify: {kind: math}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from arbitrage.records import Outcome, Prompt
from reward.base import RewardModel, Score, gather_all
from reward.verifiers.basis import verdict

#: The label the gate's verifier details are kept under (``"gate.basis_reference"``).
LABEL = "gate"


class VerifierGate(RewardModel):
    """The inner reward's scores, with the answers ``verifier`` scores below ``threshold``
    left unscored.

    Details: the inner reward's, the verifier's value as ``gate`` and its details as
    ``gate.<key>``; a gated answer also has ``verifier_gated: 1`` and its ungated value in
    ``before_gate``.
    """

    name: ClassVar[str] = "verifier_gate"

    def __init__(self, inner: RewardModel, verifier: RewardModel, threshold: float = 1.0) -> None:
        if not 0 <= threshold <= 1:
            raise ValueError(f"verify threshold must lie in [0, 1], got {threshold}")
        self.inner = inner
        self.verifier = verifier
        self.threshold = threshold

    @property
    def batched(self) -> bool:  # type: ignore[override]
        return self.inner.batched or self.verifier.batched

    async def ascore_batch(self, pairs: Sequence[tuple[Prompt, str]]) -> list[Score]:
        if not pairs:
            return []
        scores, checks = await gather_all(
            [self.inner.ascore_batch(pairs), self.verifier.ascore_batch(pairs)]
        )
        out = []
        for score, check in zip(scores, checks, strict=True):
            details = {**score.details, **{f"{LABEL}.{k}": v for k, v in check.details.items()}}
            if check.value is None or verdict(check.details) is None:
                # nothing verified (no reference, tests or constraints; a vote is no
                # check): the inner score stands, and rested on the inner reward alone
                kept = {k: v for k, v in details.items() if not k.startswith(f"{LABEL}.basis_")}
                out.append(Score(score.value, kept))
                continue
            details[LABEL] = check.value
            if score.value is not None and check.value < self.threshold:
                details.update(verifier_gated=1.0, before_gate=score.value)
                out.append(Score(None, details))
            else:
                out.append(Score(score.value, details))
        return out

    def replay(self, outcomes: Sequence[Outcome]) -> None:
        self.inner.replay(outcomes)
        self.verifier.replay(outcomes)

    def parts(self) -> list[RewardModel]:
        return [*self.inner.parts(), *self.verifier.parts()]

    def describe(self) -> str:
        return f"{self.inner.describe()}, gated by {self.verifier.describe()} >= {self.threshold:g}"
