"""Routers replayed on a scored pool: quality vs generations per prompt, N = 3 teachers.

    python benchmarks/routing.py [--prompts 600] [--seeds 5] [--plot docs/img/quality_cost.png]

The pool is the documented simulation in ``benchmarks/simulate.py`` (teacher quality
differs by language × task; every teacher answered every prompt), or a real run
routed with ``reward``: ``--run RUN_DIR``. Prints one table per pool, averaged over
seeds, and the quality-vs-cost curve of the bandit router with its APGR.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from rich.console import Console
from rich.table import Table
from simulate import simulated_outcomes

from arbitrage.commands.evaluate import apgr, baselines, fully_scored, replay
from arbitrage.records import Outcome
from routers import get_router

ROUTERS = [
    ("random", {}),
    ("learned", {"warmup": 30, "explore": 0.1}),
    ("bandit", {"max_generations_per_prompt": 1.2}),
    ("bandit", {"max_generations_per_prompt": 1.4}),
    ("reward", {}),
]
BUDGETS = [1.0, 1.1, 1.2, 1.4, 1.7, 2.0, 2.5, 3.0]


def load_run(path: Path) -> list[Outcome]:
    from arbitrage.rundir import RunDir

    return RunDir(path).load_outcomes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=600)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--run", type=Path, help="replay a reward-routed run instead")
    parser.add_argument("--plot", type=Path, help="write the quality-vs-cost PNG here")
    args = parser.parse_args()

    pools = (
        [load_run(args.run)]
        if args.run
        else [simulated_outcomes(args.prompts, seed=s) for s in range(args.seeds)]
    )
    teachers = sorted({c.teacher for c in pools[0][0].candidates}, key=str)
    pools = [fully_scored(p, teachers) for p in pools]
    rows: dict[str, list[tuple[float, float, float, float]]] = {}
    curves: list[list[tuple[float, float]]] = []
    apgrs = []
    for seed, pool in enumerate(pools):
        base = baselines(pool, teachers)
        best = max(base[t] for t in teachers)
        oracle = base["oracle"]
        for name, params in ROUTERS:
            label = name + (
                f" ≤{params['max_generations_per_prompt']}"
                if "max_generations_per_prompt" in params
                else ""
            )
            rep = replay(get_router(name, teachers, seed=seed, **params), pool)
            rows.setdefault(label, []).append(
                (
                    rep.mean_reward / oracle,
                    rep.win_rate_vs_best_single,
                    rep.generations_per_prompt,
                    rep.cost_usd,
                )
            )
        rows.setdefault("best single teacher", []).append((best / oracle, 0.5, 1.0, float("nan")))
        curve = [
            (r.generations_per_prompt, r.mean_reward)
            for r in (
                replay(
                    get_router("bandit", teachers, seed=seed, max_generations_per_prompt=b), pool
                )
                for b in BUDGETS
            )
        ]
        curves.append(curve)
        apgrs.append(apgr(curve, best, oracle, len(teachers)))

    table = Table(
        title=f"Routing on {'run ' + str(args.run) if args.run else 'the simulation'} "
        f"({len(pools)} pool(s), {len(pools[0])} prompts, {len(teachers)} teachers)"
    )
    for col in (
        "router",
        "reward / oracle",
        "win rate vs best single",
        "generations / prompt",
        "cost $",
    ):
        table.add_column(col, justify="left" if col == "router" else "right")
    for label, values in rows.items():
        q, w, g, c = (statistics.mean(v[i] for v in values) for i in range(4))
        table.add_row(label, f"{q:.1%}", f"{w:.1%}", f"{g:.2f}", "-" if c != c else f"{c:.3f}")
    console = Console()
    console.print(table)
    console.print(
        f"bandit APGR over [1, {len(teachers)}] generations: {statistics.mean(apgrs):.3f}"
    )

    if args.plot:
        from arbitrage.commands.router_eval import evaluate_routers, plot

        args.plot.parent.mkdir(parents=True, exist_ok=True)
        plot(evaluate_routers(pools[0], teachers), args.plot)
        console.print(f"plot (pool 0): {args.plot}")


if __name__ == "__main__":
    main()
