"""Name → class lookup shared by the router and reward registries."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any, TypeVar

from arbitrage.config import closest_hint
from arbitrage.errors import ConfigError

T = TypeVar("T")


def lookup(name: str, known: Mapping[str, str | type[T]], base: type, what: str) -> type[T]:
    """The class registered as ``name`` (a class, or ``"module:attr"`` imported on demand)."""
    if name not in known:
        raise ConfigError(
            f"unknown {what} {name!r}{closest_hint(name, known)}; "
            f"{what}s: {', '.join(sorted(known))}"
        )
    ref = known[name]
    if not isinstance(ref, str):
        return ref
    module, _, attr = ref.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{what} {name!r}: cannot import {ref} ({exc})") from None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(f"{what} {name!r}: {ref} is not a {base.__name__} subclass")
    return cls  # type: ignore[return-value]


def check_params(cls: type, params: Mapping[str, Any], what: str, *, skip: int = 1) -> None:
    """Reject a param the constructor does not take, naming the closest one it does."""
    accepted = [
        p.name
        for p in list(inspect.signature(cls).parameters.values())[skip - 1 :]
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "seed"
    ]
    for key in params:
        if key not in accepted:
            raise ConfigError(
                f"unknown param {key!r} for {what}{closest_hint(key, accepted)}; "
                f"params: {', '.join(accepted) or 'none'}"
            )
