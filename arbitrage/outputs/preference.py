"""Preference pairs for DPO: a prompt's highest- vs lowest-reward answer (as in Aya Expanse).

Rows are in TRL's conversational preference format::

    {"prompt": [{"role": "user", ...}], "chosen": [{"role": "assistant", ...}],
     "rejected": [{"role": "assistant", ...}], ...provenance}

A later turn of a conversation (``arbitrage.prompts.conversation``) gives a pair too: its
``prompt`` is the conversation so far, ending with the user's new message.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from arbitrage.records import Candidate, Outcome
from arbitrage.run_outcomes import OutcomeRows
from reward.verifiers.basis import basis, verdict

if TYPE_CHECKING:
    from datasets import Dataset


def build_pairs(
    outcomes: Sequence[Outcome],
    filtered: Mapping[str, str],
    *,
    min_margin: float,
    order: Sequence[str] = (),
) -> tuple[Sequence[dict[str, Any]], Counter[str]]:
    """One pair per prompt with two or more scored answers whose rewards differ by ``min_margin``.

    ``filtered`` maps prompt ids whose winning answer failed a mixture filter to the
    reason: those prompts give no pair either (a refusal is no "chosen" answer).
    Returns the pairs and the count of prompts without one, by reason
    (``single_answer``, ``small_margin`` or the filter's reason). The pairs are made
    again from ``outcomes`` whenever they are read (one pass finds the prompts that
    give one): they hold no text.

    Where a verifier checked the answers (``reward.verifiers``), a prompt with an answer
    it found right and one it found wrong gives that pair instead, whatever the margin
    (``basis: verified``); other pairs carry the chosen answer's basis (``model``,
    ``reference``, ...).
    """
    rank = {name: i for i, name in enumerate(order)}
    found: list[int] = []
    dropped: Counter[str] = Counter()
    for i, outcome in enumerate(outcomes):
        if outcome.prompt.id in filtered:
            dropped[filtered[outcome.prompt.id]] += 1
            continue
        picked = _pick(outcome, rank, min_margin)
        if isinstance(picked, str):
            dropped[picked] += 1
        else:
            found.append(i)

    def pair(outcome: Outcome) -> dict[str, Any]:
        picked = _pick(outcome, rank, min_margin)
        assert not isinstance(picked, str)  # it gave a pair when the pairs were found
        return _pair(outcome, *picked)

    return OutcomeRows(outcomes, found, pair), dropped


def _pick(
    outcome: Outcome, rank: Mapping[str, int], min_margin: float
) -> tuple[Candidate, Candidate, str] | str:
    """A prompt's (chosen, rejected, basis), or why it gives no pair."""
    verified = _verified_pair(outcome.candidates, rank)
    if verified is not None:
        return (*verified, "verified")
    scored = [c for c in outcome.candidates if c.scored]
    if len(scored) < 2:
        return "single_answer"
    ranked = sorted(scored, key=lambda c: (-_reward(c), rank.get(c.teacher, len(rank))))
    chosen, rejected = ranked[0], ranked[-1]
    margin = _reward(chosen) - _reward(rejected)
    if margin < min_margin or margin <= 0:
        return "small_margin"
    return chosen, rejected, basis(chosen.reward_details)


def _pair(outcome: Outcome, chosen: Candidate, rejected: Candidate, how: str) -> dict[str, Any]:
    prompt = outcome.prompt
    return {
        "prompt": prompt.messages(),  # a later turn: the shared history first
        "chosen": [{"role": "assistant", "content": chosen.generation.text}],
        "rejected": [{"role": "assistant", "content": rejected.generation.text}],
        "prompt_id": prompt.id,
        "language": prompt.language,
        "task": prompt.task,
        "chosen_teacher": chosen.teacher,
        "rejected_teacher": rejected.teacher,
        "chosen_reward": _reward(chosen),
        # a verified-wrong answer the gate left unscored has no reward
        "rejected_reward": rejected.reward,
        "margin": None if rejected.reward is None else _reward(chosen) - rejected.reward,
        "basis": how,
    }


def _verified_pair(
    candidates: Sequence[Candidate], rank: Mapping[str, int]
) -> tuple[Candidate, Candidate] | None:
    """A verifier's pair: the best-rewarded answer it found right as chosen, the lowest
    (an unscored one first) it found wrong as rejected; ``None`` without both."""
    right = [c for c in candidates if c.scored and verdict(c.reward_details) is True]
    wrong = [c for c in candidates if c.generation.ok and verdict(c.reward_details) is False]
    if not right or not wrong:
        return None
    chosen = min(right, key=lambda c: (-_reward(c), rank.get(c.teacher, len(rank))))
    return chosen, min(wrong, key=_reward)


def _reward(cand: Candidate) -> float:
    return float(cand.reward) if cand.reward is not None else float("-inf")


def pairs_to_dataset(pairs: Sequence[dict[str, Any]]) -> Dataset:
    """Pairs as an HF ``Dataset`` with a fixed schema (TRL's DPOTrainer takes it as is)."""
    from datasets import Features, List, Value

    from arbitrage.outputs.tables import to_dataset

    message = List({"role": Value("string"), "content": Value("string")})
    features = Features(
        {
            "prompt": message,
            "chosen": message,
            "rejected": message,
            "prompt_id": Value("string"),
            "language": Value("string"),
            "task": Value("string"),
            "chosen_teacher": Value("string"),
            "rejected_teacher": Value("string"),
            "chosen_reward": Value("float64"),
            "rejected_reward": Value("float64"),
            "margin": Value("float64"),
            "basis": Value("string"),
        }
    )
    return to_dataset(pairs, features)
