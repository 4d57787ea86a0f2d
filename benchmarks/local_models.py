"""Speed of the bundled local models on this machine: load time and tokens/s, batch 1 vs 8.

    python benchmarks/local_models.py [--tokens 64] [--models smollm2-135m-instruct gemma-3-270m]

Prints a table. Greedy decoding, so every row generates until a stop or the token limit.
"""

from __future__ import annotations

import argparse
import time

from rich.console import Console
from rich.table import Table

from arbitrage.calls.local import MODELS, get_model

PROMPTS = [
    "Explain why the sky is blue.",
    "Write a haiku about rain.",
    "Give three tips for learning a language.",
    "What is 17 times 23? Show your steps.",
    "Describe a market in Lagos in two sentences.",
    "Name four rivers in Europe.",
    "How does a bicycle stay upright?",
    "Write a Python function that reverses a string.",
]


def bench(name: str, tokens: int) -> list[str]:
    start = time.perf_counter()
    model = get_model(name)
    load_s = time.perf_counter() - start
    model.generate_batch([[{"role": "user", "content": "Hi"}]], max_tokens=4, temperature=0.0)
    row = [name, f"{load_s:.1f}"]
    for batch in (1, 8):
        convs = [[{"role": "user", "content": p}] for p in PROMPTS[:batch]]
        start = time.perf_counter()
        results = model.generate_batch(convs, max_tokens=tokens, temperature=0.0)
        elapsed = time.perf_counter() - start
        generated = sum(r.completion_tokens for r in results)
        row.append(f"{generated / elapsed:.1f}")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    args = parser.parse_args()
    table = Table(title=f"Local models, transformers backend, {args.tokens} new tokens, greedy")
    for col in ("model", "load s (cached)", "tok/s batch 1", "tok/s batch 8"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for name in args.models:
        table.add_row(*bench(name, args.tokens))
    Console().print(table)


if __name__ == "__main__":
    main()
