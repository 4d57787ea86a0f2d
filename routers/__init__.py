"""Routers decide which teachers answer each prompt.

Built-in: ``random``, ``fixed``, ``reward`` (the oracle), ``learned``, ``bandit``, ``content`` and
``embedding`` (trained offline). A
third-party package adds its own under the entry-point group
``arbitrage.routers``; ``register`` adds one at run time.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Any

from arbitrage.registry import check_params, lookup
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


def register(name: str, router: type[Router]) -> None:
    """Make ``router`` available by ``name`` (e.g. from a YAML config)."""
    ROUTERS[name] = router


def available() -> dict[str, str | type[Router]]:
    """Built-in, registered and entry-point routers by name."""
    found: dict[str, str | type[Router]] = {
        ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)
    }
    return {**found, **ROUTERS}


def get_router(name: str, teachers: Sequence[str], *, seed: int = 0, **params: Any) -> Router:
    """Build the router called ``name``; unknown names and params are ``ConfigError``s."""
    cls = lookup(name, available(), Router, "router")
    check_params(cls, params, f"router {name!r}", skip=2)
    return cls(teachers, seed=seed, **params)


__all__ = ["ENTRY_POINT_GROUP", "ROUTERS", "Route", "Router", "available", "get_router", "register"]
