"""Routers on real answers from real models: quality vs generations per prompt, per corpus.

    python benchmarks/routing_real.py ../shared/realdata/*.jsonl.gz [--seeds 3] [--e2e]

A corpus is gzip (or plain) JSONL of ``{"id", "text", "task", "language", "models":
{alias: {"answer", "reward"}}}``: every model's recorded answer to every prompt, with a
real per-answer reward. Each router is replayed over the corpus (seed ``s`` shuffles the
prompt order, so online routers meet the prompts in a different order; seeds >= 3),
revealing only the answers it asked for. Printed per corpus, mean ± sd over seeds:

* mean true reward, % of oracle, G = the share of the best-single → oracle gap closed
  (0 = always the best single teacher, 1 = the oracle), generations per prompt, win rate
  against the best single teacher, and APGR over [1, N] generations for budgeted routers;
* baselines: best single teacher, random, and (chosen in hindsight, so not reachable
  online) the best teacher per task and the best pair of teachers;
* "best single × k samples" where a corpus records k answers of a model per prompt
  (``models.<alias>.samples``: ``[{"answer", "reward"}, ...]`` beside its first); the
  shared corpora record one, and the table says that only k = 1 can be computed.

``--e2e`` also replays every router through the real ``arbitrage run`` against a loopback
OpenAI-compatible server that serves the recorded answers and a judge that returns the
recorded reward (``benchmarks/replay_e2e.py``), and prints both figures side by side:
they must agree. A missing corpus file is skipped with a note.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from replay_e2e import (
    offline_outcomes,
    prompt_results,
    run_end_to_end,
)

from arbitrage.commands.evaluate import (
    apgr,
    baselines,
    cascade_ceiling,
    gap_closed,
    hindsight,
    replay,
    sample_baselines,
    samples_of,
)
from arbitrage.records import Outcome
from routers import get_router

#: (label, router, params). Budgeted routers also get a quality-vs-budget curve.
ROUTERS: list[tuple[str, str, dict[str, Any]]] = [
    ("random", "random", {}),
    ("learned", "learned", {}),
    ("learned (warmup 40)", "learned", {"warmup": 40}),
    ("bandit ≤1.25", "bandit", {"max_generations_per_prompt": 1.25}),
    ("bandit ≤1.5", "bandit", {"max_generations_per_prompt": 1.5}),
    ("bandit ≤2.0", "bandit", {"max_generations_per_prompt": 2.0}),
    ("content ≤1.25", "content", {"max_generations_per_prompt": 1.25}),
    ("content ≤1.5", "content", {"max_generations_per_prompt": 1.5}),
    ("content ≤2.0", "content", {"max_generations_per_prompt": 2.0}),
    ("oracle (reward)", "reward", {}),
]
#: ``--compare-embedders``: the content router on the English-centric MiniLM as well.
MINILM: list[tuple[str, str, dict[str, Any]]] = [
    ("content ≤1.5 (MiniLM)", "content", {"max_generations_per_prompt": 1.5, "model": "bundled"}),
    ("content ≤2.0 (MiniLM)", "content", {"max_generations_per_prompt": 2.0, "model": "bundled"}),
]
CURVE = (1.0, 1.25, 1.5, 2.0, 3.0)
CEILING = "best single + partner on the best half (hindsight)"
SAMPLES_NOTE = (
    "best single × k samples: not computable here; the corpus holds one answer per model "
    "and prompt, so only k = 1 (the best single row) is. It needs k recorded samples of "
    "one model per prompt, each with its reward."
)


def load_rows(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
        return [json.loads(line) for line in fh if line.strip()]


def shuffled(rows: Sequence[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    order = list(rows)
    random.Random(seed).shuffle(order)
    return order


def _stats(values: Sequence[float]) -> str:
    mean = statistics.mean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.3f} ± {sd:.3f}"


def offline(
    rows: Sequence[dict[str, Any]], seeds: int, console: Console, windows: int = 1
) -> dict[str, Any]:
    """Every router and baseline over ``seeds`` prompt orders; figures per seed."""
    per: dict[str, list[dict[str, float]]] = {}
    for seed in range(seeds):
        outcomes = offline_outcomes(shuffled(rows, seed))
        teachers = list(dict.fromkeys(c.teacher for c in outcomes[0].candidates))
        base = baselines(outcomes, teachers)
        best = max(teachers, key=lambda t: base[t])
        single, oracle = base[best], base["oracle"]

        def add(
            label: str,
            value: float,
            gens: float,
            win: float | None = None,
            single: float = single,
            oracle: float = oracle,
        ) -> None:
            per.setdefault(label, []).append(
                {
                    "reward": value,
                    "oracle%": value / oracle if oracle else 0.0,
                    "G": gap_closed(value, single, oracle),
                    "gens": gens,
                    "win": float("nan") if win is None else win,
                }
            )

        # with k samples a teacher, a router that picks it sees all k: the best single
        # teacher is then "× k samples" (Self-MoA's recipe), and × 1 is shown beside it
        k = samples_of(outcomes)
        times = f" × {k} samples" if k > 1 else ""
        add(f"best single ({best.removeprefix('teacher-')}){times}", single, float(k), 0.5)
        if k > 1:
            label = "best single × 1 sample"
            add(label, sample_baselines(outcomes, teachers)[label], 1.0)
        else:
            per.setdefault(SAMPLES_NOTE, [])
        for label, value in hindsight(outcomes, teachers).items():
            add(label, value, (2.0 if "pair" in label else 1.0) * k)
        add(CEILING, cascade_ceiling(outcomes, teachers, 1.5), 1.5 * k)
        for label, name, params in ROUTERS:
            rep = replay(get_router(name, teachers, seed=seed, **params), outcomes, windows=windows)
            add(label, rep.mean_reward, rep.generations_per_prompt, rep.win_rate_vs_best_single)
        for name in ("bandit", "content"):
            curve = [
                replay(
                    get_router(name, teachers, seed=seed, max_generations_per_prompt=b),
                    outcomes,
                    windows=windows,
                )
                for b in CURVE
                if b <= len(teachers)
            ]
            points = [(r.generations_per_prompt, r.mean_reward) for r in curve]
            per.setdefault(f"APGR {name}", []).append(
                {"G": apgr(points, single, oracle, len(teachers))}
            )
        console.print(f"  seed {seed} done", style="dim")
    return per


def print_offline(
    name: str, rows: Sequence[dict[str, Any]], per: dict[str, Any], console: Console
) -> None:
    models = list(rows[0]["models"])
    table = Table(
        title=f"{name}: {len(rows)} prompts, {len(models)} models, "
        f"{len(next(iter(per.values())))} seeds (mean ± sd)"
    )
    for col in ("router", "mean reward", "% of oracle", "G", "gens/prompt", "win vs best"):
        table.add_column(col, justify="left" if col == "router" else "right")
    apgrs = {k: v for k, v in per.items() if k.startswith("APGR")}
    for label, runs in per.items():
        if label in apgrs or not runs:
            continue
        win = [r["win"] for r in runs if r["win"] == r["win"]]
        table.add_row(
            label,
            _stats([r["reward"] for r in runs]),
            f"{100 * statistics.mean(r['oracle%'] for r in runs):.1f}%",
            _stats([r["G"] for r in runs]),
            f"{statistics.mean(r['gens'] for r in runs):.2f}",
            f"{100 * statistics.mean(win):.1f}%" if win else "-",
        )
    console.print(table)
    for label, runs in apgrs.items():
        console.print(
            f"{label} over [1, {len(models)}] generations: {_stats([r['G'] for r in runs])}"
        )
    if SAMPLES_NOTE in per:
        console.print(SAMPLES_NOTE)


def end_to_end(rows: Sequence[dict[str, Any]], console: Console, windows: int = 1) -> Table:
    """Seed 0 of every router, through ``arbitrage run``, next to the offline replay."""
    import datasets

    datasets.disable_progress_bars()  # one bar per saved mixture would bury the table
    order = shuffled(rows, 0)
    outcomes: list[Outcome] = offline_outcomes(order)
    teachers = list(dict.fromkeys(c.teacher for c in outcomes[0].candidates))
    table = Table(title="offline replay vs end to end (`arbitrage run`, loopback server), seed 0")
    for col in ("router", "offline reward", "e2e reward", "offline gens", "e2e gens", "agree"):
        table.add_column(col, justify="left" if col == "router" else "right")
    with tempfile.TemporaryDirectory(prefix="routing-real-") as tmp:
        for i, (label, name, params) in enumerate(ROUTERS):
            rep = replay(get_router(name, teachers, seed=0, **params), outcomes, windows=windows)
            run = run_end_to_end(
                order,
                name,
                params,
                seed=0,
                out_dir=Path(tmp) / str(i),
                windows=windows,
                transport="direct",
            )
            # the rewards the run itself measured (two models' identical answers get one
            # judge reply, in the run and in the offline replay alike)
            reward = sum(float(o.best.reward or 0.0) if o.best else 0.0 for o in run) / len(run)
            gens = sum(r.generations for r in prompt_results(order, run)) / len(run)
            agree = (
                abs(reward - rep.mean_reward) < 1e-9
                and abs(gens - rep.generations_per_prompt) < 1e-9
            )
            table.add_row(
                label,
                f"{rep.mean_reward:.4f}",
                f"{reward:.4f}",
                f"{rep.generations_per_prompt:.3f}",
                f"{gens:.3f}",
                "yes" if agree else "NO",
            )
            console.print(f"  e2e {label} done", style="dim")
    return table


def plot(found: dict[str, Any], path: Path) -> Path:
    """One panel per corpus: % of oracle against generations per prompt, seed means."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(2, len(found))
    rows = (len(found) + cols - 1) // cols
    fig, grid = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.9 * rows), dpi=110, squeeze=False)
    axes = [ax for row in grid for ax in row]
    for ax in axes[len(found) :]:
        ax.axis("off")
    for ax, (name, per) in zip(axes, found.items(), strict=False):

        def point(label: str, per: dict[str, Any] = per) -> tuple[float, float]:
            runs = per[label]
            gens = statistics.mean(r["gens"] for r in runs)
            return gens, 100 * statistics.mean(r["oracle%"] for r in runs)

        for family, colour in (("bandit", "tab:blue"), ("content", "tab:orange")):
            labels = [k for k in per if k.startswith(f"{family} ≤") and "(" not in k]
            xs, ys = zip(*sorted(point(k) for k in labels), strict=True)
            ax.plot(xs, ys, "o-", color=colour, label=family)
        for label, marker in (("random", "x"), ("learned", "s"), ("oracle (reward)", "*")):
            if label in per:
                ax.scatter(*point(label), marker=marker, color="black", zorder=3)
                ax.annotate(
                    label, point(label), fontsize=7, xytext=(4, -8), textcoords="offset points"
                )
        short = {"best per task": "per task*", "best pair": "pair*", "best single +": "cascade*"}
        for i, label in enumerate(k for k in per if "hindsight" in k):
            tag = next((v for k, v in short.items() if label.startswith(k)), label)
            ax.scatter(*point(label), marker="D", facecolors="none", edgecolors="grey")
            ax.annotate(
                tag, point(label), fontsize=7, xytext=(-30, 5 + 8 * i), textcoords="offset points"
            )
        single = next(k for k in per if k.startswith("best single"))
        ax.axhline(point(single)[1], color="grey", ls=":", lw=0.8, label=single)
        ax.set_title(name.split(".")[0], fontsize=10)
        ax.set_xlabel("generations per prompt")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for row in grid:
        row[0].set_ylabel("% of oracle reward")
    fig.suptitle(
        "Routers replayed on real answers with real rewards (mean of seeds)\n"
        "* chosen in hindsight: best teacher per task, best pair, best single + partner "
        "on the best half",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpora", nargs="+", type=Path, help="corpus files (.jsonl or .jsonl.gz)")
    parser.add_argument("--seeds", type=int, default=3, help="prompt orders per corpus (>= 3)")
    parser.add_argument("--e2e", action="store_true", help="also replay through `arbitrage run`")
    parser.add_argument("--limit", type=int, help="only the first N prompts of each corpus")
    parser.add_argument(
        "--windows",
        type=int,
        default=1,
        help="windows of 16 prompts in flight, as a run's `windows` (default 1: a router "
        "learns from every window before routing the next)",
    )
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument(
        "--compare-embedders", action="store_true", help="also the content router on MiniLM"
    )
    parser.add_argument("--plot", type=Path, help="write the quality-vs-generations PNG here")
    parser.add_argument("--from-json", type=Path, help="print and plot a saved --json, no replay")
    args = parser.parse_args()
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        console = Console(width=140)
        for path in args.corpora:
            if path.name in saved and path.is_file():
                rows = load_rows(path)
                per = saved[path.name]
                if CEILING not in per:  # a bound from the rows alone, no router replayed
                    outcomes = offline_outcomes(rows)
                    teachers = list(dict.fromkeys(c.teacher for c in outcomes[0].candidates))
                    base = baselines(outcomes, teachers)
                    single = max(base[t] for t in teachers)
                    value = cascade_ceiling(outcomes, teachers, 1.5)
                    per[CEILING] = [
                        {
                            "reward": value,
                            "oracle%": value / base["oracle"],
                            "G": gap_closed(value, single, base["oracle"]),
                            "gens": 1.5,
                            "win": float("nan"),
                        }
                    ] * len(next(iter(per.values())))
                print_offline(path.name, rows, per, console)
        if args.plot:
            console.print(f"plot: {plot(saved, args.plot)}")
        return
    if args.compare_embedders:
        ROUTERS[-1:-1] = MINILM
    console = Console(width=140)
    found: dict[str, Any] = {}
    for path in args.corpora:
        if not path.is_file():
            console.print(f"skipped {path}: no such file (the corpora are not shipped)")
            continue
        rows = load_rows(path)[: args.limit]
        console.print(f"[bold]{path.name}[/]")
        per = offline(rows, args.seeds, console, args.windows)
        print_offline(path.name, rows, per, console)
        found[path.name] = per
        if args.e2e:
            console.print(end_to_end(rows, console, args.windows))
    if args.json:
        args.json.write_text(json.dumps(found, indent=1))
    if args.plot and found:
        console.print(f"plot: {plot(found, args.plot)}")
    if not found:
        console.print("no corpus found: nothing measured")


if __name__ == "__main__":
    main()
