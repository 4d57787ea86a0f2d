"""target_rows: the run draws prompts in rounds until the mixture holds the rows asked for."""

import json
import re
from pathlib import Path

import pytest
import yaml
from stub_server import stub_config

from arbitrage.commands.cli import main
from arbitrage.config import parse_config
from arbitrage.errors import ConfigError

REFUSAL = "I'm sorry, but I can't help with that."


def answer(messages):
    """About half the prompts get a refusal (dropped by the mixture), the rest an answer."""
    text = messages[-1]["content"]
    if len(text) % 2 == 0:
        return REFUSAL
    return "Here is a careful answer: " + text[:60]


@pytest.fixture
def teachers(stub_server, monkeypatch):
    monkeypatch.setenv("STUB_KEY", "sk-targets-0123456789")
    stub_server.set_handler("alpha", answer)
    stub_server.set_handler("beta", answer)
    stub_server.set_handler("judge", lambda m: "Score: 7")
    return stub_server


def write(tmp_path: Path, url: str, **overrides) -> Path:
    config = stub_config(
        str(tmp_path / "run"),
        url,
        batch_size=4,
        router={"name": "fixed", "params": {"default": "alpha"}},
        mixture={"dedup": {"prompts": False, "answers": False}},
    )
    config["pool"]["n_prompts"] = 6
    config.update(overrides)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_a_total_target_is_met_exactly_over_rounds(tmp_path, teachers, capsys):
    assert main(["run", str(write(tmp_path, teachers.url, target_rows=10))]) == 0
    run = tmp_path / "run"
    mixture = lines(run / "mixture.jsonl")
    assert len(mixture) == 10
    prompts = lines(run / "prompts.jsonl")
    assert len(prompts) > 10  # about half the answers are refusals: more rounds were drawn
    assert max(p["meta"].get("round", 0) for p in prompts) >= 1
    assert len({p["id"] for p in prompts}) == len(prompts)
    assert len(lines(run / "outcomes.jsonl")) == len(prompts)
    err = capsys.readouterr().err
    assert "target_rows: 10 of 10 rows" in err
    assert re.search(r"target_rows: \d of 10 rows from 6 prompts; round 1: \+\d+ prompts", err)
    counts = json.loads((run / "mixture.json").read_text())
    assert counts["rows"] == 10 and counts["dropped"]["refusal"] > 0


def test_a_per_cell_target_draws_that_cell_only(tmp_path, teachers):
    config = write(tmp_path, teachers.url, target_rows={"fr/open_qa": 5})
    assert main(["run", str(config)]) == 0
    run = tmp_path / "run"
    rows = lines(run / "mixture.jsonl")
    assert sum(r["language"] == "fr" and r["task"] == "open_qa" for r in rows) == 5
    later = [p for p in lines(run / "prompts.jsonl") if p["meta"].get("round")]
    assert later and all((p["language"], p["task"]) == ("fr", "open_qa") for p in later)


def test_max_prompts_stops_with_how_far_it_got_and_a_rerun_goes_on(tmp_path, teachers, capsys):
    config = write(tmp_path, teachers.url, target_rows=12, max_prompts=10)
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    run = tmp_path / "run"
    got = len(lines(run / "mixture.jsonl"))  # the outputs hold the rows so far
    assert got < 12
    assert err.startswith(f"arbitrage: error: target_rows: {got} of 12 rows from 10 prompts")
    assert "stopped: max_prompts (10) reached" in err and "Traceback" not in err
    assert len(lines(run / "prompts.jsonl")) == 10
    # the same run, allowed more prompts: it resumes, and no prompt is asked again
    done = {o["prompt"]["id"] for o in lines(run / "outcomes.jsonl")}
    teachers.requests.clear()
    config = write(tmp_path, teachers.url, target_rows=12, max_prompts=200)
    assert main(["run", str(config)]) == 0
    assert len(lines(run / "mixture.jsonl")) == 12
    asked = [r for r in teachers.requests if r["model"] == "alpha"]
    outcomes = lines(run / "outcomes.jsonl")
    assert len(asked) == len(outcomes) - len(done)
    assert len({o["prompt"]["id"] for o in outcomes}) == len(outcomes)


def test_a_prompts_file_that_runs_out_says_so(tmp_path, teachers, capsys):
    rows = [
        {"text": f"Question {i}{'?' * (i % 2)}", "language": "en", "task": "t"} for i in range(8)
    ]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pool = {"prompts": str(prompts), "n_prompts": 4, "languages": ["en"]}
    assert main(["run", str(write(tmp_path, teachers.url, pool=pool, target_rows=6))]) == 2
    err = capsys.readouterr().err
    assert "stopped: the pool has no new prompt to draw" in err
    assert len(lines(tmp_path / "run" / "prompts.jsonl")) == 8


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"target_rows": {"de/open_qa": 5}}, "target_rows key 'de/open_qa' is not"),
        ({"target_rows": {"en": 5}}, "target_rows key 'en' is not"),
        ({"target_rows": 0}, "target_rows must be an integer >= 1"),
        ({"max_prompts": 50}, "max_prompts bounds target_rows"),
        ({"target_rows": 5, "max_prompts": 2}, "max_prompts (2) is below pool.n_prompts"),
    ],
)
def test_bad_targets_are_one_error(overrides, message):
    config = stub_config("out", "http://127.0.0.1:1", **overrides)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_config(config)


def test_a_run_killed_mid_round_resumes_to_the_same_rows(tmp_path, teachers):
    config = write(tmp_path, teachers.url, target_rows=10)
    assert main(["run", str(config)]) == 0
    run = tmp_path / "run"
    before = [r["prompt_id"] for r in lines(run / "mixture.jsonl")]
    outcomes = (run / "outcomes.jsonl").read_text().splitlines(keepends=True)
    assert len(outcomes) > 8
    (run / "outcomes.jsonl").write_text("".join(outcomes[:8]))  # as if killed in round 2
    teachers.requests.clear()
    assert main(["run", str(config)]) == 0
    assert [r["prompt_id"] for r in lines(run / "mixture.jsonl")] == before
    again = [o["prompt"]["id"] for o in lines(run / "outcomes.jsonl")]
    assert again == [json.loads(x)["prompt"]["id"] for x in outcomes]  # the rest, once each
    assert not [r for r in teachers.requests if r["model"] == "alpha"]  # the cache had them


def test_estimate_counts_the_most_prompts_the_rounds_may_draw():
    from arbitrage.commands.estimate import pool_size

    assert pool_size(parse_config(stub_config("out", "http://127.0.0.1:1", target_rows=50))) == 500
    config = stub_config("out", "http://127.0.0.1:1", target_rows=50, max_prompts=120)
    assert pool_size(parse_config(config)) == 120
