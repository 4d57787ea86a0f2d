"""``arbitrage eval-routers`` and ``arbitrage train-router``: routers measured on a scored run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from arbitrage.errors import DataError
from arbitrage.evaluate import Replay, apgr, baselines, fully_scored, replay
from arbitrage.records import Outcome

BUDGETS = (1.0, 1.1, 1.2, 1.4, 1.7, 2.0, 2.5, 3.0)


def load_scored_run(run_dir: str | Path) -> tuple[list[Outcome], list[str]]:
    """The outcomes of a run directory and its teachers, in config order."""
    import yaml

    from arbitrage.run import RunDir

    path = Path(run_dir)
    config = path / "config.yaml"
    if not config.is_file():
        raise DataError(f"{path} is not a run directory (no config.yaml)")
    teachers = [t["name"] for t in yaml.safe_load(config.read_text())["teachers"]]
    outcomes = RunDir(path).load_outcomes()
    if not outcomes:
        raise DataError(f"{path} holds no outcomes yet")
    return outcomes, teachers


def evaluate_routers(
    outcomes: list[Outcome], teachers: list[str], *, seed: int = 0, embedding: bool = False
) -> dict[str, Any]:
    """Replay the built-in routers (and each single teacher) over a fully scored run."""
    from routers import get_router

    full = fully_scored(outcomes, teachers)
    base = baselines(full, teachers)
    best_single = max(base[t] for t in teachers)
    runs: list[Replay] = [replay(get_router("random", teachers, seed=seed), full)]
    runs += [
        replay(get_router("fixed", teachers, default=t), full, name=f"only {t}") for t in teachers
    ]
    runs.append(replay(get_router("learned", teachers, seed=seed, warmup=len(full) // 10), full))
    for budget in (1.2, 1.4):
        router = get_router("bandit", teachers, seed=seed, max_generations_per_prompt=budget)
        runs.append(replay(router, full, name=f"bandit ≤{budget}"))
    runs.append(replay(get_router("reward", teachers), full, name="reward (oracle)"))
    if embedding:
        runs.append(_cross_fitted_embedding(full, teachers))
    curve = [
        replay(get_router("bandit", teachers, seed=seed, max_generations_per_prompt=b), full)
        for b in BUDGETS
        if b <= len(teachers)
    ]
    points = [(r.generations_per_prompt, r.mean_reward) for r in curve]
    return {
        "prompts": len(full),
        "teachers": teachers,
        "oracle": base["oracle"],
        "best_single": best_single,
        "routers": [r.__dict__ for r in runs],
        "bandit_curve": points,
        "apgr": apgr(points, best_single, base["oracle"], len(teachers)),
    }


def _cross_fitted_embedding(full: list[Outcome], teachers: list[str]) -> Replay:
    """Two-fold: fit on one half, route the other, so no prompt is routed by its own label."""
    from routers import get_router

    half = len(full) // 2
    if half < 2:
        raise DataError("too few fully scored prompts to cross-fit the embedding router")
    parts = []
    for train, test in ((full[:half], full[half:]), (full[half:], full[:half])):
        router = get_router("embedding", teachers).fit(train)  # type: ignore[attr-defined]
        parts.append((replay(router, test), len(test)))
    n = sum(k for _, k in parts)

    def avg(attr: str) -> float:
        return sum(getattr(r, attr) * k for r, k in parts) / n

    return Replay(
        router="embedding (2-fold)",
        mean_reward=avg("mean_reward"),
        win_rate_vs_best_single=avg("win_rate_vs_best_single"),
        regret=avg("regret"),
        generations_per_prompt=avg("generations_per_prompt"),
        cost_usd=sum(r.cost_usd for r, _ in parts),
        prompts=n,
    )


def plot(result: dict[str, Any], path: Path) -> Path:
    """Quality vs generations per prompt: every router as a point, the bandit as a curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=120)
    xs, ys = zip(*result["bandit_curve"], strict=True)
    ax.plot(
        xs,
        ys,
        "-",
        color="tab:blue",
        alpha=0.6,
        label=f"bandit budgets (APGR {result['apgr']:.2f})",
    )
    for r in result["routers"]:
        ax.scatter(r["generations_per_prompt"], r["mean_reward"], zorder=3)
        ax.annotate(
            r["router"],
            (r["generations_per_prompt"], r["mean_reward"]),
            fontsize=7,
            xytext=(4, -3),
            textcoords="offset points",
        )
    ax.axhline(result["oracle"], color="grey", ls="--", lw=0.8, label="oracle")
    ax.axhline(result["best_single"], color="grey", ls=":", lw=0.8, label="best single teacher")
    ax.set_xlabel("generations per prompt")
    ax.set_ylabel("mean reward")
    ax.set_title("Routers replayed on a scored run: quality vs cost")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def table(result: dict[str, Any]) -> Any:
    """A rich table of the replays."""
    from rich.table import Table

    out = Table(
        title=f"Routers on {result['prompts']} fully scored prompts (APGR {result['apgr']:.3f})"
    )
    for col in (
        "router",
        "mean reward",
        "% of oracle",
        "win vs best single",
        "regret",
        "gens/prompt",
        "cost $",
    ):
        out.add_column(col, justify="left" if col == "router" else "right")
    for r in result["routers"]:
        out.add_row(
            r["router"],
            f"{r['mean_reward']:.3f}",
            f"{r['mean_reward'] / result['oracle']:.1%}" if result["oracle"] else "-",
            f"{r['win_rate_vs_best_single']:.1%}",
            f"{r['regret']:.3f}",
            f"{r['generations_per_prompt']:.2f}",
            f"{r['cost_usd']:.4f}",
        )
    return out


def eval_routers(run_dir: str | Path, *, embedding: bool = False) -> tuple[dict[str, Any], Path]:
    """Evaluate, write ``router_eval.json`` and ``router_eval.png`` into the run directory."""
    outcomes, teachers = load_scored_run(run_dir)
    result = evaluate_routers(outcomes, teachers, embedding=embedding)
    out = Path(run_dir)
    (out / "router_eval.json").write_text(json.dumps(result, indent=2))
    png = plot(result, out / "router_eval.png")
    return result, png


def train_router(
    run_dir: str | Path, out: str | Path | None = None, *, model: str = "bundled", k: int = 15
) -> Path:
    """Fit the embedding router on a scored run and save it (default: ``RUN_DIR/router``)."""
    from routers.embedding import EmbeddingRouter

    outcomes, teachers = load_scored_run(run_dir)
    router = EmbeddingRouter(teachers, model=model, k=k).fit(outcomes)
    return router.save(Path(out) if out else Path(run_dir) / "router")
