"""Reward models score (prompt, completion) pairs; the highest-scoring teacher wins.

Built-in: ``judge`` (an LLM judge via litellm), ``hf`` (a Hugging Face
sequence-classification reward model) and ``local`` (a bundled small judge).
Each is imported only when asked for, so ``import reward`` pulls in neither
torch nor litellm.
"""

from __future__ import annotations

from typing import Any

from arbitrage.registry import check_params, lookup
from reward.base import RewardModel, Score

REWARDS: dict[str, str | type[RewardModel]] = {
    "judge": "reward.judge:JudgeReward",
    "pairwise": "reward.pairwise:PairwiseJudgeReward",
    "hf": "reward.hf:HFRewardModel",
    "local": "reward.local:LocalJudgeReward",
}


def get_reward(kind: str, **params: Any) -> RewardModel:
    """Build the reward model called ``kind``; unknown kinds and params are ``ConfigError``s."""
    cls = lookup(kind, REWARDS, RewardModel, "reward")
    check_params(cls, params, f"reward {kind!r}")
    return cls(**params)


__all__ = ["REWARDS", "RewardModel", "Score", "get_reward"]
