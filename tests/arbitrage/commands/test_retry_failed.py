"""``arbitrage retry-failed``: only the failed calls are asked again, and nothing in the
run directory changes until every check has passed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from stub_server import Reply, StubServer, stub_config

from arbitrage.commands.cli import main

SECRET = "sk-retry-secret-0123456789"


@pytest.fixture
def stub(stub_server: StubServer, monkeypatch: pytest.MonkeyPatch) -> StubServer:
    monkeypatch.setenv("STUB_KEY", SECRET)
    stub_server.set_handler("judge", lambda m: "Fine.\nScore: 7")
    return stub_server


def failed_run(tmp_path: Path, stub: StubServer) -> Path:
    """A finished run (both teachers asked for every prompt) in which beta's every call failed."""
    stub.set_handler("beta", lambda m: Reply("boom", status=500))
    config = stub_config(
        str(tmp_path / "run"), stub.url, batch_size=6, breaker={"failures": 1000, "cooldown_s": 1}
    )
    for t in config["teachers"]:
        t["retries"] = 0
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path)]) == 0
    assert report(tmp_path)["teachers"]["beta"]["failed"] == 24
    return tmp_path / "run"


def report(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "run" / "report.json").read_text())


def teacher_requests(stub: StubServer, name: str) -> list[dict]:
    return [r for r in stub.requests if r["model"] == name]


def test_retry_failed_re_requests_only_failed_calls(tmp_path, stub, capsys):
    run = failed_run(tmp_path, stub)
    stub.reset()
    stub.set_handler("judge", lambda m: "Score: 9" if "beta" in m[-1]["content"] else "Score: 5")
    assert main(["retry-failed", str(run)]) == 0
    assert "retried 24 prompts; 0 still have a failed call" in capsys.readouterr().out
    assert teacher_requests(stub, "alpha") == []
    assert len(teacher_requests(stub, "beta")) == 24
    rows = [json.loads(x) for x in (run / "mixture.jsonl").read_text().splitlines()]
    assert len(rows) == 24 and {r["teacher"] for r in rows} == {"beta"}
    assert len((run / "outcomes.jsonl").read_text().splitlines()) == 24
    assert main(["retry-failed", str(run)]) == 0
    assert "no failed calls" in capsys.readouterr().out


def test_a_failed_check_leaves_the_run_as_it_was(tmp_path, stub, monkeypatch, capsys):
    """Issue 13 item 14: the key variable is checked before any outcome is dropped, so
    ``report`` still counts every prompt and a later retry still finds what failed."""
    run = failed_run(tmp_path, stub)
    before = (run / "outcomes.jsonl").read_bytes()
    stub.reset()
    capsys.readouterr()
    monkeypatch.delenv("STUB_KEY")
    assert main(["retry-failed", str(run)]) == 2
    err = capsys.readouterr().err
    assert err == "arbitrage: error: teacher 'alpha': environment variable STUB_KEY is not set\n"
    assert (run / "outcomes.jsonl").read_bytes() == before
    assert stub.requests == []
    assert main(["report", str(run)]) == 0
    assert report(tmp_path)["prompts"] == 24

    monkeypatch.setenv("STUB_KEY", SECRET)
    stub.set_handler("beta", lambda m: "BETA answers")
    assert main(["retry-failed", str(run)]) == 0
    assert "retried 24 prompts; 0 still have a failed call" in capsys.readouterr().out


def test_a_bad_reward_param_is_caught_before_anything_changes(tmp_path, stub, capsys):
    run = failed_run(tmp_path, stub)
    before = (run / "outcomes.jsonl").read_bytes()
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["reward"]["params"] = {"scael": [0, 5]}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    capsys.readouterr()
    assert main(["retry-failed", str(run)]) == 2
    assert "unknown param 'scael' for reward 'judge' (did you mean 'scale'?)" in (
        capsys.readouterr().err
    )
    assert (run / "outcomes.jsonl").read_bytes() == before


def test_a_folder_that_is_not_a_run_is_one_line_and_is_not_created(tmp_path, capsys):
    target = tmp_path / "nothing"
    assert main(["retry-failed", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a run directory" in err
    assert not target.exists()  # the lock would have created it
