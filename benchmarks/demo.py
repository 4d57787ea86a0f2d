"""The embedded default, measured as a new user meets it: wall time, peak memory, rows kept.

    python benchmarks/demo.py --out out/demo [--fresh]

Runs ``arbitrage run --out OUT`` (the embedded default) in a child process, its log
going to ``OUT.log``; ``--fresh`` gives it an empty model cache, so the first model
conversion is included. Prints what the issue asked of the default: at least 20
rows, at most 6 minutes, at most 3 GB peak RSS (the largest process: the run, or
its conversion child), at least two teachers winning somewhere and at least three
languages, with the machine's load average, since other work on a shared machine
slows the run down. ``--check OUT`` only reads a finished run directory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(out: Path, fresh: bool) -> tuple[float, float]:
    env = dict(os.environ)
    if fresh:
        env["ARBITRAGE_CACHE_DIR"] = tempfile.mkdtemp(prefix="arbitrage-models-")
    start = time.perf_counter()
    with Path(f"{out}.log").open("w") as log:
        done = subprocess.run(
            [sys.executable, "-m", "arbitrage", "run", "--out", str(out)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            check=False,
        )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"arbitrage run exited {done.returncode}: see {out}.log")
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6  # KiB on Linux
    return wall, peak_gb


def check(out: Path) -> list[tuple[str, str, bool | None]]:
    report = json.loads((out / "report.json").read_text())
    mixture = json.loads((out / "mixture.json").read_text())
    winners = {t for t, r in report["teachers"].items() if r["wins"]}
    languages = {c["language"] for c in mixture["by_cell"]}
    dropped = ", ".join(f"{n} {why}" for why, n in sorted(mixture["dropped"].items()))
    return [
        ("prompts", str(report["prompts"]), None),
        ("rows kept (>= 20)", str(mixture["rows"]), mixture["rows"] >= 20),
        ("dropped", dropped or "none", None),
        ("teachers winning (>= 2)", ", ".join(sorted(winners)), len(winners) >= 2),
        ("languages in the rows (>= 3)", ", ".join(sorted(languages)), len(languages) >= 3),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the run directory to write")
    parser.add_argument("--fresh", action="store_true", help="start from an empty model cache")
    parser.add_argument("--check", action="store_true", help="only read a finished run")
    args = parser.parse_args()
    out = Path(args.out)
    rows: list[tuple[str, str, bool | None]] = []
    if not args.check:
        load = os.getloadavg()[0]
        wall, peak = run(out, args.fresh)
        rows += [
            ("load average (1 min) at start / end", f"{load:.1f} / {os.getloadavg()[0]:.1f}", None),
            ("wall time (<= 6 min)", f"{wall / 60:.1f} min", wall <= 360),
            ("peak RSS (<= 3 GB)", f"{peak:.2f} GB", peak <= 3.0),
        ]
    rows += check(out)
    width = max(len(k) for k, _, _ in rows)
    for key, value, ok in rows:
        mark = "" if ok is None else ("  ok" if ok else "  MISSED")
        print(f"{key:<{width}}  {value}{mark}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
