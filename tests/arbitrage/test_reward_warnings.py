"""Issue 13.15: a reward that decides nothing is said so, in the run's output and the report."""

import json
from itertools import count

import pytest
import yaml
from stub_server import stub_config

from arbitrage.commands.cli import main


@pytest.fixture(autouse=True)
def _key(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("STUB_KEY", "sk-warnings")


def run(tmp_path, stub, judge, capsys):  # type: ignore[no-untyped-def]
    stub.set_handler("judge", judge)
    for name in ("alpha", "beta"):
        stub.set_handler(name, lambda m, name=name: f"{name} answers " + m[-1]["content"][:30])
    config = stub_config(str(tmp_path / "run"), stub.url, batch_size=6)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    code = main(["run", str(tmp_path / "c.yaml")])
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    page = (tmp_path / "run" / "report.html").read_text()
    return code, capsys.readouterr().out, report["scoring"]["warnings"], page


def test_a_judge_that_gives_everything_the_top_score_is_flagged(tmp_path, stub_server, capsys):
    code, out, warnings, page = run(tmp_path, stub_server, lambda m: "Score: 10", capsys)
    assert code == 0
    assert len(warnings) == 1 and "the same score (1)" in warnings[0]  # 10/10, on the 0-1 scale
    assert "WARNING: the reward gave 48 of 48 scored answers the same score" in out
    assert "does not tell the answers apart" in page


def test_a_judge_that_mostly_answers_garbage_is_flagged(tmp_path, stub_server, capsys):
    n = count()
    code, out, warnings, _ = run(
        tmp_path,
        stub_server,
        lambda m: f"Score: {next(n) % 9 + 1}" if next(n) % 8 == 0 else "?",
        capsys,
    )
    assert code == 0
    assert any("got no score" in w for w in warnings)
    assert "WARNING:" in out and "complete answers got no score" in out


def test_a_reward_that_tells_answers_apart_gives_no_warning(tmp_path, stub_server, capsys):
    n = count()
    code, out, warnings, _ = run(
        tmp_path, stub_server, lambda m: f"Score: {next(n) % 9 + 1}", capsys
    )
    assert code == 0 and warnings == [] and "WARNING" not in out
