"""How many template-writer prompts of a language × task cell the mixture's prompt
dedup would call near-duplicates, by cell size.

    python benchmarks/frames.py [--sizes 8 16 32 64] [--seed 0]

For each bundled language, every task's cell is filled with the template writer
(bundled personas) and the mixture's near-duplicate check (MinHash Jaccard ≥ 0.8 over
character 5-grams, ``mixture.dedup`` defaults) is run over it; the table gives the
share of prompts it would drop, over all tasks. No model, no network.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arbitrage.config import DedupConfig
from arbitrage.outputs.filters import near_duplicates
from arbitrage.prompts.frames import bundled_languages
from arbitrage.prompts.personas import bundled_personas
from arbitrage.prompts.pool import awrite, plan
from arbitrage.prompts.tasks import TASKS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    dedup = DedupConfig()
    personas = bundled_personas()
    print("near-duplicate template prompts per language, share of a cell's prompts")
    print("| language | " + " | ".join(f"{n} per cell" for n in args.sizes) + " |")
    print("| --- |" + " --- |" * len(args.sizes))
    for lang in bundled_languages():
        cells = []
        for size in args.sizes:
            dupes = 0
            for task in TASKS:
                slots = plan(personas, [lang], [task], size, seed=args.seed)
                texts = [p.text for p in asyncio.run(awrite(slots))]
                found = near_duplicates(
                    texts, [lang] * size, threshold=dedup.threshold, min_chars=dedup.min_chars
                )
                dupes += len(found)
            cells.append(f"{dupes / (size * len(TASKS)):.0%}")
        print(f"| {lang} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
