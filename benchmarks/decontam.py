"""Decontamination speed and memory: rows checked against an eval-set n-gram index.

    python benchmarks/decontam.py [--rows 1000000] [--eval-items 100000] [--n 13]

Synthetic text made here (no corpus needed): eval items of 60 words and rows of a
30-word prompt and a 120-word answer, words drawn from a 20,000-word made-up
vocabulary (Zipf-like), so chance 13-gram matches are as rare as in real text. One row
in 1,000 has a 20-word span of an eval item planted in its answer; the table reports
how many of those were found and how many clean rows were flagged (should be 0).
Prints the index build time, rows/s for the check (wall clock, and per CPU second:
on a shared machine the second does not depend on the neighbours), and the
process's peak RSS.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arbitrage.outputs.decontam import build_index, contaminated


def vocabulary(size: int, rng: random.Random) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choices(letters, k=rng.randint(3, 9))) for _ in range(size)]


def make_text(rng: random.Random, words: list[str], weights: list[float], n: int) -> str:
    return " ".join(rng.choices(words, cum_weights=weights, k=n))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--eval-items", type=int, default=100_000)
    parser.add_argument("--n", type=int, default=13)
    parser.add_argument("--chunk", type=int, default=50_000, help="rows made and checked at once")
    args = parser.parse_args()

    rng = random.Random(0)
    words = vocabulary(20_000, rng)
    weights, acc = [], 0.0
    for rank in range(1, len(words) + 1):
        acc += 1.0 / rank
        weights.append(acc)
    rss0 = peak_rss_mb()
    evals = [make_text(rng, words, weights, 60) for _ in range(args.eval_items)]
    t0, c0 = time.perf_counter(), time.process_time()
    index = build_index("eval", evals, args.n)
    build_s, build_cpu = time.perf_counter() - t0, time.process_time() - c0
    index_mb = index.hashes.nbytes / 2**20

    check_s = check_cpu = 0.0
    planted = found = false_pos = 0
    done = 0
    while done < args.rows:
        size = min(args.chunk, args.rows - done)
        rows, leaks = [], set()
        for i in range(size):
            prompt = make_text(rng, words, weights, 30)
            answer = make_text(rng, words, weights, 120)
            if (done + i) % 1000 == 999:
                span = rng.choice(evals).split()[10:30]
                answer = answer + " " + " ".join(span)
                leaks.add(i)
            rows.append([prompt, answer])
        t0, c0 = time.perf_counter(), time.process_time()
        hits = contaminated(rows, [index], args.n)
        check_s += time.perf_counter() - t0
        check_cpu += time.process_time() - c0
        planted += len(leaks)
        found += sum(1 for i in leaks if hits[i] is not None)
        false_pos += sum(1 for i, h in enumerate(hits) if h is not None and i not in leaks)
        done += size
        print(f"  {done:,} rows checked, {done / check_s:,.0f} rows/s", file=sys.stderr)

    print(f"decontamination: {args.rows:,} rows × {args.eval_items:,} eval items, {args.n}-grams")
    print("| measure | value |")
    print("| --- | --- |")
    print(f"| eval index: build time, wall (CPU) | {build_s:.1f} s ({build_cpu:.1f} s) |")
    print(f"| eval index: n-grams, size | {index.hashes.size:,}, {index_mb:.0f} MB |")
    print(f"| check: time, wall (CPU) | {check_s:.1f} s ({check_cpu:.1f} s) |")
    print(
        f"| check: rows/s, wall (per CPU second) | {args.rows / check_s:,.0f} "
        f"({args.rows / check_cpu:,.0f}) |"
    )
    print(f"| planted leaks found | {found:,} of {planted:,} |")
    print(f"| clean rows flagged | {false_pos:,} |")
    print(f"| peak RSS (whole process, incl. the synthetic text) | {peak_rss_mb():,.0f} MB "
          f"(at start {rss0:,.0f} MB) |")  # fmt: skip


if __name__ == "__main__":
    main()
