"""Reward routing, the oracle: every teacher answers, the reward model keeps the best.

The quality ceiling, at N generations (and N scorings) per prompt.
"""

from __future__ import annotations

from collections.abc import Sequence

from arbitrage.records import Prompt
from routers.base import Route, Router


class RewardRouter(Router):
    """Send every prompt to every teacher."""

    name = "reward"

    def route(self, prompts: Sequence[Prompt]) -> list[Route]:
        return [Route(list(self.teachers), "all") for _ in prompts]
