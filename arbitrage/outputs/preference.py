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
from reward.verifiers.basis import basis, verdict

if TYPE_CHECKING:
    from datasets import Dataset


def build_pairs(
    outcomes: Sequence[Outcome],
    filtered: Mapping[str, str],
    *,
    min_margin: float,
    order: Sequence[str] = (),
) -> tuple[list[dict[str, Any]], Counter[str]]:
    """One pair per prompt with two or more scored answers whose rewards differ by ``min_margin``.

    ``filtered`` maps prompt ids whose winning answer failed a mixture filter to the
    reason: those prompts give no pair either (a refusal is no "chosen" answer).
    Returns the pairs and the count of prompts without one, by reason
    (``single_answer``, ``small_margin`` or the filter's reason).

    Where a verifier checked the answers (``reward.verifiers``), a prompt with an answer
    it found right and one it found wrong gives that pair instead, whatever the margin
    (``basis: verified``); other pairs carry the chosen answer's basis (``model``,
    ``reference``, ...).
    """
    rank = {name: i for i, name in enumerate(order)}
    pairs: list[dict[str, Any]] = []
    dropped: Counter[str] = Counter()
    for outcome in outcomes:
        if outcome.prompt.id in filtered:
            dropped[filtered[outcome.prompt.id]] += 1
            continue
        verified = _verified_pair(outcome.candidates, rank)
        if verified is not None:
            (chosen, rejected), how = verified, "verified"
        else:
            scored = [c for c in outcome.candidates if c.scored]
            if len(scored) < 2:
                dropped["single_answer"] += 1
                continue
            ranked = sorted(scored, key=lambda c: (-_reward(c), rank.get(c.teacher, len(rank))))
            chosen, rejected = ranked[0], ranked[-1]
            margin = _reward(chosen) - _reward(rejected)
            if margin < min_margin or margin <= 0:
                dropped["small_margin"] += 1
                continue
            how = basis(chosen.reward_details)
        prompt = outcome.prompt
        pairs.append(
            {
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
        )
    return pairs, dropped


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
    from datasets import Dataset, Features, List, Value

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
    columns = {name: [r[name] for r in pairs] for name in features}
    return Dataset.from_dict(columns, features=features)
