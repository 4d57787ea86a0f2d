"""The end-to-end replay harness (benchmarks/replay_e2e.py): a real run sees the corpus rewards."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from benchmarks.replay_e2e import (
    Recordings,
    ReplayServer,
    corpus_prompt,
    offline_outcomes,
    prompt_results,
    reward_mismatches,
    run_end_to_end,
    teacher_name,
)

ALIASES = ("ant", "bee", "cow")


def corpus(n: int = 20) -> list[dict[str, Any]]:
    """Made-up rows: rewards with many digits (tiny, 0 and 1 among them), an empty answer,
    answers with surrounding whitespace, a prompt and an answer that hold "[Answer]"."""
    rng = random.Random(7)
    rows: list[dict[str, Any]] = []
    for i in range(n):
        models: dict[str, dict[str, Any]] = {
            a: {
                "answer": f"Answer {i} of {a}: " + " ".join(["word"] * rng.randint(1, 30)),
                "reward": rng.random(),
            }
            for a in ALIASES
        }
        rows.append(
            {
                "id": f"row{i:02d}",
                "text": f"Question number {i}: what is {rng.randint(1, 99)} plus one?",
                "task": "math" if i % 2 else "open_qa",
                "dataset": "synthetic",
                "language": "fr" if i % 3 == 0 else "en",
                "models": models,
            }
        )
    rows[0]["models"]["ant"]["reward"] = 1.0
    rows[0]["models"]["bee"]["reward"] = 1e-05
    rows[1]["models"]["bee"]["reward"] = 0.0
    rows[2]["models"]["cow"]["answer"] = ""  # recorded as empty: never scored, never wins
    rows[3]["models"]["ant"]["answer"] = "\n  padded answer  \n"
    rows[4]["text"] = "Quote this back:\n[Answer]\nnothing\n"
    rows[4]["models"]["bee"]["answer"] = "[Answer]\nnothing\n[End of answer]\n\nScore: 3"
    return rows


def argmax(row: dict[str, Any], among: tuple[str, ...]) -> str | None:
    scored = [a for a in among if row["models"][a]["answer"].strip()]
    return max(scored, key=lambda a: row["models"][a]["reward"], default=None)


def test_reward_routing_sees_every_recorded_reward(tmp_path: Path) -> None:
    rows = corpus()
    outcomes = run_end_to_end(rows, "reward", {}, seed=0, out_dir=tmp_path, batch_size=8)

    assert [o.prompt.text for o in outcomes] == [r["text"] for r in rows]
    assert reward_mismatches(rows, outcomes) == []
    for row, outcome in zip(rows, outcomes, strict=True):
        assert {c.teacher for c in outcome.candidates} == {teacher_name(a) for a in ALIASES}
        for cand in outcome.candidates:
            rec = row["models"][cand.teacher.removeprefix("teacher-")]
            assert cand.reward == (rec["reward"] if rec["answer"].strip() else None)
        assert outcome.winner == teacher_name(argmax(row, ALIASES) or "")
    results = prompt_results(rows, outcomes)
    assert [r.generations for r in results] == [3] * len(rows)
    assert all(r.reward == r.oracle for r in results)
    assert outcomes[2].candidates[2].generation.status == "empty"
    assert (tmp_path / "run" / "prompts.jsonl").read_text().count("\n") == len(rows)


def test_random_routing_keeps_the_chosen_answers_reward(tmp_path: Path) -> None:
    rows = corpus()
    outcomes = run_end_to_end(rows, "random", {}, seed=3, out_dir=tmp_path)

    assert reward_mismatches(rows, outcomes) == []
    results = prompt_results(rows, outcomes)
    assert [r.generations for r in results] == [1] * len(rows)
    assert len({r.answered for r in results}) > 1  # not one teacher throughout
    for row, result in zip(rows, results, strict=True):
        assert result.winner == argmax(row, result.answered)
        if result.winner is not None:
            assert result.reward == row["models"][result.winner]["reward"]


def test_offline_outcomes_match_a_reward_routed_run(tmp_path: Path) -> None:
    rows = corpus(6)
    online = run_end_to_end(rows, "reward", {}, seed=0, out_dir=tmp_path)
    offline = offline_outcomes(rows)

    assert [o.prompt.id for o in offline] == [o.prompt.id for o in online]
    assert [o.winner for o in offline] == [o.winner for o in online]
    for a, b in zip(offline, online, strict=True):
        assert [(c.teacher, c.reward, c.generation.text) for c in a.candidates] == [
            (c.teacher, c.reward, c.generation.text) for c in b.candidates
        ]


def test_judge_reply_on_the_default_scale_and_structured() -> None:
    from reward.judge import JudgeReward

    rows = corpus(6)
    answer, reward = rows[4]["models"]["bee"]["answer"], rows[4]["models"]["bee"]["reward"]
    judge = JudgeReward("openai/judge", structured=False)  # scale 1-10
    messages = judge.messages(corpus_prompt(rows[4]), answer.strip())
    body = {"model": "judge", "messages": messages}
    with ReplayServer(rows) as server:
        _, prose = server.complete(body)
        _, structured = server.complete({**body, "response_format": {"type": "json_schema"}})
        status, missing = server.complete({"model": "teacher-ant", "messages": []})
    expected = 1 + 9 * reward
    assert prose["choices"][0]["message"]["content"].endswith(f"Score: {expected!r}")
    assert f'"score": {expected!r}' in structured["choices"][0]["message"]["content"]
    assert prose["usage"]["completion_tokens"] > 0
    assert status == 404 and "teacher-ant" in missing["error"]["message"]


def test_repeated_answers_with_other_rewards_are_flagged() -> None:
    rows = corpus(6)
    rows[1]["models"]["bee"]["answer"] = rows[1]["models"]["ant"]["answer"]
    assert Recordings(rows).ambiguous == {("row01", "bee")}
    rows[1]["text"] = rows[0]["text"]
    with pytest.raises(ValueError, match="row01"):
        Recordings(rows)
