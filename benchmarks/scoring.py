"""Reward scoring speed: the HF reward model's batching on CPU, and LLM-judge calls/s.

    python benchmarks/scoring.py [--quick] [--only hf|judge] [--model PATH_OR_ID] [--threads 1]

HF: ``HFRewardModel`` scores ``--pairs`` (prompt, completion) pairs, fixed seed, with
lognormal lengths in the model's own tokens (prompts median 50, 8-400; completions
median 220, 20-1500); 48 is what one pipeline batch (16 prompts × 3 teachers) sends it.
The model is a random-weights Qwen2 classifier (hidden 384, 4 layers, vocab 32k) with
a byte-level BPE tokenizer and a ChatML template, both built here (no download), or
``--model`` (e.g. ``Skywork/Skywork-Reward-V2-Qwen3-0.6B``). Each batch size runs
twice: ``sorted``, as ``HFRewardModel`` batches (longest first, one ``score_batch``
call for all pairs), and ``arrival``, in the workload's order (one ``score_batch``
call per ``batch`` pairs: sorting inside a single batch changes nothing, so this is
batching without sorting). ``pad %`` is pad tokens over all tokens in the forward passes.

Judge: ``JudgeReward`` (one call per pair) and ``PairwiseJudgeReward`` (two calls per
pair of a prompt's candidates, both orders) through litellm against
``tests/stub_server.py``'s ``StubServer`` in its own process (so the client, not the
server, is what is measured), at concurrency 1, 16 and 64 with ``--latency-ms`` per
reply. Calls are counted by the server.

Every cell is the best of ``--repeat`` runs (the machine may be shared: the best run
is the least disturbed). On a shared machine pass ``--threads 1``: torch's threads
stall when another process takes a core, and the timings turn to noise. About 4
minutes on a 2-core machine; ``--quick`` about half a minute.

Not ``benchmarks/reward.py``: scripts here run with ``benchmarks/`` first on
``sys.path``, where a ``reward.py`` would shadow the ``reward`` package for all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from arbitrage.records import Prompt

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("BENCH_KEY", "sk-bench")

ROOT = Path(__file__).resolve().parents[1]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
)
JUDGE_REPLY = "Clear and correct.\nScore: 7"
PAIRWISE_REPLY = "Assistant A is more accurate. [[A]]"
LEVELS = (1, 16, 64)


# --- workload ---------------------------------------------------------------------------


def _vocabulary(rng: random.Random, size: int = 6000) -> list[str]:
    """Pseudo-words of 1-4 syllables: text a BPE splits like prose (common words whole)."""
    onsets = ["", "b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v"]
    onsets += ["w", "st", "tr", "pl", "ch", "sh", "th", "br", "gr"]
    nuclei = ["a", "e", "i", "o", "u", "ea", "ou", "ai", "io"]
    codas = ["", "", "n", "s", "t", "r", "l", "nd", "ng", "st", "ck"]
    words: set[str] = set()
    while len(words) < size:
        syllables = rng.choice((1, 1, 2, 2, 2, 3, 3, 4))
        words.add(
            "".join(
                rng.choice(onsets) + rng.choice(nuclei) + rng.choice(codas)
                for _ in range(syllables)
            )
        )
    return sorted(words)


def _words(seed: int) -> tuple[list[str], list[float]]:
    words = _vocabulary(random.Random(seed))
    return words, [1 / (rank + 1) for rank in range(len(words))]  # Zipf, as in prose


def _text(rng: random.Random, words: list[str], weights: list[float], n: int) -> str:
    out = []
    for i, word in enumerate(rng.choices(words, weights, k=n)):
        out.append(word + ("." if i % 13 == 12 else ","[: i % 7 == 6]))
    return " ".join(out)


def corpus(seed: int) -> list[str]:
    """Text to train the built tokenizer on (the workload's words, other sentences)."""
    rng = random.Random(seed + 1)
    words, weights = _words(seed)
    return [_text(rng, words, weights, 200) for _ in range(3000)]


def workload(n: int, tokenizer: Any, seed: int = 0) -> list[tuple[Prompt, str]]:
    """``n`` (prompt, completion) pairs whose lengths in ``tokenizer``'s tokens are lognormal.

    Texts are cut to length in tokens, so any tokenizer sees the same length spread.
    """
    rng = random.Random(seed)
    words, weights = _words(seed)

    def text(tokens: int) -> str:
        # Every word is at least one token: ``tokens`` words are enough to cut from.
        ids = tokenizer(_text(rng, words, weights, tokens), add_special_tokens=False)["input_ids"]
        return str(tokenizer.decode(ids[:tokens])).strip()

    pairs = []
    for i in range(n):
        prompt_tokens = min(400, max(8, round(rng.lognormvariate(math.log(50), 0.8))))
        answer_tokens = min(1500, max(20, round(rng.lognormvariate(math.log(220), 0.9))))
        prompt = Prompt(text=text(prompt_tokens), language="en", task=f"task{i % 5}")
        pairs.append((prompt, text(answer_tokens)))
    return pairs


def build_model(path: Path, texts: list[str]) -> str:
    """A random-weights Qwen2 reward model and a byte-level BPE tokenizer, saved at ``path``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForSequenceClassification

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=32000,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator([*texts, "user assistant system"], trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|endoftext|>",
        pad_token="<pad>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    config = Qwen2Config(
        vocab_size=32000,
        hidden_size=384,
        intermediate_size=1024,
        num_hidden_layers=4,
        num_attention_heads=6,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
    )
    config.num_labels = 1  # one logit: the reward
    torch.manual_seed(0)
    Qwen2ForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


# --- HF reward model --------------------------------------------------------------------


def pad_fraction(lengths: Sequence[int], batch: int, *, longest_first: bool) -> float:
    """Pad tokens / all tokens when ``lengths`` are batched right-padded, as scored."""
    order = sorted(lengths, reverse=True) if longest_first else list(lengths)
    total = padded = 0
    for start in range(0, len(order), batch):
        chunk = order[start : start + batch]
        total += max(chunk) * len(chunk)
        padded += max(chunk) * len(chunk) - sum(chunk)
    return padded / total


def _timed(fn: Any, repeat: int) -> tuple[float, list[Any]]:
    best, result = math.inf, []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def _gap(a: Sequence[Any], b: Sequence[Any]) -> float:
    """The largest difference between two lists of scores of the same pairs."""
    return max(abs((x.value or 0.0) - (y.value or 0.0)) for x, y in zip(a, b, strict=True))


def bench_hf(args: argparse.Namespace) -> None:
    import torch
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from reward.hf import HFRewardModel

    hf_logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            path, what = args.model, args.model
        else:
            path = build_model(Path(tmp), corpus(args.seed))
            what = "random Qwen2 (hidden 384, 4 layers, 18.6M params, vocab 32k)"
        tokenizer = AutoTokenizer.from_pretrained(path)
        pairs = workload(args.pairs, tokenizer, seed=args.seed)
        reward = HFRewardModel(path, device=args.device, dtype=args.dtype, batch_size=1)
        start = time.perf_counter()
        reward.score_batch(pairs[:4])  # load, and the first passes' one-off costs
        load_s = time.perf_counter() - start
        special = not tokenizer.chat_template  # as HFRewardModel tokenizes
        lengths = [
            min(
                len(tokenizer(reward.format_pair(p, c), add_special_tokens=special)["input_ids"]),
                reward.max_length,
            )
            for p, c in pairs
        ]
        load_before = os.getloadavg()[0]
        base_s, base = _timed(lambda: reward.score_batch(pairs), args.repeat)
        rows: list[tuple[str, float, float | None, float, float, float, float | None]]
        rows = [("1", len(pairs) / base_s, None, 0.0, 0.0, 1.0, None)]
        drift = 0.0
        for b in args.batch_sizes:
            reward.batch_size = b
            sorted_s, got = _timed(lambda: reward.score_batch(pairs), args.repeat)
            arrival_s, got_arrival = _timed(
                lambda b=b: [
                    s for i in range(0, len(pairs), b) for s in reward.score_batch(pairs[i : i + b])
                ],
                args.repeat,
            )
            drift = max(drift, _gap(base, got), _gap(got, got_arrival))
            rows.append(
                (
                    str(b),
                    len(pairs) / sorted_s,
                    len(pairs) / arrival_s,
                    pad_fraction(lengths, b, longest_first=True),
                    pad_fraction(lengths, b, longest_first=False),
                    base_s / sorted_s,
                    arrival_s / sorted_s,
                )
            )
        load_after = os.getloadavg()[0]
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    q = statistics.quantiles(lengths, n=10, method="inclusive")
    notes = [
        f"{len(pairs)} pairs (seed {args.seed}), tokens per pair: min {min(lengths)}, median "
        f"{statistics.median(lengths):.0f}, mean {statistics.mean(lengths):.0f}, p90 {q[-1]:.0f}, "
        f"max {max(lengths)}; {sum(lengths)} tokens in all",
        f"{device}, dtype {args.dtype}, {torch.get_num_threads()} torch threads, "
        f"{os.cpu_count()} CPUs, load avg {load_before:.1f} → {load_after:.1f}; best of "
        f"{args.repeat}; load + warm-up {load_s:.1f} s",
        f"largest score difference between batchings: {drift:.1e}",
    ]
    title = f"HFRewardModel: {what}"
    table = Table(title=title)
    columns = (
        "batch",
        "pairs/s sorted",
        "pairs/s arrival",
        "pad % sorted",
        "pad % arrival",
        "sorted ÷ batch 1",
        "sorted ÷ arrival",
    )
    for col in columns:
        table.add_column(col, justify="right")
    for batch, fast, slow, pad_fast, pad_slow, vs_one, vs_arrival in rows:
        table.add_row(
            batch,
            f"{fast:.2f}",
            "-" if slow is None else f"{slow:.2f}",
            f"{100 * pad_fast:.1f}",
            f"{100 * pad_slow:.1f}",
            f"{vs_one:.2f}×",
            "-" if vs_arrival is None else f"{vs_arrival:.2f}×",
        )
    Console().print(table)
    print("\n".join(notes))


# --- LLM judge ----------------------------------------------------------------------------


def _serve(conn: Connection, latency_s: float) -> None:
    """Run ``StubServer`` in this process; answer each message with the requests so far."""
    sys.path.insert(0, str(ROOT / "tests"))
    from stub_server import Reply, StubServer

    with StubServer() as server:
        server.set_handler("judge", lambda _: Reply(JUDGE_REPLY, delay_s=latency_s))
        server.set_handler("pairwise", lambda _: Reply(PAIRWISE_REPLY, delay_s=latency_s))
        conn.send(server.url)
        while conn.recv() is not None:
            conn.send(len(server.requests))


@dataclass
class _Stub:
    url: str
    conn: Connection

    def calls(self) -> int:
        self.conn.send("count")
        return int(self.conn.recv())


def _pairwise_pairs(prompts: int, tag: str) -> list[tuple[Prompt, str]]:
    """2 or 3 candidates per prompt, alternately: 2 or 6 judge calls, 4 on average."""
    pairs = []
    for i in range(prompts):
        prompt = Prompt(text=f"{tag} question {i}: explain it briefly", language="en", task="qa")
        pairs += [(prompt, f"candidate {k} for {tag} {i}") for k in range(2 + i % 2)]
    return pairs


async def _judge_rates(stub: _Stub, args: argparse.Namespace) -> dict[str, list[float] | str]:
    from reward.judge import JudgeReward

    results: dict[str, list[float] | str] = {}

    async def rate(judge: Any, pairs: list[tuple[Prompt, str]]) -> float:
        before = stub.calls()
        start = time.perf_counter()
        scores = await judge.ascore_batch(pairs)
        elapsed = time.perf_counter() - start
        assert len(scores) == len(pairs), f"{len(scores)} scores for {len(pairs)} pairs"
        assert any(s.value is not None for s in scores), "the stub's replies were not parsed"
        return (stub.calls() - before) / elapsed

    warm = JudgeReward(
        "openai/judge", max_concurrency=8, api_base=stub.url, api_key_env="BENCH_KEY"
    )
    await warm.ascore_batch([(Prompt(f"warm {i}", "en", "qa"), "ok") for i in range(16)])
    pointwise = []
    for c in LEVELS:
        calls = args.judge_calls if c > 1 else max(8, args.judge_calls // 16)
        judge = JudgeReward(
            "openai/judge", max_concurrency=c, api_base=stub.url, api_key_env="BENCH_KEY"
        )
        best = 0.0
        for r in range(args.repeat):
            pairs = [
                (Prompt(f"c{c} r{r} question {i}", "en", "qa"), "an answer") for i in range(calls)
            ]
            best = max(best, await rate(judge, pairs))
        pointwise.append(best)
    results["JudgeReward (pointwise)"] = pointwise

    try:
        from reward.pairwise import PairwiseJudgeReward
    except ImportError as exc:
        results["PairwiseJudgeReward"] = f"not available ({exc})"
        return results
    pairwise = []
    for c in LEVELS:
        calls = args.judge_calls if c > 1 else max(8, args.judge_calls // 16)
        pairwise_judge = PairwiseJudgeReward(
            "openai/pairwise", max_concurrency=c, api_base=stub.url, api_key_env="BENCH_KEY"
        )
        best = 0.0
        for r in range(args.repeat):
            best = max(best, await rate(pairwise_judge, _pairwise_pairs(calls // 4, f"c{c} r{r}")))
        pairwise.append(best)
    results["PairwiseJudgeReward (comparisons)"] = pairwise
    return results


def bench_judge(args: argparse.Namespace) -> None:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(child, args.latency_ms / 1000), daemon=True)
    server.start()
    try:
        stub = _Stub(parent.recv(), parent)
        load_before = os.getloadavg()[0]

        results = asyncio.run(_judge_rates(stub, args))
        load_after = os.getloadavg()[0]
        parent.send(None)
    finally:
        server.join(timeout=5)
        if server.is_alive():
            server.terminate()
    title = f"Judge calls/s through litellm, {args.latency_ms:g} ms a reply"
    notes = [
        f"StubServer in its own process; {args.judge_calls} calls a run "
        f"({max(8, args.judge_calls // 16)} at c=1), best of {args.repeat}; "
        f"{os.cpu_count()} CPUs, load avg {load_before:.1f} → {load_after:.1f}"
    ]
    table = Table(title=title)
    table.add_column("reward model")
    for c in LEVELS:
        table.add_column(f"c={c}", justify="right")
    for label, cells in results.items():
        if isinstance(cells, str):
            notes.append(f"pairwise: {cells}")
            continue
        table.add_row(label, *(f"{v:.1f}" for v in cells))
    table.add_row("ideal (c / latency)", *(f"{c / (args.latency_ms / 1000):.0f}" for c in LEVELS))
    Console().print(table)
    print("\n".join(notes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("hf", "judge"), help="run one of the two tables")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--model", help="a real reward model (hub id or folder) for the HF table")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument(
        "--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16")
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--pairs", type=int, help="default 48 (--quick: 16)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", help="default 8 16 32 (--quick: 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--judge-calls", type=int, help="default 512 (--quick: 64)")
    parser.add_argument("--repeat", type=int, help="default 2 (--quick: 1)")
    args = parser.parse_args()
    # --quick changes the defaults only: a size given on the command line stands.
    quick = args.quick
    args.pairs = args.pairs or (16 if quick else 48)
    args.batch_sizes = args.batch_sizes or ([8] if quick else [8, 16, 32])
    args.judge_calls = args.judge_calls or (64 if quick else 512)
    args.repeat = args.repeat or (1 if quick else 2)
    if args.only in (None, "hf"):
        bench_hf(args)
    if args.only in (None, "judge"):
        bench_judge(args)


if __name__ == "__main__":
    main()
