"""Reward models score (prompt, completion) pairs; the highest-scoring teacher wins.

Built-in: ``judge`` (an LLM judge via litellm), ``hf`` (a Hugging Face
sequence-classification reward model) and ``local`` (a bundled small judge).
Each is imported only when asked for, so ``import reward`` pulls in neither
torch nor litellm.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from arbitrage.config import closest_hint
from arbitrage.errors import ConfigError
from reward.base import RewardModel, Score

REWARDS: dict[str, str | type[RewardModel]] = {
    "judge": "reward.judge:JudgeReward",
    "hf": "reward.hf:HFRewardModel",
    "local": "reward.local:LocalJudgeReward",
}


def _resolve(ref: str | type[RewardModel]) -> type[RewardModel]:
    if not isinstance(ref, str):
        return ref
    module, _, attr = ref.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, RewardModel)):
        raise ConfigError(f"{ref} is not a RewardModel subclass")
    return cls


def get_reward(kind: str, **params: Any) -> RewardModel:
    """Build the reward model called ``kind``; unknown kinds and params are ``ConfigError``s."""
    if kind not in REWARDS:
        raise ConfigError(
            f"unknown reward {kind!r}{closest_hint(kind, REWARDS)}; "
            f"rewards: {', '.join(sorted(REWARDS))}"
        )
    cls = _resolve(REWARDS[kind])
    accepted = [
        p.name
        for p in list(inspect.signature(cls.__init__).parameters.values())[1:]
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    for key in params:
        if key not in accepted:
            raise ConfigError(
                f"unknown param {key!r} for reward {kind!r}{closest_hint(key, accepted)}; "
                f"params: {', '.join(accepted)}"
            )
    return cls(**params)


__all__ = ["REWARDS", "RewardModel", "Score", "get_reward"]
