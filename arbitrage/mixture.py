"""The SFT mixture: one row per prompt that has a winner, in TRL's conversational format."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arbitrage.records import Outcome

if TYPE_CHECKING:
    from datasets import Dataset


def mixture_row(outcome: Outcome) -> dict[str, Any] | None:
    """The dataset row for an outcome, or ``None`` if no answer won (nothing usable)."""
    best = outcome.best
    if best is None:
        return None
    prompt = outcome.prompt
    return {
        "messages": [
            {"role": "user", "content": prompt.text},
            {"role": "assistant", "content": best.generation.text},
        ],
        "prompt_id": prompt.id,
        "persona": prompt.persona,
        "language": prompt.language,
        "task": prompt.task,
        "teacher": best.teacher,
        "model": best.generation.model,
        "reward": float(best.reward if best.reward is not None else 0.0),
        "routed_by": outcome.routed_by,
        "candidates": [
            {
                "teacher": c.teacher,
                "reward": c.reward,
                "status": c.generation.status,
            }
            for c in outcome.candidates
        ],
    }


def build_mixture(outcomes: Sequence[Outcome]) -> Dataset:
    """An HF ``Dataset`` with a ``messages`` column (loads into TRL's SFTTrainer as is)."""
    from datasets import Dataset, Features, List, Value

    rows = [row for row in map(mixture_row, outcomes) if row is not None]
    message = {"role": Value("string"), "content": Value("string")}
    candidate = {"teacher": Value("string"), "reward": Value("float64"), "status": Value("string")}
    features = Features(
        {
            "messages": List(message),
            "prompt_id": Value("string"),
            "persona": Value("string"),
            "language": Value("string"),
            "task": Value("string"),
            "teacher": Value("string"),
            "model": Value("string"),
            "reward": Value("float64"),
            "routed_by": Value("string"),
            "candidates": List(candidate),
        }
    )
    return Dataset.from_list(rows, features=features)


def save_mixture(dataset: Dataset, out_dir: str | Path) -> dict[str, Path]:
    """Write ``dataset/`` (``save_to_disk``) and ``mixture.jsonl`` under ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"dataset": out / "dataset", "jsonl": out / "mixture.jsonl"}
    dataset.save_to_disk(str(paths["dataset"]))
    dataset.to_json(str(paths["jsonl"]), lines=True, force_ascii=False)
    return paths
