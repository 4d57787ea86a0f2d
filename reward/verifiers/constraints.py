"""The ``constraints`` reward: does the answer keep the prompt's instruction constraints?

Score = the fraction of the prompt's ``constraints`` (``reward.verifiers.checks``)
the answer meets; a prompt without constraints leaves its answers unscored (there is
nothing to verify). ``attach`` adds constraints to generated prompts (``pool.constraints``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, ClassVar

from arbitrage.records import Prompt
from reward.base import RewardModel, Score
from reward.verifiers.basis import CONSTRAINTS
from reward.verifiers.checks import check, sentence


class ConstraintVerifier(RewardModel):
    """Scores the share of the prompt's constraints an answer meets.

    ``details``: ``constraints_met`` and ``constraints_total``, ``basis_constraints: 1``,
    ``verified`` (1.0 when every constraint is met),
    and ``constraint.<kind>`` (1.0 met, 0.0 not) per constraint kind.
    """

    name: ClassVar[str] = "constraints"

    async def ascore_batch(self, pairs: Sequence[tuple[Prompt, str]]) -> list[Score]:
        # the language check loads lingua (CPU-bound): keep it off the event loop
        return await asyncio.to_thread(lambda: [self.verify(p, t) for p, t in pairs])

    def verify(self, prompt: Prompt, text: str) -> Score:
        """The score of one answer."""
        if not prompt.constraints:
            return Score(None)
        details: dict[str, float] = {CONSTRAINTS: 1.0}
        met = 0
        for constraint in prompt.constraints:
            ok = check(constraint, text, prompt.language) is None
            met += ok
            key = f"constraint.{constraint['kind']}"
            details[key] = min(details.get(key, 1.0), float(ok))
        total = len(prompt.constraints)
        details.update(
            constraints_met=float(met), constraints_total=float(total), verified=float(met == total)
        )
        return Score(met / total, details)

    def describe(self) -> str:
        return "constraints verifier"


def failures(prompt: Prompt, text: str) -> list[str]:
    """Why ``text`` fails each constraint of ``prompt`` it fails (for reports and tests)."""
    found = [check(c, text, prompt.language) for c in prompt.constraints]
    return [f"{c['kind']}: {why}" for c, why in zip(prompt.constraints, found, strict=True) if why]


#: What ``attach`` draws from; chosen to be checkable in any language.
POOL: tuple[dict[str, Any], ...] = (
    {"kind": "word_count", "max": 150},
    {"kind": "word_count", "min": 80},
    {"kind": "sentence_count", "max": 5},
    {"kind": "bullets", "count": 3},
    {"kind": "lowercase"},
    {"kind": "ends_with", "phrase": "Is there anything else I can help with?"},
    {"kind": "json"},
)
_CLASHES = {frozenset({"json", "bullets"}), frozenset({"json", "ends_with"}),
            frozenset({"json", "lowercase"}), frozenset({"lowercase", "ends_with"})}  # fmt: skip


def attach(prompts: Sequence[Prompt], n: int, seed: int = 0) -> list[Prompt]:
    """``prompts`` with ``n`` constraints each, drawn (seeded) from ``POOL`` without two
    of a kind or two that clash, asked for in a sentence appended to the text and kept
    in ``constraints``. The id stays the prompt's: it is the same slot, constrained."""
    from arbitrage import languages

    if n <= 0:
        return list(prompts)
    out = []
    for prompt in prompts:
        rng = random.Random(f"{seed}:{prompt.id}")
        chosen: list[dict[str, Any]] = []
        for candidate in rng.sample(POOL, len(POOL)):
            kinds = {c["kind"] for c in chosen}
            clash = any(frozenset({candidate["kind"], k}) in _CLASHES for k in kinds)
            if candidate["kind"] not in kinds and not clash:
                chosen.append(dict(candidate))
            if len(chosen) == n:
                break
        name = languages.name(prompt.language)
        text = prompt.text + "\n\n" + " ".join(sentence(c, name) for c in chosen)
        out.append(replace(prompt, text=text, constraints=prompt.constraints + chosen))
    return out
