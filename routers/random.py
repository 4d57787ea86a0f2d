"""Random routing: each prompt goes to one teacher drawn uniformly. The baseline."""

from __future__ import annotations

from collections.abc import Sequence

from arbitrage.records import Prompt
from routers.base import Route, Router


class RandomRouter(Router):
    """Send each prompt to one teacher chosen uniformly at random (seeded)."""

    name = "random"

    def route(self, prompts: Sequence[Prompt]) -> list[Route]:
        return [Route([self.rng.choice(self.teachers)], "random") for _ in prompts]
