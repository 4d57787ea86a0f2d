"""Reward models score (prompt, completion) pairs; the highest-scoring teacher wins.

Built-in: ``judge`` (a pointwise LLM judge via litellm), ``pairwise`` (an LLM judge
comparing two answers in both orders), ``hf`` (a Hugging Face sequence-classification
reward model) and ``local`` (a bundled small judge); the verifiers ``math``, ``code``
and ``constraints`` (``reward.verifiers``) check answers with a program. A third-party
package adds its own under the entry-point group ``arbitrage.rewards``; ``register``
adds one at run time. Each is imported only when asked for, so ``import reward`` pulls in neither
torch nor litellm.
"""

from __future__ import annotations

from typing import Any

from arbitrage.errors import ConfigError
from arbitrage.registry import Registry
from reward.base import RewardModel, RewardWrapper, Score

ENTRY_POINT_GROUP = "arbitrage.rewards"

REWARDS: dict[str, str | type[RewardModel]] = {
    "judge": "reward.judge:JudgeReward",
    "pairwise": "reward.pairwise:PairwiseJudgeReward",
    "hf": "reward.hf:HFRewardModel",
    "local": "reward.local:LocalJudgeReward",
    "math": "reward.verifiers.math:MathVerifier",
    "code": "reward.verifiers.code:CodeVerifier",
    "constraints": "reward.verifiers.constraints:ConstraintVerifier",
}

registry: Registry[RewardModel] = Registry("reward", RewardModel, ENTRY_POINT_GROUP, REWARDS)
register = registry.register
available = registry.available


def get_reward(kind: str, **params: Any) -> RewardModel:
    """Build the reward model called ``kind``; unknown kinds and params are ``ConfigError``s."""
    try:
        return registry.build(kind, params=params)
    except (TypeError, ValueError) as exc:  # a missing or mistyped param
        raise ConfigError(f"reward {kind!r}: {exc}") from None


__all__ = [
    "ENTRY_POINT_GROUP",
    "REWARDS",
    "RewardModel",
    "RewardWrapper",
    "Score",
    "available",
    "get_reward",
    "register",
    "registry",
]
