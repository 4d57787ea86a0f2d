"""Fixed routing: a preset expert teacher per language (and optionally per task)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from arbitrage.errors import ConfigError
from arbitrage.records import Prompt
from routers.base import Route, Router


class FixedRouter(Router):
    """Route by a map, most specific key first: ``"lang/task"``, ``"lang"``, ``"*/task"``.

    Args:
        teachers: Configured teacher names.
        map: e.g. ``{"sw": "aya", "fr/coding": "gpt", "*/math": "qwen"}``.
        default: Teacher for prompts no key matches (default: the first teacher).
    """

    name = "fixed"

    def __init__(
        self,
        teachers: Sequence[str],
        *,
        seed: int = 0,
        map: Mapping[str, str] | None = None,
        default: str | None = None,
    ) -> None:
        super().__init__(teachers, seed=seed)
        self.map = dict(map or {})
        self.default = default or self.teachers[0]
        for key, teacher in [*self.map.items(), ("default", self.default)]:
            if teacher not in self.teachers:
                raise ConfigError(
                    f"router fixed: {key!r} maps to unknown teacher {teacher!r} "
                    f"(teachers: {', '.join(self.teachers)})"
                )

    def pick(self, prompt: Prompt) -> str:
        for key in (f"{prompt.language}/{prompt.task}", prompt.language, f"*/{prompt.task}"):
            if key in self.map:
                return self.map[key]
        return self.default

    def route(self, prompts: Sequence[Prompt]) -> list[Route]:
        return [Route([self.pick(p)], "fixed") for p in prompts]
