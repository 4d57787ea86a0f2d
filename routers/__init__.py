"""Routers decide which teachers answer each prompt.

Built-in: ``random``, ``fixed``, ``reward`` (the oracle), ``learned``, ``bandit``, ``content`` and
``embedding`` (trained offline). A
third-party package adds its own under the entry-point group
``arbitrage.routers``; ``register`` adds one at run time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from arbitrage.registry import Registry
from routers.base import Route, Router

ENTRY_POINT_GROUP = "arbitrage.routers"

ROUTERS: dict[str, str | type[Router]] = {
    "random": "routers.random:RandomRouter",
    "fixed": "routers.fixed:FixedRouter",
    "reward": "routers.reward:RewardRouter",
    "learned": "routers.learned:LearnedRouter",
    "bandit": "routers.bandit:BanditRouter",
    "embedding": "routers.embedding:EmbeddingRouter",
    "content": "routers.content:ContentRouter",
}

registry: Registry[Router] = Registry("router", Router, ENTRY_POINT_GROUP, ROUTERS)
register = registry.register
available = registry.available


def get_router(name: str, teachers: Sequence[str], *, seed: int = 0, **params: Any) -> Router:
    """Build the router called ``name``; unknown names and params are ``ConfigError``s."""
    return registry.build(name, teachers, seed=seed, params=params)


__all__ = [
    "ENTRY_POINT_GROUP",
    "ROUTERS",
    "Route",
    "Router",
    "available",
    "get_router",
    "register",
    "registry",
]
