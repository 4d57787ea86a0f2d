"""examples/train_reward_model.py learns a run's preference pairs, and its model is an `hf` reward."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from arbitrage.config import MixtureConfig
from arbitrage.outputs.mixture import make_mixture, save_mixture
from arbitrage.records import Candidate, Generation, Outcome, Prompt, pick_winner
from reward import get_reward
from reward.hf import HFRewardModel

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train_reward_model.py"
TEACHERS = ["good", "bad"]
GARBAGE = "abcdefghijklmnopqrstuvwxyz!?#$%&*~ "


def outcomes(n: int, *, teachers: tuple[str, ...] = ("good", "bad")) -> list[Outcome]:
    """``What is a plus b?``: ``good`` states the sum (reward 0.9), ``bad`` repeats a random
    chunk of letters and symbols (0.1). Each chunk differs, so an untrained model has no
    consistent preference; the sentences share a learnable style."""
    rng = random.Random(0)
    rows = []
    for _ in range(n):
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        prompt = Prompt(f"What is {a} plus {b}?", "en", "math")
        junk = "".join(rng.choices(GARBAGE, k=rng.randint(2, 4))) * rng.randint(3, 8)
        answers = {"good": (f"{a} plus {b} is {a + b}.", 0.9), "bad": (junk, 0.1)}
        cands = tuple(
            Candidate(Generation(prompt.id, t, f"openai/{t}", text=answers[t][0]), answers[t][1])
            for t in teachers
        )
        rows.append(Outcome(prompt, cands, pick_winner(cands, TEACHERS), routed_by="all"))
    return rows


def write_run(path: Path, rows: list[Outcome]) -> Path:
    """The run directory's training data, written as ``RunDir.write_outputs`` writes it."""
    save_mixture(make_mixture(rows, MixtureConfig(), teacher_order=TEACHERS), path)
    return path


def run_example(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args], capture_output=True, text=True, timeout=300
    )


def test_learns_heldout_pairs_and_saves_an_hf_reward(tmp_path):
    run_dir = write_run(tmp_path / "run", outcomes(60))
    done = run_example(str(run_dir), "--heldout", "20", "--steps", "30", "--seed", "0")
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((run_dir / "reward_model_eval.json").read_text())
    assert (result["train_pairs"], result["heldout_pairs"]) == (40, 20)
    # Measured (seed 0): 40% before; 100% after 60 steps, and at least 90% after these 30.
    assert result["after"]["accuracy"] >= 0.9
    assert result["after"]["accuracy"] > result["before"]["accuracy"]
    assert result["after"]["mean_margin"] > result["before"]["mean_margin"]
    assert "held-out accuracy" in done.stdout and "kind: hf" in done.stdout

    # `reward: {kind: hf, model: <folder>}` resolves to this: the project's `hf` reward,
    # which scores the held-out pairs exactly as the script measured them.
    reward = get_reward("hf", model=str(run_dir / "reward_model"))
    assert isinstance(reward, HFRewardModel)
    held = [o for o in outcomes(60) if o.prompt.id in result["heldout_prompt_ids"]]
    assert len(held) == 20
    good, bad = (
        [
            s.value
            for s in reward.score_batch([(o.prompt, o.candidates[i].generation.text) for o in held])
        ]
        for i in (0, 1)  # candidates: good, bad
    )
    assert sum(good) / len(good) > sum(bad) / len(bad)
    wins = sum(g > b for g, b in zip(good, bad, strict=True)) / len(good)
    assert wins == result["after"]["accuracy"]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "no such run directory"),
        ("single_answers", "has no preference pairs (single_answer 6): a pair needs two or more"),
        ("one_pair", "too few preference pairs: 1"),
    ],
)
def test_errors_are_one_line(tmp_path, case, message):
    run_dir = tmp_path / "run"
    if case == "single_answers":  # one teacher per prompt, as a `fixed` router gives
        write_run(run_dir, outcomes(6, teachers=("good",)))
    elif case == "one_pair":
        write_run(run_dir, outcomes(1))
    done = run_example(str(run_dir))
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert message in lines[0]
    assert not (run_dir / "reward_model").exists()
