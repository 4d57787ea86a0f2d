"""Routers decide which teachers answer each prompt.

Built-in: ``random``, ``fixed``, ``reward`` (the oracle), ``learned``, ``bandit`` and
``embedding`` (trained offline). A
third-party package adds its own under the entry-point group
``arbitrage.routers``; ``register`` adds one at run time.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Any

from arbitrage.config import closest_hint
from arbitrage.errors import ConfigError
from routers.base import Route, Router

ENTRY_POINT_GROUP = "arbitrage.routers"

ROUTERS: dict[str, str | type[Router]] = {
    "random": "routers.random:RandomRouter",
    "fixed": "routers.fixed:FixedRouter",
    "reward": "routers.reward:RewardRouter",
    "learned": "routers.learned:LearnedRouter",
    "bandit": "routers.bandit:BanditRouter",
    "embedding": "routers.embedding:EmbeddingRouter",
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


def _resolve(ref: str | type[Router]) -> type[Router]:
    if not isinstance(ref, str):
        return ref
    module, _, attr = ref.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Router)):
        raise ConfigError(f"{ref} is not a Router subclass")
    return cls


def get_router(name: str, teachers: Sequence[str], *, seed: int = 0, **params: Any) -> Router:
    """Build the router called ``name``; unknown names and params are ``ConfigError``s."""
    known = available()
    if name not in known:
        raise ConfigError(
            f"unknown router {name!r}{closest_hint(name, known)}; "
            f"routers: {', '.join(sorted(known))}"
        )
    cls = _resolve(known[name])
    accepted = [
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.kind == p.KEYWORD_ONLY
    ]
    for key in params:
        if key not in accepted:
            raise ConfigError(
                f"unknown param {key!r} for router {name!r}{closest_hint(key, accepted)}"
            )
    return cls(teachers, seed=seed, **params)


__all__ = ["ENTRY_POINT_GROUP", "ROUTERS", "Route", "Router", "available", "get_router", "register"]
