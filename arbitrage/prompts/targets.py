"""Row targets (``target_rows``): the run draws prompts in rounds until the mixture holds
the rows asked for, or a limit stops it.

A round is an ordinary run over the prompts not yet done. After it, the mixture is
built from every outcome on disk (filters and quotas, as the run's end builds it) and
its rows are counted per target: a total (key ``""``), or per ``"<language>/<task>"``.
A target short of rows gets more prompts, as many as its yield so far (rows per prompt)
says it needs, and 25 % more; they are appended to ``prompts.jsonl`` (marked with their
round in ``meta.round``), so an interrupted run resumes like any other. Synthesised
pools write the new prompts with the pool's writer (frames continue where the pool
left them); a prompts file gives its next rows. The rounds stop when every target is
met (the mixture then drops the surplus as ``over_target``, so the targets are met
exactly), when ``max_prompts`` would be passed, or when no new prompt can be drawn.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from arbitrage.errors import ArbitrageError
from arbitrage.records import Outcome, Prompt

if TYPE_CHECKING:
    from arbitrage.calls.teachers import Teacher
    from arbitrage.config import RunConfig
    from arbitrage.rundir import RunDir

#: The least yield (rows per prompt) a round is sized with: a target whose first prompts
#: all failed still gets a bounded next round.
MIN_YIELD = 0.1


class TargetNotMet(ArbitrageError):
    """The run stopped before ``target_rows`` was met; the outputs hold what it got."""


def targets_of(config: RunConfig) -> dict[str, int]:
    """``target_rows`` as ``{key: rows}``; the key of a total is ``""``."""
    target = config.target_rows
    if target is None:
        return {}
    return {"": target} if isinstance(target, int) else dict(target)


def _key(prompt: Prompt, targets: dict[str, int]) -> str | None:
    if "" in targets:
        return ""
    cell = f"{prompt.language}/{prompt.task}"
    return cell if cell in targets else None


class Rounds:
    """The rounds of one ``target_rows`` run: after each, what is kept and what to draw."""

    def __init__(self, config: RunConfig, run_dir: RunDir) -> None:
        self.config = config
        self.run_dir = run_dir
        self.targets = targets_of(config)
        self.limit = config.prompt_limit()
        self.kept: Counter[str] = Counter()
        self.drawn = 0  # prompts in the pool
        self.answered = 0  # prompts with an outcome: what the counts are from
        self.round = 0  # the last round drawn
        self.stopped: str | None = None  # why the rounds ended short of a target

    def count(self, outcomes: Sequence[Outcome]) -> Counter[str]:
        """Mixture rows per target key, from every outcome so far (targets not applied)."""
        from arbitrage.outputs.mixture import make_mixture

        names = [t.name for t in self.config.teachers]
        mixture = make_mixture(outcomes, self.config.mixture, teacher_order=names)
        kept: Counter[str] = Counter()
        for row in mixture.rows:
            key = "" if "" in self.targets else f"{row['language']}/{row['task']}"
            if key in self.targets:
                kept[key] += 1
        return kept

    def line(self) -> str:
        """How far the targets are: ``target_rows: 37 of 100 rows from 120 prompts``."""
        parts = [
            f"{min(self.kept[k], n)} of {n}{f' {k}' if k else ''}" for k, n in self.targets.items()
        ]
        return f"target_rows: {', '.join(parts)} rows from {self.answered} prompts"

    def met(self) -> bool:
        return all(self.kept[k] >= n for k, n in self.targets.items())

    async def next_round(self, writers: Sequence[Teacher]) -> list[Prompt]:
        """Append the next round's prompts to the pool and return them; ``[]`` when the
        rounds are over (targets met, or ``stopped`` says why not)."""
        outcomes = list(self.run_dir.iter_outcomes())
        pool = list(self.run_dir.iter_prompts())
        self.drawn, self.answered = len(pool), len(outcomes)
        self.kept = self.count(outcomes)
        if self.met():
            return []
        room = self.limit - len(pool)
        if room <= 0:
            self.stopped = f"max_prompts ({self.limit}) reached"
            return []
        tried: Counter[str] = Counter()
        for outcome in outcomes:
            key = _key(outcome.prompt, self.targets)
            if key is not None:
                tried[key] += 1
        sizes: dict[str, int] = {}
        for key, n in self.targets.items():
            need = n - self.kept[key]
            if need <= 0:
                continue
            rate = max(MIN_YIELD, self.kept[key] / tried[key]) if tried[key] else 1.0
            sizes[key] = min(room, math.ceil(1.25 * need / rate))
            room -= sizes[key]
            if room <= 0:
                break
        new = await self._draw(sizes, pool, writers)
        known = {p.id for p in pool}
        fresh, seen = [], set()
        for prompt in new:
            if prompt.id not in known and prompt.id not in seen:
                seen.add(prompt.id)
                fresh.append(prompt)
        if not fresh:
            self.stopped = "the pool has no new prompt to draw"
            return []
        self.round = _next_round(pool)
        for prompt in fresh:
            prompt.meta["round"] = self.round
        self.run_dir.save_prompts([*pool, *fresh])
        self.drawn += len(fresh)
        return fresh

    async def _draw(
        self, sizes: dict[str, int], pool: Sequence[Prompt], writers: Sequence[Teacher]
    ) -> list[Prompt]:
        cfg = self.config.pool
        known = {p.id for p in pool}
        if cfg.prompts:  # a prompts file: its rows not yet in the pool, in file order
            from arbitrage.prompts.pool import load_prompts

            rest = [p for p in load_prompts(cfg.prompts) if p.id not in known]
            picked: list[Prompt] = []
            left = dict(sizes)
            for prompt in rest:
                key = _key(prompt, self.targets)
                if key is not None and left.get(key, 0) > 0:
                    left[key] -= 1
                    picked.append(prompt)
            return picked
        return await self._write(sizes, pool, writers)

    async def _write(
        self, sizes: dict[str, int], pool: Sequence[Prompt], writers: Sequence[Teacher]
    ) -> list[Prompt]:
        from arbitrage.prompts.personas import load_personas
        from arbitrage.prompts.pool import awrite, plan

        cfg = self.config.pool
        seed = self.config.seed
        number = _next_round(pool)
        offsets = Counter((p.language, p.task) for p in pool)
        personas = load_personas(cfg.personas, column=cfg.persona_column)
        slots = []
        for key, size in sizes.items():
            if key:
                lang, _, task = key.partition("/")
                langs, tasks = [lang], [task]
            else:
                langs, tasks = cfg.languages, cfg.tasks
            slots += plan(
                personas, langs, tasks, size, seed=seed * 1_000_003 + number,
                offsets=offsets, variant_seed=seed,
            )  # fmt: skip
        writer = next((t for t in writers if t.name == cfg.writer), None)
        prompts = await awrite(slots, writer, seed=seed, max_tokens=cfg.writer_max_tokens)
        return prompts


def _next_round(pool: Sequence[Prompt]) -> int:
    return 1 + max((int(p.meta.get("round", 0)) for p in pool), default=0)


def short_line(rounds: Rounds) -> str:
    """The one line a run that stopped short ends with."""
    return (
        f"{rounds.line()}; stopped: {rounds.stopped}. The outputs hold the rows so far; "
        "raise max_prompts (or budget_usd) and run the same command again to go on"
    )
