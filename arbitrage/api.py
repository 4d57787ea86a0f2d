"""Convenience entry points for the Python API."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from arbitrage.calls.teachers import Teacher
from arbitrage.prompts.personas import load_personas
from arbitrage.prompts.pool import awrite, plan
from arbitrage.records import Prompt


async def abuild_prompts(
    n_prompts: int,
    languages: Sequence[str],
    tasks: Sequence[str],
    *,
    personas: str = "bundled",
    persona_column: str = "persona",
    writer: Teacher | None = None,
    seed: int = 0,
) -> list[Prompt]:
    """A persona-seeded pool, balanced over languages × tasks (``writer=None``: templates)."""
    people = load_personas(personas, column=persona_column)
    return await awrite(plan(people, languages, tasks, n_prompts, seed=seed), writer, seed=seed)


def build_prompts(
    n_prompts: int, languages: Sequence[str], tasks: Sequence[str], **kwargs: object
) -> list[Prompt]:
    """Synchronous ``abuild_prompts``."""
    return asyncio.run(abuild_prompts(n_prompts, languages, tasks, **kwargs))  # type: ignore[arg-type]
