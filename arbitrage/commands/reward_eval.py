"""``arbitrage eval-reward RUN_DIR``: does a second scorer agree with the run's reward, by language?

Scorer A is the reward already stored in the run's ``outcomes.jsonl``; scorer B is
any reward kind (``pairwise``, ``judge``, ``hf``, ``local`` or a plugin). For
every prompt with two or more answers that A scored, each two answers are put to
both: A prefers the one it rewarded higher; B either compares them
(``compare(prompt, a, b)``, the pairwise judge, asked in both orders) or scores
each answer on its own (any other reward).

**Agreement** is the fraction of pairs on which A and B prefer the same answer,
among the pairs where both prefer one. Ties are left out of it and counted apart
(``ties_a``, ``ties_b``; ``unscored_b`` where B gave no verdict), so a B that
cannot tell answers apart shows few compared pairs, not low agreement. Chance is
0.5. Each agreement comes with a 95% Wilson interval: with 20 pairs an observed
0.8 is compatible with anything from 0.58 to 0.92. Languages below
``min_agreement`` are flagged unreliable. For a pointwise B, Spearman's rank
correlation of A's and B's scores over all answers in the language is reported
as well; for a pairwise B, the share of comparisons whose verdict changed with
the order of the answers (``position_flip_rate``).

Limits: agreement says the two scorers rank alike, not that either is right. Low
agreement in a language says at least one of them is unreliable there; a strong
B (a large judge) makes it likely that it is A. High agreement between two
judges that share a bias (length, their own family's style, the language they
prefer) is no evidence of quality. Pairs within a prompt are not independent,
so the intervals are somewhat too narrow.

B's calls go through the run's call cache (``cache.sqlite``), so a rerun costs nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import random
import textwrap
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arbitrage.errors import ArbitrageError, ConfigError, DataError, RewardError
from arbitrage.records import Candidate, Outcome
from arbitrage.rundir import load_run
from reward.base import gather_all

if TYPE_CHECKING:
    from rich.progress import Progress

    from arbitrage.config import RunConfig
    from reward.base import RewardModel

Z95 = 1.959963984540054
_POINTWISE_CHUNK = 64  # answers per ascore_batch call: a batching model still batches


@dataclass(frozen=True)
class _Pair:
    language: str
    a_pref: int  # +1: A prefers the first answer, -1: the second, 0: tie
    b_pref: int | None  # likewise for B; None: B gave no verdict
    flipped: bool = False  # pairwise B: the two orders disagreed


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of ``k`` successes in ``n`` trials (``None`` if ``n == 0``)."""
    if n == 0:
        return None
    p = k / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    # At 0/n and n/n the interval ends exactly at the estimate (the formula, up to rounding).
    return (0.0 if k == 0 else centre - half), (1.0 if k == n else centre + half)


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation (ties get their mean rank); ``None`` if undefined."""
    import numpy as np

    if len(x) < 3:
        return None
    rx, ry = _ranks(np.asarray(x, dtype=float)), _ranks(np.asarray(y, dtype=float))
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def _ranks(values: Any) -> Any:
    import numpy as np

    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + 1 + ends) / 2)[inverse]


def build_scorer(
    kind: str,
    *,
    model: str | None = None,
    api_base: str | None = None,
    api_key_env: str | None = None,
    params: dict[str, Any] | None = None,
) -> RewardModel:
    """The reward ``kind`` with its settings (as a run's ``reward:`` section would build it)."""
    from arbitrage.config import ScorerConfig
    from arbitrage.factories import make_scorer

    if api_key_env is not None and not os.environ.get(api_key_env):
        raise ConfigError(f"scorer {kind!r}: environment variable {api_key_env} is not set")
    cfg = ScorerConfig(
        kind=kind, model=model, api_base=api_base, api_key_env=api_key_env, params=params or {}
    )
    try:
        return make_scorer(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (set it with --model or --param)") from None


def multi_candidate(outcomes: Sequence[Outcome]) -> list[tuple[Outcome, list[Candidate]]]:
    """The outcomes with two or more complete answers that the run's reward scored."""
    found = []
    for outcome in outcomes:
        scored = [c for c in outcome.candidates if c.scored]
        if len(scored) >= 2:
            found.append((outcome, scored))
    return found


async def aagreement(
    run_dir: str | Path,
    scorer: RewardModel,
    *,
    max_prompts: int | None = None,
    seed: int = 0,
    min_agreement: float = 0.7,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Agreement of ``scorer`` (B) with the run's reward (A), per language; see the module doc.

    B's calls go through the run's call cache while it runs (if B takes a cache and
    has none of its own). Returns the numbers written to ``reward_agreement.json``.
    """
    from arbitrage.calls.teachers import open_cache

    if max_prompts is not None and max_prompts < 1:
        raise ConfigError(f"--max-prompts must be at least 1, got {max_prompts}")
    if not 0.0 <= min_agreement <= 1.0:
        raise ConfigError(f"--min-agreement must lie in [0, 1], got {min_agreement}")
    path = Path(run_dir)
    config, outcomes = load_run(path)
    chosen = multi_candidate(outcomes)
    if not chosen:
        raise DataError(
            f"{path}: no prompt has two or more scored answers; eval-reward needs a run "
            "whose router asks several teachers per prompt (e.g. router: reward)"
        )
    if max_prompts is not None and max_prompts < len(chosen):
        keep = sorted(random.Random(seed).sample(range(len(chosen)), max_prompts))
        chosen = [chosen[i] for i in keep]
    # A scorer that takes a cache and has none of its own uses the run's: a rerun is free.
    cache = open_cache(config) if getattr(scorer, "cache", False) is None else None
    if cache is not None:
        scorer.cache = cache  # type: ignore[attr-defined]
    pairwise = callable(getattr(scorer, "compare", None))
    try:
        if pairwise:
            pairs = await _pairwise(scorer, chosen, progress)
            points: dict[str, list[tuple[float, float]]] = {}
        else:
            pairs, points = await _pointwise(scorer, chosen, progress)
    except ArbitrageError:
        raise
    except Exception as exc:
        raise RewardError(f"scorer {scorer.name!r} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        if cache is not None:
            scorer.cache = None  # type: ignore[attr-defined]
            cache.close()
    by_language: defaultdict[str, list[_Pair]] = defaultdict(list)
    for pair in pairs:
        by_language[pair.language].append(pair)
    prompts_by_language: defaultdict[str, int] = defaultdict(int)
    for outcome, _ in chosen:
        prompts_by_language[outcome.prompt.language] += 1
    languages = [
        _summary(
            lang,
            prompts_by_language[lang],
            by_language[lang],
            points.get(lang, []),
            pairwise=pairwise,
            min_agreement=min_agreement,
        )
        for lang in sorted(by_language)
    ]
    overall = _summary(
        "all",
        len(chosen),
        pairs,
        [p for pts in points.values() for p in pts],
        pairwise=pairwise,
        min_agreement=min_agreement,
    )
    return {
        "run_dir": str(path),
        "scorer_a": _run_reward(config),
        "scorer_b": scorer.describe(),
        "mode": "pairwise" if pairwise else "pointwise",
        "min_agreement": min_agreement,
        "max_prompts": max_prompts,
        "seed": seed,
        "cost_usd": round(float(getattr(scorer, "spent_usd", 0.0)), 6),
        "languages": languages,
        "overall": overall,
        "unreliable": [row["language"] for row in languages if row["unreliable"]],
    }


def eval_reward(
    run_dir: str | Path,
    scorer: RewardModel,
    *,
    max_prompts: int | None = None,
    seed: int = 0,
    min_agreement: float = 0.7,
    progress: Progress | None = None,
) -> tuple[dict[str, Any], Path]:
    """``aagreement``, then write ``reward_agreement.json`` and ``figures/reward_agreement.png``
    into the run directory; returns the numbers and the figure's path."""
    result = asyncio.run(
        aagreement(
            run_dir,
            scorer,
            max_prompts=max_prompts,
            seed=seed,
            min_agreement=min_agreement,
            progress=progress,
        )
    )
    out = Path(run_dir)
    (out / "reward_agreement.json").write_text(
        json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (out / "figures").mkdir(exist_ok=True)
    return result, plot(result, out / "figures" / "reward_agreement.png")


async def _pairwise(
    scorer: Any, chosen: list[tuple[Outcome, list[Candidate]]], progress: Progress | None
) -> list[_Pair]:
    jobs = [
        (outcome, first, second)
        for outcome, cands in chosen
        for first, second in itertools.combinations(cands, 2)
    ]
    bar = progress.add_task(f"comparing with {scorer.name}", total=len(jobs)) if progress else None

    async def one(outcome: Outcome, first: Candidate, second: Candidate) -> _Pair:
        a_pref = _sign(_reward(first), _reward(second))
        a, b = first.generation.text, second.generation.text
        if a == b:  # the same text twice: a tie, no call needed
            pair = _Pair(outcome.prompt.language, a_pref, 0)
        else:
            comparison = await scorer.compare(outcome.prompt, a, b)
            b_pref = None if comparison.a_score is None else _sign(comparison.a_score, 0.5)
            flipped = comparison.a_score is not None and not comparison.consistent
            pair = _Pair(outcome.prompt.language, a_pref, b_pref, flipped)
        if progress is not None and bar is not None:
            progress.advance(bar)
        return pair

    return await gather_all(one(*job) for job in jobs)


async def _pointwise(
    scorer: RewardModel, chosen: list[tuple[Outcome, list[Candidate]]], progress: Progress | None
) -> tuple[list[_Pair], dict[str, list[tuple[float, float]]]]:
    answers = list(
        dict.fromkeys((o.prompt.id, c.generation.text) for o, cands in chosen for c in cands)
    )
    prompts = {o.prompt.id: o.prompt for o, _ in chosen}
    bar = progress.add_task(f"scoring with {scorer.name}", total=len(answers)) if progress else None
    b_scores: dict[tuple[str, str], float | None] = {}
    for i in range(0, len(answers), _POINTWISE_CHUNK):
        chunk = answers[i : i + _POINTWISE_CHUNK]
        scores = await scorer.ascore_batch([(prompts[pid], text) for pid, text in chunk])
        b_scores.update(zip(chunk, (s.value for s in scores), strict=True))
        if progress is not None and bar is not None:
            progress.advance(bar, len(chunk))
    pairs: list[_Pair] = []
    points: defaultdict[str, list[tuple[float, float]]] = defaultdict(list)
    for outcome, cands in chosen:
        lang = outcome.prompt.language
        b = [b_scores[(outcome.prompt.id, c.generation.text)] for c in cands]
        points[lang] += [(_reward(c), v) for c, v in zip(cands, b, strict=True) if v is not None]
        for (i, first), (j, second) in itertools.combinations(enumerate(cands), 2):
            bi, bj = b[i], b[j]
            b_pref = None if bi is None or bj is None else _sign(bi, bj)
            pairs.append(_Pair(lang, _sign(_reward(first), _reward(second)), b_pref))
    return pairs, dict(points)


def _summary(
    language: str,
    prompts: int,
    pairs: Sequence[_Pair],
    points: Sequence[tuple[float, float]],
    *,
    pairwise: bool,
    min_agreement: float,
) -> dict[str, Any]:
    compared = [p for p in pairs if p.a_pref != 0 and p.b_pref not in (0, None)]
    agree = sum(p.a_pref == p.b_pref for p in compared)
    agreement = agree / len(compared) if compared else None
    ci = wilson(agree, len(compared))
    row: dict[str, Any] = {
        "language": language,
        "prompts": prompts,
        "pairs": len(pairs),
        "compared": len(compared),
        "agree": agree,
        "agreement": agreement,
        "ci95": list(ci) if ci else None,
        "ties_a": sum(p.a_pref == 0 for p in pairs),
        "ties_b": sum(p.b_pref == 0 for p in pairs),
        "unscored_b": sum(p.b_pref is None for p in pairs),
        "unreliable": agreement is not None and agreement < min_agreement,
    }
    if pairwise:
        judged = [p for p in pairs if p.b_pref is not None]
        flips = sum(p.flipped for p in judged)
        row["position_flip_rate"] = flips / len(judged) if judged else None
    else:
        row["spearman"] = spearman([a for a, _ in points], [b for _, b in points])
    return row


def table(result: dict[str, Any]) -> Any:
    """A rich table of the agreement per language (fits 80 columns; the rest is in the JSON)."""
    from rich.table import Table

    pairwise = result["mode"] == "pairwise"
    extra = "flips" if pairwise else "ρ"
    note = (
        "flips: share of B's verdicts that changed with the order of the answers"
        if pairwise
        else "ρ: Spearman correlation of A's and B's scores"
    )
    out = Table(
        title=f"Reward agreement: A = {result['scorer_a']}, B = {result['scorer_b']}",
        caption=f"agree: share of the n pairs that both A and B rank (ties left out) on which "
        f"they prefer the same answer; chance is 50%, unreliable below "
        f"{result['min_agreement']:.0%}. {note}",
    )
    for col in ("language", "prompts", "agree", "95% CI", "n", extra, ""):
        out.add_column(col, justify="left" if col in ("language", "") else "right", no_wrap=True)
    last = result["languages"][-1] if result["languages"] else None
    for row in [*result["languages"], result["overall"]]:
        if row["agreement"] is None:
            agreement, ci = "-", "-"
        else:
            agreement = f"{row['agreement']:.0%}"
            ci = f"{row['ci95'][0]:.0%}-{row['ci95'][1]:.0%}"
        value = row["position_flip_rate"] if pairwise else row["spearman"]
        shown = "-" if value is None else (f"{value:.0%}" if pairwise else f"{value:+.2f}")
        out.add_row(
            row["language"],
            str(row["prompts"]),
            agreement,
            ci,
            str(row["compared"]),
            shown,
            "[red]unreliable[/]" if row["unreliable"] else "",
            end_section=row is last,
        )
    return out


def plot(result: dict[str, Any], path: Path) -> Path:
    """One bar per language: agreement with its 95% interval, a line at ``min_agreement``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["languages"] if r["agreement"] is not None]
    names = [r["language"] for r in rows]
    values = [r["agreement"] for r in rows]
    below = [r["agreement"] - r["ci95"][0] for r in rows]
    above = [r["ci95"][1] - r["agreement"] for r in rows]
    colours = ["tab:red" if r["unreliable"] else "tab:blue" for r in rows]
    fig, ax = plt.subplots(figsize=(max(4.8, 1.4 + 0.7 * len(rows)), 3.8), dpi=120)
    ax.bar(names, values, color=colours, yerr=[below, above], capsize=4, ecolor="black")
    for i, r in enumerate(rows):
        ax.annotate(
            f"n={r['compared']}",
            (i, 0.02),
            ha="center",
            fontsize=7,
            color="white" if r["agreement"] > 0.1 else "black",
        )
    ax.axhline(
        result["min_agreement"],
        color="tab:red",
        ls="--",
        lw=1,
        label=f"min agreement {result['min_agreement']:.0%}",
    )
    ax.axhline(0.5, color="grey", ls=":", lw=0.8, label="chance")
    if not rows:
        ax.text(0.5, 0.5, "no pair compared", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylim(0, 1.22)  # room for the legend above the bars
    ax.set_yticks([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_xlabel("language")
    ax.set_ylabel("agreement (95% CI)")
    # A scorer's description can be long (the offline proxy's is a formula): wrap it.
    scorer = textwrap.shorten(str(result["scorer_b"]), width=150, placeholder=" ...")
    subtitle = "\n".join(textwrap.wrap(f"B = {scorer}", width=70))
    ax.set_title(f"Agreement with the run's reward, per language\n{subtitle}", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper right", ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _run_reward(config: RunConfig) -> str:
    reward = config.reward
    return f"{reward.kind}({reward.model})" if reward.model else reward.kind


def _reward(candidate: Candidate) -> float:
    assert candidate.reward is not None  # multi_candidate keeps scored answers only
    return candidate.reward


def _sign(x: float, y: float) -> int:
    if math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12):
        return 0
    return 1 if x > y else -1
