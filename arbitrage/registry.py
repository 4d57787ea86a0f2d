"""Name → class lookup, written once for routers and reward models alike.

A ``Registry`` holds built-in classes as ``"module:attr"`` references (imported on
first use, so listing them imports nothing heavy), finds a third-party package's
classes under its entry-point group, and takes more with ``register``. An unknown
name or constructor param is a ``ConfigError`` naming the closest valid one.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, Generic, TypeVar

from arbitrage.errors import ConfigError

T = TypeVar("T")


def closest_hint(key: str, valid: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest valid key, or ``""``."""
    match = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""


class Registry(Generic[T]):
    """Subclasses of ``base`` by name.

    Args:
        what: the word an error uses for one of them (``"router"``).
        base: the class every one of them subclasses.
        group: the entry-point group third-party packages declare theirs under.
        known: the built-in and registered ones; the registry writes into this mapping,
            so a module can expose it (``routers.ROUTERS``).
    """

    def __init__(
        self, what: str, base: type, group: str, known: MutableMapping[str, str | type[T]]
    ) -> None:
        self.what = what
        self.base = base
        self.group = group
        self.known = known

    def register(self, name: str, cls: type[T]) -> None:
        """Make ``cls`` available by ``name`` (e.g. from a YAML config)."""
        self.known[name] = cls

    def available(self) -> dict[str, str | type[T]]:
        """Built-in, registered and entry-point classes by name (a class, or the
        ``"module:attr"`` it is imported from); a registered name wins."""
        from importlib.metadata import entry_points

        found: dict[str, str | type[T]] = {
            ep.name: ep.value for ep in entry_points(group=self.group)
        }
        return {**found, **self.known}

    def get(self, name: str) -> type[T]:
        """The class called ``name``, imported if it is a reference."""
        known = self.available()
        if name not in known:
            raise ConfigError(
                f"unknown {self.what} {name!r}{closest_hint(name, known)}; "
                f"{self.what}s: {', '.join(sorted(known))}"
            )
        ref = known[name]
        if not isinstance(ref, str):
            return ref
        module, _, attr = ref.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"{self.what} {name!r}: cannot import {ref} ({exc})") from None
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise ConfigError(f"{self.what} {name!r}: {ref} is not a {self.base.__name__} subclass")
        return cls  # type: ignore[return-value]

    def build(self, name: str, *args: Any, params: Mapping[str, Any], **fixed: Any) -> T:
        """``cls(*args, **fixed, **params)`` for the class called ``name``.

        ``params`` come from a user (a config's ``params:``) and are checked against the
        constructor first; ``args`` and ``fixed`` (e.g. a router's teachers and seed) come
        from the caller and are not theirs to set.
        """
        import inspect

        cls = self.get(name)
        offered = [
            p.name
            for p in list(inspect.signature(cls).parameters.values())[len(args) :]
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in fixed
        ]
        for key in params:
            if key not in offered:
                raise ConfigError(
                    f"unknown param {key!r} for {self.what} {name!r}"
                    f"{closest_hint(key, offered)}; params: {', '.join(offered) or 'none'}"
                )
        return cls(*args, **fixed, **params)
