"""Train a reward model on a run's preference pairs, and check it on held-out pairs.

    python examples/train_reward_model.py out/demo                 # tiny random model, CPU, <1 min
    python examples/train_reward_model.py out/demo --model path/or/hf-id --steps 200
    python examples/train_reward_model.py out/demo --heldout 50 --output rm/

A run that asks two or more teachers per prompt writes ``preference/``: each
prompt's highest- vs lowest-reward answer. This script holds out ``--heldout``
pairs (default 20%, at least one), trains a sequence-classification model on the
rest with TRL's ``RewardTrainer`` (Bradley-Terry loss: score(chosen) should beat
score(rejected)), and measures held-out pairwise accuracy before and after. It
prints a table, writes ``reward_model_eval.json`` into the run directory and saves
the model and tokenizer to ``RUN_DIR/reward_model/`` (or ``--output``), ready for
a config's ``reward: {kind: hf, model: RUN_DIR/reward_model}``.

The pairs were labelled by the run's reward, so the model learns that reward's
preferences, blind spots included; it is a cheaper copy, not a better judge.

``--model tiny`` is a 2-layer randomly initialised Llama classifier with a
byte-level tokenizer: a smoke run of the whole path, not a useful reward model.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import tempfile
from pathlib import Path
from typing import Any

NO_PAIRS_HINT = (
    "a pair needs two or more scored answers to one prompt, rewards at least "
    "mixture.preference_pairs.min_margin apart: run with router `reward` (every teacher "
    "answers) or `bandit` with max_generations_per_prompt > 1"
)


def _student_example() -> Any:
    """``train_student.py`` beside this file, for its download-free tiny model."""
    path = Path(__file__).with_name("train_student.py")
    spec = importlib.util.spec_from_file_location("train_student", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_model(name: str, seed: int) -> tuple[Any, Any]:
    """(model, tokenizer): ``tiny``, or an HF path / id loaded with a fresh 1-logit head."""
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        LlamaForSequenceClassification,
    )

    torch.manual_seed(seed)  # the same starting weights (and head) for the same seed
    if name == "tiny":
        student = _student_example()
        tokenizer = student.tiny_tokenizer()
        config = student.tiny_config(tokenizer, num_labels=1)
        model = LlamaForSequenceClassification(config)
    else:
        tokenizer = AutoTokenizer.from_pretrained(name)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForSequenceClassification.from_pretrained(
            name, num_labels=1, dtype=torch.float32
        )
        # Without it the model cannot find each row's last token in a padded batch.
        model.config.pad_token_id = tokenizer.pad_token_id
    # Where the trainer will put it, so the "before" scores are not a slow CPU pass.
    return model.to("cuda" if torch.cuda.is_available() else "cpu"), tokenizer


def load_pairs(run_dir: Path) -> Any:
    """The run's pairs as a ``Dataset``; a one-line exit when there are none."""
    if not run_dir.is_dir():
        raise SystemExit(f"{run_dir}: no such run directory")
    folder = run_dir / "preference"
    if not folder.is_dir():
        raise SystemExit(f"{run_dir} has no preference pairs (no preference/): " + NO_PAIRS_HINT)
    counts_file = run_dir / "mixture.json"
    counts = json.loads(counts_file.read_text()) if counts_file.is_file() else {}
    # Checked first: mixture.json says why there are none (single answers, small margins).
    if counts.get("pairs") == 0:
        why = ", ".join(f"{k} {v}" for k, v in counts.get("pairs_dropped", {}).items())
        raise SystemExit(
            f"{run_dir} has no preference pairs ({why or 'none built'}): {NO_PAIRS_HINT}"
        )
    from datasets import load_from_disk

    pairs = load_from_disk(str(folder))
    if len(pairs) == 0:
        raise SystemExit(f"{run_dir} has no preference pairs: " + NO_PAIRS_HINT)
    return pairs


def split(pairs: Any, heldout: int | None) -> tuple[Any, Any, list[str]]:
    """(train, held-out, held-out prompt ids): held-out pairs are picked by prompt-id hash,
    so a rerun holds out the same ones."""
    n = len(pairs)
    held = max(1, round(0.2 * n)) if heldout is None else heldout
    if n < 2 or held >= n:
        raise SystemExit(
            f"too few preference pairs: {n}, and {held} held out leaves none to train on "
            "(need at least 2; lower --heldout or run more prompts)"
        )
    ids = pairs["prompt_id"]
    order = sorted(range(n), key=lambda i: hashlib.sha256(ids[i].encode()).hexdigest())
    # Only prompt / chosen / rejected: a "margin" column would enter TRL's loss, and the
    # run's margins are on the proxy reward's scale, not the scale this model learns.
    pairs = pairs.select_columns(["prompt", "chosen", "rejected"])
    test = sorted(order[:held])
    return pairs.select(sorted(order[held:])), pairs.select(test), [ids[i] for i in test]


def scores(
    model: Any, tokenizer: Any, prompts: list[Any], answers: list[Any], max_length: int
) -> list[float]:
    """The model's reward (first logit) for each prompt + answer, tokenised as in training,
    in batches of 8."""
    import torch

    ids = [
        tokenizer.apply_chat_template(p + a, tokenize=True, return_dict=True)["input_ids"]
        for p, a in zip(prompts, answers, strict=True)
    ]
    out: list[float] = []
    with torch.inference_mode():
        for start in range(0, len(ids), 8):
            batch = tokenizer.pad(
                {"input_ids": [x[:max_length] for x in ids[start : start + 8]]},
                padding=True,
                padding_side="right",  # as in training (and HFRewardModel)
                return_attention_mask=True,
                return_tensors="pt",
            ).to(model.device)
            out += model(**batch).logits[:, 0].float().cpu().tolist()
    return out


def evaluate(model: Any, tokenizer: Any, pairs: Any, max_length: int) -> dict[str, float]:
    """Held-out pairwise accuracy (score(chosen) > score(rejected)) and mean score margin."""
    model.eval()
    chosen = scores(model, tokenizer, pairs["prompt"], pairs["chosen"], max_length)
    rejected = scores(model, tokenizer, pairs["prompt"], pairs["rejected"], max_length)
    diffs = [c - r for c, r in zip(chosen, rejected, strict=True)]
    return {
        "accuracy": round(sum(d > 0 for d in diffs) / len(diffs), 4),
        "mean_margin": round(sum(diffs) / len(diffs), 4),
    }


def train(model: Any, tokenizer: Any, pairs: Any, args: argparse.Namespace) -> tuple[Any, int]:
    """The model after ``args.steps`` steps of TRL's RewardTrainer; also the pairs it trained on."""
    import torch
    from trl import RewardConfig, RewardTrainer

    cuda = torch.cuda.is_available()
    # transformers 5.x renamed it; TRL still sets the old name by default, which warns.
    checkpointing = (
        "activation_checkpointing"
        if hasattr(RewardConfig, "activation_checkpointing")
        else "gradient_checkpointing"
    )
    lr = args.lr if args.lr is not None else (5e-4 if args.model == "tiny" else 1e-5)
    with tempfile.TemporaryDirectory() as tmp:
        config = RewardConfig(
            output_dir=tmp,
            max_steps=args.steps,
            per_device_train_batch_size=args.batch_size,
            learning_rate=lr,
            max_length=args.max_length,
            logging_steps=max(1, args.steps // 5),
            save_strategy="no",
            report_to="none",
            use_cpu=not cuda,
            bf16=cuda and torch.cuda.is_bf16_supported(),
            # Saves memory on a real model; on the tiny one it only costs time.
            **{checkpointing: args.model != "tiny"},
            seed=args.seed,
            disable_tqdm=True,
        )
        trainer = RewardTrainer(
            model=model, args=config, train_dataset=pairs, processing_class=tokenizer
        )
        used = len(trainer.train_dataset)  # pairs over --max-length tokens are left out
        if used == 0:
            raise SystemExit(f"every training pair is longer than --max-length {args.max_length}")
        trainer.train()
    return trainer.model.eval(), used


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Split, evaluate, train, evaluate again, save; the numbers."""
    run_dir = Path(args.run_dir)
    train_pairs, held, held_ids = split(load_pairs(run_dir), args.heldout)
    output = Path(args.output) if args.output else run_dir / "reward_model"
    model, tokenizer = load_model(args.model, args.seed)
    before = evaluate(model, tokenizer, held, args.max_length)
    model, used = train(model, tokenizer, train_pairs, args)
    after = evaluate(model, tokenizer, held, args.max_length)
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    return {
        "model": args.model,
        "steps": args.steps,
        "seed": args.seed,
        "train_pairs": used,
        "skipped_too_long": len(train_pairs) - used,
        "heldout_pairs": len(held),
        "before": before,
        "after": after,
        "output": str(output),
        "heldout_prompt_ids": held_ids,
    }


def show(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table()
    table.add_column("")
    table.add_column("held-out accuracy", justify="right")
    table.add_column("mean margin", justify="right")
    for name in ("before", "after"):
        table.add_row(
            name, f"{result[name]['accuracy']:.1%}", f"{result[name]['mean_margin']:+.3f}"
        )
    print(
        f"{result['train_pairs']} training pairs, {result['heldout_pairs']} held out, "
        f"{result['steps']} steps of {result['model']}"
    )
    Console().print(table)
    if result["skipped_too_long"]:
        print(f"{result['skipped_too_long']} training pairs over --max-length tokens left out")
    print(
        f"saved to {result['output']}; use it with reward: {{kind: hf, model: {result['output']}}}"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--model", default="tiny", help="tiny | HF path/id")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=None, help="default 5e-4 tiny, 1e-5 otherwise")
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--heldout", type=int, default=None, help="pairs held out (default 20%%)")
    parser.add_argument("--output", default=None, help="default RUN_DIR/reward_model")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.heldout is not None and args.heldout < 1:
        parser.error("--heldout must be at least 1")
    result = run(args)
    (Path(args.run_dir) / "reward_model_eval.json").write_text(json.dumps(result, indent=2))
    show(result)
    return result


if __name__ == "__main__":
    main()
