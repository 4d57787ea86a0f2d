"""A run's final outcomes read from disk: the last row written for each prompt, in pool
order, whatever order the rows were written in."""

from __future__ import annotations

from pathlib import Path

import pytest
from stub_server import stub_config

from arbitrage.config import parse_config
from arbitrage.errors import DataError
from arbitrage.outputs.mixture import make_mixture
from arbitrage.records import Candidate, Generation, Outcome, Prompt, dumps
from arbitrage.rundir import RunDir


def outcome(prompt: Prompt, reward: float = 0.5) -> Outcome:
    cand = Candidate(Generation(prompt.id, "a", "openai/a", f"{prompt.text} done", "stop"), reward)
    return Outcome(prompt, (cand,), "a")


POOL = [Prompt(f"prompt {i}", "en", "math") for i in range(6)]


@pytest.fixture
def run_dir(tmp_path: Path) -> RunDir:
    run = RunDir(tmp_path / "run")
    run.prepare(parse_config(stub_config(str(run.path), "http://127.0.0.1:9")))
    run.save_prompts(POOL)
    return run


def by_id(run: RunDir) -> list[Outcome]:
    """What ``arbitrage run`` used to hold: every outcome, the last for an id, pool order."""
    last = {o.prompt.id: o for o in run.iter_outcomes()}
    return [last[p.id] for p in POOL if p.id in last]


def test_rows_in_pool_order_are_read_as_written(run_dir: RunDir) -> None:
    run_dir.append_outcomes([outcome(p) for p in POOL[:2] + POOL[3:]])
    final = run_dir.final_outcomes()
    assert len(final) == 5 and list(final) == by_id(run_dir)
    assert list(final) == list(final)  # each pass reads the file again
    assert final[2] == outcome(POOL[3]) and final[-1] == outcome(POOL[5])
    assert final[1:3] == [outcome(POOL[1]), outcome(POOL[3])]


def test_rows_out_of_order_or_again_give_the_last_row_of_each_prompt_in_pool_order(
    run_dir: RunDir,
) -> None:
    stranger = Prompt("not in the pool", "en", "math")
    run_dir.append_outcomes([outcome(p) for p in reversed(POOL[:4])])
    run_dir.append_outcomes([outcome(POOL[1], 0.9), outcome(stranger)])  # retry-failed's
    final = run_dir.final_outcomes()
    assert list(final) == by_id(run_dir)
    assert [o.prompt for o in final] == POOL[:4]
    assert final[1].candidates[0].reward == 0.9


def test_a_prompt_twice_in_the_pool_gets_its_outcome_twice(run_dir: RunDir) -> None:
    pool = [*POOL, POOL[0]]
    run_dir.save_prompts(pool)
    run_dir.append_outcomes([outcome(p) for p in POOL])
    assert list(run_dir.final_outcomes()) == [outcome(p) for p in pool]


def test_a_torn_last_row_is_left_out_and_a_bad_row_is_one_error(run_dir: RunDir) -> None:
    run_dir.append_outcomes([outcome(p) for p in POOL[:3]])
    with run_dir.outcomes_path.open("ab") as fh:
        fh.write(dumps(outcome(POOL[3])).encode()[:-5])
    assert list(run_dir.final_outcomes()) == [outcome(p) for p in POOL[:3]]
    run_dir.outcomes_path.write_text(f'{{"prompt": {{"id": "{POOL[0].id}"}}}}\n')
    with pytest.raises(DataError, match=r"outcomes\.jsonl: corrupt outcome row at byte 0"):
        list(run_dir.final_outcomes())
    run_dir.outcomes_path.write_text("not json\n" + dumps(outcome(POOL[0])) + "\n")
    with pytest.raises(DataError, match=r"outcomes\.jsonl:1: corrupt outcome row"):
        run_dir.final_outcomes()


def test_the_mixture_of_the_file_is_the_mixture_of_the_outcomes_held(run_dir: RunDir) -> None:
    run_dir.append_outcomes([outcome(p, 0.1 * i) for i, p in enumerate(reversed(POOL))])
    held, final = make_mixture(by_id(run_dir)), make_mixture(run_dir.final_outcomes())
    assert list(final.rows) == list(held.rows) and len(final.rows) == 6
    assert final.counts() == held.counts() and final.dropped == held.dropped
