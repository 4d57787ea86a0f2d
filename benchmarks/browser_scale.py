"""The report's sample browser at scale: write a report for N synthetic prompts and time it
in headless Chromium (load, open a prompt, filter, search).

    python benchmarks/browser_scale.py --prompts 100000 [--screenshot docs/img/browser-100k.png]

The outcomes are synthetic (random words, random rewards, three teachers); what is
measured is the page, not a model. Needs ``playwright`` (the ``dev`` extra) and a
``chromium`` on PATH (``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from arbitrage.config import DedupConfig, MixtureConfig
from arbitrage.outputs.mixture import make_mixture
from arbitrage.outputs.report_files import write_report
from arbitrage.records import Candidate, Generation, Outcome, Prompt, Usage, pick_winner

TEACHERS = ("alpha", "beta", "gamma")
LANGUAGES = ("en", "fr", "es", "de", "sw", "hi")
TASKS = ("open_qa", "coding", "math", "creative_writing")
WORDS = tuple(
    [
        "the",
        "river",
        "market",
        "teacher",
        "answer",
        "garden",
        "engine",
        "budget",
        "morning",
        "letter",
        "price",
        "field",
        "water",
        "school",
        "story",
        "number",
        "bridge",
        "harvest",
        "window",
        "station",
        "doctor",
        "village",
        "music",
    ]
)


def synthetic(n: int, seed: int = 0) -> list[Outcome]:
    rng = random.Random(seed)
    outcomes = []
    for i in range(n):
        words = rng.choices(WORDS, k=rng.randint(12, 40))
        prompt = Prompt(
            text=f"Prompt {i}: " + " ".join(words) + "?",
            language=LANGUAGES[i % len(LANGUAGES)],
            task=TASKS[(i // len(LANGUAGES)) % len(TASKS)],
        )
        cands = []
        for teacher in rng.sample(TEACHERS, rng.choice((1, 2, 2, 3))):
            judge, fidelity = rng.random(), rng.choice((1.0, 1.0, 1.0, 0.2))
            text = " ".join(rng.choices(WORDS, k=rng.randint(30, 160)))
            gen = Generation(
                prompt_id=prompt.id,
                teacher=teacher,
                model=f"openai/{teacher}",
                text=text + ".",
                finish_reason=rng.choice(("stop",) * 9 + ("length",)),
                usage=Usage(40, len(text) // 4),
            )
            reward = judge * fidelity
            details = {"judge_yes": judge, "language_fidelity": fidelity, "degeneracy": 0.0}
            cands.append(Candidate(gen, reward, details))
        cands_t = tuple(cands)
        outcomes.append(Outcome(prompt, cands_t, pick_winner(cands_t, list(TEACHERS)), "exploit"))
    return outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=100_000)
    parser.add_argument("--out", help="run directory to write (default: a temporary one)")
    parser.add_argument("--screenshot", help="save a screenshot of the browser here")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("skipped: playwright is not installed (pip install -e '.[dev]')")
        return 0
    if chromium is None:
        print("skipped: no chromium on PATH (apt-get install chromium)")
        return 0
    out = Path(args.out or tempfile.mkdtemp(prefix="browser-scale-"))
    t0 = time.perf_counter()
    outcomes = synthetic(args.prompts)
    t1 = time.perf_counter()
    # Near-duplicate removal is off: random words from a 23-word list are all near-duplicates.
    no_dedup = MixtureConfig(dedup=DedupConfig(prompts=False, answers=False))
    mixture = make_mixture(outcomes, no_dedup, teacher_order=list(TEACHERS))
    write_report(out, outcomes, list(TEACHERS), mixture)
    t2 = time.perf_counter()
    samples = out / "samples"
    size = sum(p.stat().st_size for p in samples.iterdir()) / 1e6
    index = (samples / "index.js").stat().st_size / 1e6
    rows = [
        ("prompts", f"{args.prompts:,}"),
        ("make outcomes (synthetic)", f"{t1 - t0:.1f} s"),
        ("write the report (mixture, figures, samples/)", f"{t2 - t1:.1f} s"),
        ("samples/ on disk", f"{size:.0f} MB in {len(list(samples.iterdir()))} files"),
        ("samples/index.js (loaded at open)", f"{index:.1f} MB"),
    ]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        start = time.perf_counter()
        page.goto((out / "report.html").as_uri())
        page.locator(".sb-cand").first.wait_for(timeout=120_000)
        rows.append(("open the page until the first prompt's answers show", _ms(start)))
        start = time.perf_counter()
        page.locator("#sb-list tbody tr").nth(40).click()
        page.wait_for_function(
            "document.querySelector('.sb-prompt .meta').textContent.startsWith('prompt 41 ')"
        )
        rows.append(("open another prompt (same chunk)", _ms(start)))
        start = time.perf_counter()
        page.select_option("#sb-language", label="sw")
        page.wait_for_function(
            "document.getElementById('sb-count').textContent"
            f".startsWith('{_count(outcomes, 'sw')} of')"
        )
        rows.append(("filter by language", _ms(start)))
        start = time.perf_counter()
        page.locator("#sb-next").click()
        page.locator("#sb-next").click()
        page.locator("#sb-list tbody tr").nth(49).click()
        page.wait_for_function("document.querySelectorAll('.sb-cand').length > 0")
        rows.append(("page on twice, open a prompt (another chunk)", _ms(start)))
        start = time.perf_counter()
        page.fill("#sb-search", "harvest window")
        page.wait_for_function(
            "document.getElementById('sb-count').textContent"
            ".indexOf(' of ') > 0 && !document.getElementById('sb-count')"
            f".textContent.startsWith('{_count(outcomes, 'sw')} of')"
        )
        rows.append(("search 'harvest window' (incl. 150 ms debounce)", _ms(start)))
        if args.screenshot:
            page.select_option("#sb-language", label="language: all")
            page.fill("#sb-search", "")
            page.locator("#sb-list tbody tr").nth(2).click()
            page.wait_for_timeout(300)
            page.locator("#samples").scroll_into_view_if_needed()
            page.evaluate("document.getElementById('samples').scrollIntoView()")
            page.screenshot(path=args.screenshot)
            rows.append(("screenshot", args.screenshot))
        heap = page.evaluate("performance.memory ? performance.memory.usedJSHeapSize : 0")
        rows.append(("JS heap after all this", f"{heap / 1e6:.0f} MB"))
        browser.close()
    rows.append(("console errors", str(len(errors))))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    if not args.out:
        shutil.rmtree(out)
    return 1 if errors else 0


def _ms(start: float) -> str:
    return f"{(time.perf_counter() - start) * 1000:.0f} ms"


def _count(outcomes: list[Outcome], language: str) -> int:
    return sum(o.prompt.language == language for o in outcomes)


if __name__ == "__main__":
    sys.exit(main())
