"""Who won where, what it cost: the run summary and its terminal tables."""

from __future__ import annotations

import itertools
import re
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from arbitrage.records import Outcome


def summarise(outcomes: Sequence[Outcome], teachers: Sequence[str]) -> dict[str, Any]:
    """Plain-data summary of a run (written to ``report.json``), from one pass over
    ``outcomes`` that keeps counters only (and more for samples or fusion, if used)."""
    from reward.verifiers.basis import basis

    per_teacher: dict[str, dict[str, float]] = {
        t: {"generations": 0, "ok": 0, "failed": 0, "wins": 0, "cost_usd": 0.0, "tokens": 0}
        for t in teachers
    }
    wins: defaultdict[str, Counter[str]] = defaultdict(Counter)
    prompts_by_language: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    routed_by: Counter[str] = Counter()
    generations = with_winner = 0
    scored = _Scoring()
    bases: Counter[str] = Counter()
    samples, fusion = 1, False
    for outcome in outcomes:
        scored.add(outcome)
        best = outcome.best
        if best is not None:
            bases[basis(best.reward_details)] += 1
        fusion = fusion or outcome.fusion is not None
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
            samples = max(samples, cand.sample + 1)
            statuses[gen.status] += 1
            row["generations"] += 1
            row["ok" if gen.ok else "failed"] += 1
            row["cost_usd"] += gen.cost_usd
            row["tokens"] += gen.usage.total_tokens
        if outcome.fusion is not None:  # the fuser's call: paid by its teacher
            fused = outcome.fusion.candidate.generation
            if fused.teacher in per_teacher:
                per_teacher[fused.teacher]["cost_usd"] += fused.cost_usd
                per_teacher[fused.teacher]["tokens"] += fused.usage.total_tokens
        if outcome.winner is not None:
            with_winner += 1
            wins[lang][outcome.winner] += 1
            per_teacher[outcome.winner]["wins"] += 1
    n = len(outcomes)
    return {
        "prompts": n,
        "with_winner": with_winner,
        "without_winner": n - with_winner,
        "generations": generations,
        "generations_per_prompt": round(generations / n, 3) if n else 0.0,
        "statuses": dict(statuses),
        "routed_by": dict(routed_by),
        "cost_usd": round(sum(r["cost_usd"] for r in per_teacher.values()), 6),
        "teachers": per_teacher,
        "wins_by_language": {lang: dict(c) for lang, c in sorted(wins.items())},
        "prompts_by_language": dict(prompts_by_language),
        "scoring": scored.result(),
        "reward_basis": dict(bases.most_common()),
        **_samples_and_fusion(outcomes, teachers, samples, fusion),
    }


def reward_basis(outcomes: Sequence[Outcome]) -> dict[str, int]:
    """Prompts by what their answer's reward rested on (``reward.verifiers.basis``:
    ``model``, ``reference``, ``agreement``, ``tests``, ``constraints``, ``model+...``)."""
    from reward.verifiers.basis import basis

    found = Counter(basis(o.best.reward_details) for o in outcomes if o.best is not None)
    return dict(found.most_common())


def _samples_and_fusion(
    outcomes: Sequence[Outcome], teachers: Sequence[str], samples: int, fusion: bool
) -> dict[str, Any]:
    """``samples`` (the "best single × k samples" baseline beside the run's result) when
    a teacher gave several (``samples`` > 1), and ``fusion`` when the run fused
    (docs/training-data.md)."""
    from arbitrage.commands.evaluate import samples_summary
    from arbitrage.fusion import fusion_summary

    out: dict[str, Any] = {}
    if samples > 1:
        out["samples"] = samples_summary(outcomes, teachers)
    if fusion:
        out["fusion"] = fusion_summary(outcomes)
    return out


def samples_fusion_lines(summary: dict[str, Any]) -> list[str]:
    """The terminal's lines on samples (the run beside "best single × k samples") and
    fusion (how often it won, by how much); none when the run used neither."""
    lines = []
    samples = summary.get("samples")
    if samples and samples.get("prompts"):
        k = samples["samples"]
        label = f"best single × {k} samples"
        lines.append(
            f"samples: arbitraged {samples['arbitraged']:.4f} vs {label} "
            f"({samples[label + ' teacher']}) {samples[label]:.4f} and best single × 1 "
            f"sample {samples['best single × 1 sample']:.4f}, "
            f"on {samples['prompts']} prompts every teacher answered"
        )
    elif samples:
        lines.append(f"samples: {samples['note']}")
    fusion = summary.get("fusion")
    if fusion:
        gain = fusion["mean_gain"]
        when = fusion["mean_gain_when_won"]
        lines.append(
            f"fusion: {fusion['fused']} prompts fused, won {fusion['won']} of "
            f"{fusion['scored']} scored"
            + (f" (by {when:+.4f} on average when it won" if when is not None else " (")
            + (f", {gain:+.4f} over all)" if gain is not None else ")")
            + f", kept {fusion['kept']}"
        )
    return lines


def scoring(outcomes: Iterable[Outcome]) -> dict[str, Any]:
    """What happened to complete answers at the reward: scored, unscored (no score from
    the scorer), gated for the wrong language (per language), truncated to the reward
    model's ``max_length``."""
    found = _Scoring()
    for outcome in outcomes:
        found.add(outcome)
    return found.result()


class _Scoring:
    """``scoring``'s counters, an outcome at a time."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.gated: Counter[str] = Counter()
        self.values: Counter[float] = Counter()

    def add(self, outcome: Outcome) -> None:
        counts = self.counts
        for cand in outcome.candidates:
            if not cand.generation.ok:
                continue
            details = cand.reward_details
            counts["scored" if cand.reward is not None else "unscored"] += 1
            if cand.reward is not None:
                self.values[round(cand.reward, 9)] += 1
            if details.get("language_gated"):
                counts["language_gated"] += 1
                self.gated[outcome.prompt.language] += 1
            if details.get("verifier_gated"):  # reward.verify found it wrong
                counts["verifier_gated"] += 1
            if any(k.rpartition(".")[2] == "truncated" and v for k, v in details.items()):
                counts["truncated"] += 1

    def result(self) -> dict[str, Any]:
        counts = self.counts
        return {
            "scored": counts["scored"],
            "unscored": counts["unscored"],
            "language_gated": counts["language_gated"],
            "language_gated_by_language": dict(sorted(self.gated.items())),
            "truncated": counts["truncated"],
            "verifier_gated": counts["verifier_gated"],
            # a wrong answer the verifier gate stopped is the reward working, not failing
            "warnings": reward_warnings(
                counts["scored"], counts["unscored"] - counts["verifier_gated"], self.values
            ),
        }


#: Scored answers before a constant reward is worth a warning, and the share of them
#: one value must hold to count as (near) constant.
MIN_SCORED = 10
CONSTANT_SHARE = 0.95


def reward_warnings(scored: int, unscored: int, values: Counter[float]) -> list[str]:
    """What says the reward did not decide anything: (near) every score the same (the
    first teacher in config order then wins every tie), or most answers unscored."""
    out = []
    if scored >= MIN_SCORED and values:
        value, n = values.most_common(1)[0]
        if n >= CONSTANT_SHARE * scored:
            out.append(
                f"the reward gave {n} of {scored} scored answers the same score ({value:g}): "
                "it does not tell the answers apart, and ties go to the teacher listed first"
            )
    if unscored > scored and unscored + scored >= 4:
        out.append(
            f"{unscored} of {scored + unscored} complete answers got no score: check the "
            "reward (a judge whose replies hold no score, a language gate set too high)"
        )
    return out


def scoring_line(summary: dict[str, Any]) -> str:
    """One line on scoring problems for the terminal, or ``""`` when there were none."""
    s = summary.get("scoring", {})
    parts = []
    if s.get("language_gated"):
        where = ", ".join(f"{k} {v}" for k, v in s["language_gated_by_language"].items())
        parts.append(f"{s['language_gated']} answers in the wrong language were gated ({where})")
    if s.get("truncated"):
        parts.append(f"{s['truncated']} were truncated for the reward model (max_length)")
    if s.get("verifier_gated"):
        parts.append(f"{s['verifier_gated']} answers the verifier found wrong were gated")
    unexplained = s.get("unscored", 0) - s.get("language_gated", 0) - s.get("verifier_gated", 0)
    if unexplained > 0:
        parts.append(f"{unexplained} got no score from the reward (see the log)")
    parts += [f"WARNING: {w}" for w in s.get("warnings", [])]
    return "reward: " + "; ".join(parts) if parts else ""


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


def win_cells(outcomes: Iterable[Outcome], by: str = "language") -> dict[str, dict[str, list[int]]]:
    """``{value of by: {teacher: [wins, contested]}}`` over contested prompts only.

    A prompt is contested when two or more teachers' answers were scored; a prompt
    routed to one teacher says nothing about who would have won, so it is left out
    (a teacher's samples count once: its best, as routers see it).
    """
    found = WinCells([by])
    for outcome in outcomes:
        found.add(outcome)
    return found.result()[by]


class WinCells:
    """``win_cells`` for several ``by`` at once, added an outcome at a time."""

    def __init__(self, bys: Iterable[str]) -> None:
        self.cells: dict[str, defaultdict[str, dict[str, list[int]]]] = {
            by: defaultdict(dict) for by in bys
        }

    def add(self, outcome: Outcome) -> None:
        scored = [c for c in outcome.per_teacher().candidates if c.scored]
        if len(scored) < 2:
            return
        for by, cells in self.cells.items():
            value = getattr(outcome.prompt, by)
            for cand in scored:
                cell = cells[value].setdefault(cand.teacher, [0, 0])
                cell[0] += int(cand.teacher == outcome.winner)
                cell[1] += 1

    def result(self) -> dict[str, dict[str, dict[str, list[int]]]]:
        return {by: dict(cells) for by, cells in self.cells.items()}


_WORD = re.compile(r"\w+", re.UNICODE)


class _TextStats:
    """``text_stats``' numbers for one group of answers, added an answer at a time: the
    words of each are counted and dropped; the distinct n-grams are what is held."""

    def __init__(self) -> None:
        self.lengths = array("q")
        self.chars = 0
        self.unigrams = 0
        self.bigrams = 0
        self.distinct_1: set[str] = set()
        self.distinct_2: set[tuple[str, str]] = set()

    def add(self, answer: str, words: list[str], pairs: list[tuple[str, str]]) -> None:
        self.lengths.append(len(words))
        self.chars += len(answer)
        self.unigrams += len(words)
        self.bigrams += len(pairs)
        self.distinct_1.update(words)
        self.distinct_2.update(pairs)

    def result(self) -> dict[str, float]:
        lengths = sorted(self.lengths)
        n = len(lengths)
        return {
            "rows": n,
            "words_mean": round(sum(lengths) / n, 1) if n else 0.0,
            "words_median": float(lengths[n // 2]) if n else 0.0,
            "chars_mean": round(self.chars / n, 1) if n else 0.0,
            "distinct_1": round(len(self.distinct_1) / self.unigrams, 3) if self.unigrams else 0.0,
            "distinct_2": round(len(self.distinct_2) / self.bigrams, 3) if self.bigrams else 0.0,
        }


def text_stats(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Length and lexical diversity of the mixture's answers, overall, per language and per
    teacher, and the language mix (one pass over ``rows``).

    Words are ``\\w+`` runs (scripts written without spaces count a run as one word);
    ``distinct_n`` is unique n-grams / all n-grams over a group's answers, which
    falls as a group grows, so compare groups of similar size.
    """
    overall = _TextStats()
    groups: dict[str, defaultdict[str, _TextStats]] = {
        key: defaultdict(_TextStats) for key in ("language", "teacher")
    }
    for row in rows:
        answer = row["messages"][-1]["content"]
        words = _WORD.findall(answer.lower())
        pairs = list(itertools.pairwise(words))
        overall.add(answer, words, pairs)
        for key, by_value in groups.items():
            by_value[row[key]].add(answer, words, pairs)
    by = {
        key: {value: s.result() for value, s in sorted(by_value.items())}
        for key, by_value in groups.items()
    }
    result = overall.result()
    n = result["rows"] or 1
    return {
        "overall": result,
        "by_language": by["language"],
        "by_teacher": by["teacher"],
        "language_mix": {lang: round(s["rows"] / n, 3) for lang, s in by["language"].items()},
    }


def mixture_table(counts: dict[str, Any]) -> Any:
    """A rich table: rows kept and dropped, by reason, and preference pairs."""
    from rich.table import Table

    table = Table(title=f"Mixture: {counts['rows']} rows from {counts['outcomes']} prompts")
    table.add_column("")
    table.add_column("rows", justify="right")
    table.add_column("pairs", justify="right")
    table.add_row("kept", str(counts["rows"]), str(counts["pairs"]))
    reasons = dict.fromkeys([*counts["dropped"], *counts["pairs_dropped"]])
    for reason in reasons:
        table.add_row(
            f"dropped: {reason}",
            str(counts["dropped"].get(reason, 0)),
            str(counts["pairs_dropped"].get(reason, 0)),
        )
    for name, n in counts.get("contaminated", {}).items():  # per eval set (decontaminate)
        table.add_row(f"  contaminated by {name}", str(n), "")
    return table


def text_table(stats: dict[str, Any]) -> Any:
    """A rich table: answer length and diversity per language of the mixture."""
    from rich.table import Table

    table = Table(title="Mixture text per language")
    cols = ("language", "rows", "share", "words mean", "words median", "distinct-1", "distinct-2")
    for col in cols:
        table.add_column(col, justify="left" if col == "language" else "right")
    groups = [*stats["by_language"].items(), ("all", stats["overall"])]
    for lang, s in groups:
        share = stats["language_mix"].get(lang, 1.0)
        table.add_row(
            lang,
            str(s["rows"]),
            f"{share:.0%}",
            f"{s['words_mean']:.1f}",
            f"{s['words_median']:.0f}",
            f"{s['distinct_1']:.3f}",
            f"{s['distinct_2']:.3f}",
        )
    return table
