"""The dataset card (``README.md`` of a run directory) and publishing to the Hugging Face Hub."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from arbitrage.config import RunConfig
from arbitrage.errors import ArbitrageError
from arbitrage.outputs.kept import RowMeta
from arbitrage.outputs.mixture import Mixture


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _stats(values: Sequence[float]) -> list[str]:
    if not values:
        return ["0", "-", "-", "-", "-"]
    return [
        str(len(values)),
        f"{statistics.fmean(values):.3f}",
        f"{statistics.median(values):.3f}",
        f"{min(values):.3f}",
        f"{max(values):.3f}",
    ]


def _basis_line(rows: Sequence[RowMeta]) -> str:
    """What the kept rows' rewards rested on (``basis``: a model, a reference answer, ...)."""
    counts = Counter(r.basis for r in rows)
    if not counts:
        return ""
    return "\n- reward basis of the kept rows: " + ", ".join(
        f"{name} {n}" for name, n in counts.most_common()
    )


def _batched(config: RunConfig) -> bool:
    scorers = config.reward.scorers()
    return any(t.mode == "batch" for t in config.teachers) or any(
        s.mode == "batch" for s in scorers
    )


def dataset_card(config: RunConfig, mixture: Mixture, summary: dict[str, Any]) -> str:
    """The card: YAML metadata, then teachers, router, reward, counts per language × task ×
    teacher, reward statistics, cost and the filters applied."""
    import yaml

    counts = mixture.counts()
    kept = mixture.kept()  # the rows' short values: the card reads no text
    languages = sorted({r.language for r in kept} or set(config.pool.languages))
    meta = {
        "language": languages,
        "task_categories": ["text-generation"],
        "tags": ["synthetic", "multilingual", "data-arbitrage", "sft", "dpo"],
        "configs": [
            {"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]},
            {
                "config_name": "preference",
                "data_files": [{"split": "train", "path": "preference/train-*"}],
            },
        ],
    }
    mix_cfg = config.mixture.model_dump(mode="json")
    router = {"name": config.router.name, "params": config.router.params}
    router_line = yaml.safe_dump(router, default_flow_style=True).strip()
    rewards_by_teacher: dict[str, list[float]] = {t.name: [] for t in config.teachers}
    for row in kept:
        rewards_by_teacher.setdefault(row.teacher, []).append(row.reward)
    dropped = [[reason, n] for reason, n in counts["dropped"].items()] or [["(none)", 0]]
    cost = summary.get("cost_usd", 0.0)
    sections = [
        "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---",
        "# Multi-teacher arbitrage mixture",
        f"Made by data-arbitrage: "
        f"{counts['outcomes']} persona-seeded prompts in {', '.join(config.pool.languages)} "
        f"({', '.join(config.pool.tasks)}) were routed to {len(config.teachers)} teachers; "
        f"each answer was scored with the `{config.reward.kind}` reward and the best one kept.",
        f"- **SFT rows** (config `default`, column `messages`): {counts['rows']}\n"
        f"- **Preference pairs** (config `preference`, `prompt`/`chosen`/`rejected`): "
        f"{counts['pairs']}\n"
        f"- **Cost**: ${cost:.4f} for {summary.get('generations', 0)} generations"
        + (" (batch API calls at batch prices)" if _batched(config) else ""),
        "Check each teacher's terms of use before training on or sharing its outputs.",
        "## Teachers",
        _md_table(
            ["teacher", "model", "generations", "wins", "tokens", "cost $"],
            [
                [
                    t.name,
                    f"`{t.model}`" + (" (batch API)" if t.mode == "batch" else ""),
                    int(summary.get("teachers", {}).get(t.name, {}).get("generations", 0)),
                    int(summary.get("teachers", {}).get(t.name, {}).get("wins", 0)),
                    int(summary.get("teachers", {}).get(t.name, {}).get("tokens", 0)),
                    f"{summary.get('teachers', {}).get(t.name, {}).get('cost_usd', 0.0):.4f}",
                ]
                for t in config.teachers
            ],
        ),
        f"## Router and reward\n\n- router: `{router_line}`\n- reward: `{config.reward.kind}`"
        + (f" (`{config.reward.model}`)" if config.reward.model else "")
        + _basis_line(kept),
        "## Rows per language × task × teacher",
        _md_table(
            ["language", "task", "teacher", "rows"],
            [[c["language"], c["task"], c["teacher"], c["rows"]] for c in counts["by_cell"]]
            or [["-", "-", "-", 0]],
        ),
        "## Reward of the kept rows",
        _md_table(
            ["teacher", "rows", "mean", "median", "min", "max"],
            [[t, *_stats(v)] for t, v in rewards_by_teacher.items()]
            + [["all", *_stats([r.reward for r in kept])]],
        ),
        "## Filters applied",
        "```yaml\n" + yaml.safe_dump(mix_cfg, sort_keys=False).strip() + "\n```",
        "Rows dropped, by the first reason each failed:",
        _md_table(["reason", "rows"], dropped),
    ]
    if counts.get("eval_sets"):
        sections += [
            f"Decontamination ({config.mixture.decontaminate_ngram}-gram overlap of prompts "
            "and answers with each eval set's items):",
            _md_table(
                ["eval set", "items", "items too short to match", "rows dropped"],
                [
                    [name, s["items"], s["short"], counts["contaminated"].get(name, 0)]
                    for name, s in counts["eval_sets"].items()
                ],
            ),
        ]
    if counts["pairs_dropped"]:
        sections += [
            "Prompts without a preference pair:",
            _md_table(["reason", "prompts"], list(counts["pairs_dropped"].items())),
        ]
    sections += _samples_and_fusion(config, kept, summary)
    return "\n\n".join(sections) + "\n"


def _samples_and_fusion(
    config: RunConfig, rows: Sequence[RowMeta], summary: dict[str, Any]
) -> list[str]:
    """The card's section on samples per teacher and fusion, when the run used them."""
    samples = {t.name: t.samples for t in config.teachers if t.samples > 1}
    fusion = summary.get("fusion")
    if not samples and config.fusion is None:
        return []
    lines = []
    if samples:
        asked = ", ".join(f"{name} × {k}" for name, k in samples.items())
        lines.append(f"- samples per prompt: {asked}; each row is the best-scored sample")
        base = summary.get("samples") or {}
        k = base.get("samples", 1)
        label = f"best single × {k} samples"
        if label in base:
            lines.append(
                f"- mean reward: this mixture's answers {base['arbitraged']:.4f}, {label} "
                f"({base[label + ' teacher']}) {base[label]:.4f}, best single × 1 sample "
                f"{base['best single × 1 sample']:.4f} ({base['prompts']} prompts)"
            )
    if config.fusion is not None:
        fused = sum(1 for r in rows if r.fused)
        lines.append(
            f"- fusion: `{config.fusion.model}` wrote one answer from the top "
            f"{config.fusion.top_k} candidates (keep: {config.fusion.keep}); "
            f"{fused} of {len(rows)} kept rows are fused (`fused_from` lists their sources)"
        )
        if fusion and fusion.get("scored"):
            gain = fusion["mean_gain"]
            lines.append(
                f"- fusion won {fusion['won']} of {fusion['scored']} scored fusions; "
                f"mean reward gain over the best candidate {gain:+.4f}"
            )
    return ["## Samples and fusion", "\n".join(lines)]


def write_card(
    run_dir: str | Path, config: RunConfig, mixture: Mixture, summary: dict[str, Any]
) -> Path:
    """Write the card as ``README.md`` in ``run_dir``."""
    path = Path(run_dir) / "README.md"
    path.write_text(dataset_card(config, mixture, summary), encoding="utf-8")
    return path


def push_to_hub(run_dir: str | Path, mixture: Mixture, repo_id: str, *, private: bool) -> str:
    """Publish the card, the SFT rows (config ``default``) and the pairs (``preference``).

    The card goes first, so ``Dataset.push_to_hub`` keeps its text and only adds its
    metadata. Any failure (offline, no token, no permission) is one ``ArbitrageError``.
    """
    from huggingface_hub import HfApi

    card = Path(run_dir) / "README.md"
    try:
        api = HfApi()
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        api.upload_file(
            path_or_fileobj=str(card),
            path_in_repo="README.md",
            repo_id=repo_id,
            repo_type="dataset",
        )
        mixture.sft().push_to_hub(repo_id, private=private)
        if mixture.pairs:
            mixture.preference().push_to_hub(repo_id, config_name="preference", private=private)
    except Exception as exc:  # offline, auth, HTTP: the hub client raises many types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ArbitrageError(
            f"push to the Hub ({repo_id}) failed: {type(exc).__name__}: {first}; the run's "
            "files are saved - rerun the same command to retry"
        ) from None
    return f"https://huggingface.co/datasets/{repo_id}"
