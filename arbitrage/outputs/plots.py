"""The report's figures (matplotlib, Agg backend): win-rate heatmaps, rewards, cost and tokens."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def heatmap(
    cells: Mapping[str, Mapping[str, tuple[int, int]]],
    teachers: Sequence[str],
    path: Path,
    *,
    axis: str,
    title: str,
) -> Path:
    """Rows = ``axis`` values, columns = teachers, colour = wins / contested; cells annotated.

    ``cells[value][teacher]`` is ``(wins, contested)``; a cell with no contested
    prompt is grey and marked "–".
    """
    plt = _pyplot()
    import numpy as np

    rows = sorted(cells)
    grid = np.full((max(len(rows), 1), max(len(teachers), 1)), np.nan)
    for i, value in enumerate(rows):
        for j, teacher in enumerate(teachers):
            wins, n = cells[value].get(teacher, (0, 0))
            if n:
                grid[i, j] = wins / n
    fig, ax = plt.subplots(
        figsize=(max(4.8, 1.6 + 1.25 * len(teachers)), max(2.6, 1.3 + 0.55 * len(rows))),
        dpi=120,
    )
    cmap = plt.get_cmap("RdYlGn").with_extremes(bad="#dddddd")
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    for i, value in enumerate(rows):
        for j, teacher in enumerate(teachers):
            wins, n = cells[value].get(teacher, (0, 0))
            label = f"{wins / n:.0%}\n{wins}/{n}" if n else "–"
            ax.text(j, i, label, ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(teachers)), labels=list(teachers))
    ax.set_yticks(range(len(rows)), labels=rows)
    ax.set_xlabel("teacher")
    ax.set_ylabel(axis)
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="win rate")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def rewards(
    by_teacher: Mapping[str, Sequence[float]],
    by_language: Mapping[str, Sequence[float]],
    path: Path,
) -> Path:
    """Left: reward histograms of every scored answer per teacher. Right: the mixture's
    rewards per language (box plots)."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=120)
    values = [v for vs in by_teacher.values() for v in vs]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if math.isclose(lo, hi):
        lo, hi = lo - 0.5, hi + 0.5
    for teacher, vs in by_teacher.items():
        if vs:
            left.hist(vs, bins=20, range=(lo, hi), histtype="stepfilled", alpha=0.45, label=teacher)
    left.set_xlabel("reward")
    left.set_ylabel("answers")
    left.set_title("Reward of every scored answer, per teacher", fontsize=9)
    if values:
        left.legend(fontsize=8)
    langs = [lang for lang in sorted(by_language) if by_language[lang]]
    if langs:
        right.boxplot([list(by_language[lang]) for lang in langs], tick_labels=langs)
    right.set_xlabel("language")
    right.set_ylabel("reward")
    right.set_title("Reward of the mixture's rows, per language", fontsize=9)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def cost_tokens(per_teacher: Mapping[str, Mapping[str, float]], path: Path) -> Path:
    """Bars per teacher: prompt and completion tokens (stacked), cost in USD, and wins."""
    plt = _pyplot()
    names = list(per_teacher)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6), dpi=120)
    prompt = [per_teacher[t].get("prompt_tokens", 0) for t in names]
    completion = [per_teacher[t].get("completion_tokens", 0) for t in names]
    axes[0].bar(names, prompt, label="prompt", color="tab:blue")
    axes[0].bar(names, completion, bottom=prompt, label="completion", color="tab:orange")
    axes[0].set_title("Tokens per teacher", fontsize=9)
    axes[0].legend(fontsize=8)
    costs = [per_teacher[t].get("cost_usd", 0.0) for t in names]
    axes[1].bar(names, costs, color="tab:red")
    axes[1].set_ylim(bottom=0)
    if not any(costs):
        axes[1].text(
            0.5,
            0.5,
            "no cost recorded\n(local or unpriced models)",
            ha="center",
            va="center",
            transform=axes[1].transAxes,
            color="grey",
        )
    axes[1].set_title("Cost per teacher (USD)", fontsize=9)
    gens = [per_teacher[t].get("generations", 0) for t in names]
    wins = [per_teacher[t].get("wins", 0) for t in names]
    axes[2].bar(names, gens, color="#bbbbbb", label="generations")
    axes[2].bar(names, wins, color="tab:green", label="wins")
    axes[2].set_title("Generations and wins per teacher", fontsize=9)
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.grid(axis="y", alpha=0.3)
        ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
