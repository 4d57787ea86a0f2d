"""How often the chosen answer is correct: a judge that likes long answers, the ``math``
verifier, and both in an ensemble.

Two sets:

- ``synthetic``: arithmetic and word problems this script builds (seeded), each with a
  reference answer and three simulated teachers whose answers differ in correctness
  and length: ``terse`` (short, right 75%), ``steady`` (medium, right 60%) and
  ``verbose`` (long, right 45%), in English and four other languages;
- ``routerarena``: the RouterArena corpus (``--corpus``, 0/1 automatic correctness and
  a reference per row; not in the repository): its rows with a short reference
  (multiple choice, exact match, math, chess, SuperGLUE), two recorded models each.

The judge is ``reward.judge.JudgeReward`` over litellm against a loopback server whose
judge scores an answer by its length (``benchmarks/loopback.py``, model
``length_judge``); ``math`` compares the final answer with the reference
(``reward.verifiers.math``); the ensembles are ``reward.ensemble`` with both (z-scored,
weights judge:math 1:1 and 1:3); the gate is ``reward.verifiers.gate`` (``reward.verify``:
the judge's score, answers the verifier finds wrong unscored). "correct" is the share of
prompts whose chosen answer is right; ties go to the first teacher, and a prompt whose
answers are all unscored counts its first teacher's answer.

    python benchmarks/verifiers.py --corpus ../shared/realdata/routerarena2.jsonl.gz
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loopback import loopback_server

from arbitrage.records import Prompt
from reward.base import RewardModel
from reward.ensemble import ensemble
from reward.judge import JudgeReward
from reward.verifiers.gate import VerifierGate
from reward.verifiers.math import MathVerifier

#: Final-answer phrasings by language (the verifier must read each).
LABELS = {
    "en": "The answer is {}.",
    "es": "La respuesta es {}.",
    "fr": "Réponse : {}",
    "ru": "Ответ: {}",
    "zh": "答案是 {}。",
}
FILLER = {
    "en": "We work through the problem carefully, one step at a time. ",
    "es": "Resolvemos el problema con cuidado, paso a paso. ",
    "fr": "Nous résolvons le problème avec soin, étape par étape. ",
    "ru": "Решаем задачу внимательно, шаг за шагом. ",
    "zh": "我们一步一步仔细地解这道题。",
}
#: teacher → (probability of a right answer, filler sentences)
TEACHERS = {"terse": (0.75, 0), "steady": (0.60, 3), "verbose": (0.45, 9)}


@dataclass
class Item:
    prompt: Prompt
    answers: list[str]  # one per teacher
    correct: list[bool]


def synthetic(n: int, seed: int) -> list[Item]:
    """Problems with known answers and three teachers' answers to each."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        lang = list(LABELS)[i % len(LABELS)]
        a, b, c = rng.randint(2, 60), rng.randint(2, 30), rng.randint(1, 99)
        if i % 2:
            text, value = f"What is {a} × {b} + {c}?", a * b + c
        else:
            text = (
                f"A shop packs {b} boxes of {a} pencils and sells {c} pencils. How many are left?"
            )
            value = a * b - c
        prompt = Prompt(text=f"{text} ({i})", language=lang, task="math", reference=str(value))
        answers, correct = [], []
        for right_p, filler in TEACHERS.values():
            right = rng.random() < right_p
            got = value if right else value + rng.choice([-10, -2, -1, 1, 3, 12])
            shown = f"\\boxed{{{got}}}" if rng.random() < 0.3 else str(got)
            steps = FILLER[lang] * (filler + rng.randint(0, 2))
            answers.append(f"{steps}{a} × {b} = {a * b}. " + LABELS[lang].format(shown))
            correct.append(right)
        items.append(Item(prompt, answers, correct))
    return items


#: RouterArena metrics whose reference is a short final answer, scored 0/1.
SHORT_REFERENCE = {"mcq_accuracy", "exact_match", "math_metric", "chess_accuracy",
                   "superglue_exact_match", "superglue_clozetest"}  # fmt: skip


def routerarena(path: Path) -> list[Item]:
    items = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if row.get("metric") not in SHORT_REFERENCE or not str(row.get("reference", "")):
                continue
            prompt = Prompt(
                text=row["text"], language=row["language"], task=row["task"],
                id=row["id"], reference=str(row["reference"]),
            )  # fmt: skip
            models = list(row["models"].values())
            items.append(
                Item(prompt, [m["answer"] for m in models], [m["reward"] >= 0.5 for m in models])
            )
    return items


async def correct_share(reward: RewardModel, items: Sequence[Item]) -> float:
    pairs = [(item.prompt, answer) for item in items for answer in item.answers]
    scores = iter(await reward.ascore_batch(pairs))
    right = 0
    for item in items:
        values = [next(scores).value for _ in item.answers]
        ranked = [v if v is not None else float("-inf") for v in values]
        right += item.correct[ranked.index(max(ranked))]
    return right / len(items)


def rewards(url: str) -> dict[str, RewardModel]:
    def judge() -> JudgeReward:
        return JudgeReward(
            "openai/length_judge", api_base=url, api_key_env="BENCH_KEY", structured=False
        )

    return {
        "judge (likes length)": judge(),
        "math": MathVerifier(),
        "judge + math 1:1": ensemble([("judge", judge(), 1.0), ("math", MathVerifier(), 1.0)]),
        "judge + math 1:3": ensemble([("judge", judge(), 1.0), ("math", MathVerifier(), 3.0)]),
        "judge, math gate": VerifierGate(judge(), MathVerifier()),
    }


async def table(sets: dict[str, list[Item]], url: str) -> list[list[str]]:
    rows = []
    for name, items in sets.items():
        oracle = sum(any(i.correct) for i in items) / len(items)
        first = sum(i.correct[0] for i in items) / len(items)
        cells = [name, str(len(items)), f"{first:.3f}", f"{oracle:.3f}"]
        for reward in rewards(url).values():
            cells.append(f"{await correct_share(reward, items):.3f}")
        rows.append(cells)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, help="routerarena2.jsonl.gz (skipped if absent)")
    parser.add_argument("--n", type=int, default=300, help="synthetic problems")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("BENCH_KEY", "sk-bench")
    sets = {"synthetic": synthetic(args.n, args.seed)}
    if args.corpus and args.corpus.is_file():
        sets["routerarena"] = routerarena(args.corpus)
    else:
        print(f"routerarena: skipped (no corpus at {args.corpus})")
    with loopback_server(latency_ms=0) as url:
        rows = asyncio.run(table(sets, url))
    header = ["set", "prompts", "first teacher", "oracle", *rewards("http://x/v1")]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
