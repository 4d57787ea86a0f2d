"""Who won where, what it cost: the run summary and its terminal tables."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from arbitrage.records import Outcome


def summarise(outcomes: Sequence[Outcome], teachers: Sequence[str]) -> dict[str, Any]:
    """Plain-data summary of a run (written to ``report.json``)."""
    per_teacher: dict[str, dict[str, float]] = {
        t: {"generations": 0, "ok": 0, "failed": 0, "wins": 0, "cost_usd": 0.0, "tokens": 0}
        for t in teachers
    }
    wins: defaultdict[str, Counter[str]] = defaultdict(Counter)
    prompts_by_language: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    routed_by: Counter[str] = Counter()
    generations = 0
    for outcome in outcomes:
        lang = outcome.prompt.language
        prompts_by_language[lang] += 1
        routed_by[outcome.routed_by] += 1
        for cand in outcome.candidates:
            gen = cand.generation
            row = per_teacher.setdefault(
                gen.teacher,
                {"generations": 0, "ok": 0, "failed": 0, "wins": 0, "cost_usd": 0.0, "tokens": 0},
            )
            generations += 1
            statuses[gen.status] += 1
            row["generations"] += 1
            row["ok" if gen.ok else "failed"] += 1
            row["cost_usd"] += gen.cost_usd
            row["tokens"] += gen.usage.total_tokens
        if outcome.winner is not None:
            wins[lang][outcome.winner] += 1
            per_teacher[outcome.winner]["wins"] += 1
    n = len(outcomes)
    return {
        "prompts": n,
        "with_winner": sum(1 for o in outcomes if o.winner is not None),
        "without_winner": sum(1 for o in outcomes if o.winner is None),
        "generations": generations,
        "generations_per_prompt": round(generations / n, 3) if n else 0.0,
        "statuses": dict(statuses),
        "routed_by": dict(routed_by),
        "cost_usd": round(sum(r["cost_usd"] for r in per_teacher.values()), 6),
        "teachers": per_teacher,
        "wins_by_language": {lang: dict(c) for lang, c in sorted(wins.items())},
        "prompts_by_language": dict(prompts_by_language),
    }


def wins_table(summary: dict[str, Any]) -> Any:
    """A rich table: wins per language × teacher, with each teacher's share in the language."""
    from rich.table import Table

    teachers = list(summary["teachers"])
    table = Table(title="Wins per language × teacher")
    table.add_column("language")
    for teacher in teachers:
        table.add_column(teacher, justify="right")
    table.add_column("prompts", justify="right")
    for lang, n in sorted(summary["prompts_by_language"].items()):
        counts = summary["wins_by_language"].get(lang, {})
        total = sum(counts.values()) or 1
        cells = [f"{counts.get(t, 0)} ({counts.get(t, 0) / total:.0%})" for t in teachers]
        table.add_row(lang, *cells, str(n))
    return table


def teachers_table(summary: dict[str, Any]) -> Any:
    """A rich table: generations, failures, wins, tokens and cost per teacher."""
    from rich.table import Table

    table = Table(title="Teachers")
    for col in ("teacher", "generations", "failed", "wins", "tokens", "cost $"):
        table.add_column(col, justify="left" if col == "teacher" else "right")
    for name, row in summary["teachers"].items():
        table.add_row(
            name,
            str(int(row["generations"])),
            str(int(row["failed"])),
            str(int(row["wins"])),
            str(int(row["tokens"])),
            f"{row['cost_usd']:.4f}",
        )
    return table
