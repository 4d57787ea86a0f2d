"""Train a student on a run's mixture, and compare it with a student of the best single teacher.

    python examples/train_student.py out/demo                        # tiny random model, ~1 min
    python examples/train_student.py out/demo --model smollm2-135m-instruct --steps 60
    python examples/train_student.py out/demo --model path/or/hf-id --heldout 30

Both students start from the same weights and train (TRL ``SFTTrainer``, CPU is
fine) for the same steps on the same prompts: the run's prompts on which the best
single teacher (highest mean reward) has an answer, minus ``--heldout`` prompts kept
for evaluation. One student learns the arbitraged answers (the mixture, filters and
quotas applied), the other the best teacher's. Each then answers the held-out
prompts, which the run's configured reward scores. Prints mean rewards and the
arbitraged student's win rate; writes ``student_eval.json`` into the run directory.

``--model tiny`` is a 2-layer randomly initialised Llama with a byte-level tokenizer:
a smoke run of the whole path, not a meaningful student.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer() -> Any:
    """A byte-level tokenizer (256 byte tokens + ChatML markers); needs no download."""
    from tokenizers import Tokenizer, decoders, models
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(sorted(ByteLevel.alphabet()))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<pad>", bos_token="<|im_start|>"
    )
    fast.chat_template = CHATML
    return fast


def tiny_config(tokenizer: Any, **extra: Any) -> Any:
    """A 2-layer Llama config (hidden 64) sized to ``tokenizer``; ``extra`` adds fields."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **extra,
    )


def load_student(name: str, seed: int) -> tuple[Any, Any]:
    """(model, tokenizer): ``tiny``, a bundled local model name, or an HF path / id."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    torch.manual_seed(seed)
    if name == "tiny":
        tokenizer = tiny_tokenizer()
        config = tiny_config(tokenizer, bos_token_id=tokenizer.bos_token_id)
        return LlamaForCausalLM(config), tokenizer
    from arbitrage.calls.local import models

    path: str | Path = name
    if name in models.MODELS:  # the converted safetensors copy of a bundled GGUF model
        from arbitrage.calls.local.backends import convert

        spec = models.MODELS[name]
        path = models.cache_dir(spec)
        if not Path(path).is_dir():
            convert(spec, Path(path))
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), tokenizer


def split(run_dir: str, heldout: int) -> dict[str, Any]:
    """Training rows for both students and the held-out prompts, from a run directory."""
    from statistics import fmean

    from arbitrage.outputs.mixture import make_mixture
    from arbitrage.rundir import load_run

    config, outcomes = load_run(run_dir)
    order = [t.name for t in config.teachers]
    mixture = make_mixture(outcomes, config.mixture, teacher_order=order)
    rewards: dict[str, list[float]] = {t: [] for t in order}
    for o in outcomes:
        for c in o.candidates:
            if c.scored:
                rewards[c.teacher].append(c.reward)
    best = max(order, key=lambda t: fmean(rewards[t]) if rewards[t] else float("-inf"))
    ranked = sorted(outcomes, key=lambda o: hashlib.sha256(o.prompt.id.encode()).hexdigest())
    held = ranked[:heldout]
    held_ids = {o.prompt.id for o in held}
    single: dict[str, str] = {}
    for o in outcomes:
        for c in o.candidates:
            if c.teacher == best and c.generation.ok and o.prompt.id not in held_ids:
                single[o.prompt.id] = c.generation.text
    arbitraged = {r["prompt_id"]: r for r in mixture.rows if r["prompt_id"] in single}
    prompts = {o.prompt.id: o.prompt for o in outcomes}

    def rows(answers: dict[str, str]) -> list[dict[str, Any]]:
        return [
            {
                "messages": [
                    {"role": "user", "content": prompts[pid].text},
                    {"role": "assistant", "content": answers[pid]},
                ]
            }
            for pid in arbitraged
        ]

    return {
        "config": config,
        "best_teacher": best,
        "arbitraged": rows({pid: r["messages"][1]["content"] for pid, r in arbitraged.items()}),
        "single": rows(single),
        "heldout": [o.prompt for o in held],
    }


def train(rows: list[dict[str, Any]], args: argparse.Namespace, out: Path) -> tuple[Any, Any]:
    """One student, trained with TRL's SFTTrainer for ``args.steps`` steps."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model, tokenizer = load_student(args.model, args.seed)
    config = SFTConfig(
        output_dir=str(out),
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr,
        max_length=args.max_length,
        logging_steps=max(1, args.steps // 5),
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=args.seed,
        disable_tqdm=True,
    )
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
    )
    trainer.train()
    return trainer.model.eval(), tokenizer


def answer(model: Any, tokenizer: Any, prompts: list[Any], max_new_tokens: int) -> list[str]:
    """Greedy answers to ``prompts``, in batches of 8."""
    import torch

    tokenizer.padding_side = "left"
    texts = []
    for i in range(0, len(prompts), 8):
        chats = [[{"role": "user", "content": p.text}] for p in prompts[i : i + 8]]
        enc = tokenizer.apply_chat_template(
            chats,
            add_generation_prompt=True,
            return_tensors="pt",
            padding=True,
            return_dict=True,
        )
        with torch.inference_mode():
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        new = out[:, enc["input_ids"].shape[1] :]
        texts += [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    return texts


def compare(args: argparse.Namespace) -> dict[str, Any]:
    """Train both students, answer the held-out prompts, score them; the numbers."""
    from arbitrage.factories import build_reward

    data = split(args.run_dir, args.heldout)
    if not data["arbitraged"] or not data["heldout"]:
        raise SystemExit("not enough prompts: need training rows and held-out prompts")
    reward = build_reward(data["config"])
    result: dict[str, Any] = {
        "model": args.model,
        "steps": args.steps,
        "best_teacher": data["best_teacher"],
        "train_rows": len(data["arbitraged"]),
        "heldout": len(data["heldout"]),
        "students": {},
    }
    scores: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("arbitraged", "single"):
            model, tokenizer = train(data[name], args, Path(tmp) / name)
            texts = answer(model, tokenizer, data["heldout"], args.max_new_tokens)
            got = reward.score_batch(list(zip(data["heldout"], texts, strict=True)))
            scores[name] = [s.value if s.value is not None else 0.0 for s in got]
            result["students"][name] = {
                "mean_reward": round(sum(scores[name]) / len(scores[name]), 4),
                "example": texts[0][:200],
            }
    pairs = list(zip(scores["arbitraged"], scores["single"], strict=True))
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs)
    result["arbitraged_win_rate"] = round(wins / len(pairs), 4)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--model", default="tiny", help="tiny | bundled local name | HF path/id")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--heldout", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = compare(args)
    (Path(args.run_dir) / "student_eval.json").write_text(json.dumps(result, indent=2))
    s = result["students"]
    print(
        f"{result['train_rows']} training prompts, {result['heldout']} held out, "
        f"{args.steps} steps of {args.model}\n"
        f"mean reward  arbitraged: {s['arbitraged']['mean_reward']:.3f}  "
        f"best single teacher ({result['best_teacher']}): {s['single']['mean_reward']:.3f}\n"
        f"arbitraged student wins {result['arbitraged_win_rate']:.0%} of held-out prompts"
    )
    return result


if __name__ == "__main__":
    main()
