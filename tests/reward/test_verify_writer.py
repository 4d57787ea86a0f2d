"""Tests for coding prompts written by the pool's writer (``pool.write_tests``): the
reply is read tolerantly, and a whole run on the stub scores code against them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from stub_server import StubServer, stub_config

from arbitrage.commands.cli import main
from reward.verifiers.writer import MAX_TESTS, parse_tests

TASK = "Write a Python function add(a, b) that returns the sum of two numbers."
TESTS = "Here you go:\n```python\nassert add(1, 2) == 3\nassert add(2, 0) == 2\n```"
RIGHT = "```python\ndef add(a, b):\n    return a + b\n```"
WRONG = "```python\ndef add(a, b):\n    return a - b\n```\nThis subtracts, carefully explained."


def test_assert_lines_that_parse_are_the_tests() -> None:
    reply = "```python\nassert f(1) == 2\nassert f(2) ==\nprint('x')\nassert f(1) == 2\n```"
    assert parse_tests(reply) == ["assert f(1) == 2"]
    assert parse_tests("NONE: the task names no function") == []
    many = "\n".join(f"assert f({i}) == {i}" for i in range(10))
    assert len(parse_tests(many)) == MAX_TESTS


def _writer_and_teachers(messages: list[dict[str, Any]]) -> str:
    content = messages[-1]["content"]
    if "[Task]" in content:
        return TESTS
    if content.startswith(TASK):
        return RIGHT
    return TASK  # the writer writing the prompt


def test_the_writers_tests_score_the_code(
    tmp_path: Path, stub_server: StubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUB_KEY", "sk-test")
    stub_server.set_handler("alpha", _writer_and_teachers)
    stub_server.set_handler("beta", lambda m: WRONG)
    config = stub_config(str(tmp_path / "run"), stub_server.url)
    config["pool"] = {
        "n_prompts": 2,
        "languages": ["en"],
        "tasks": ["coding"],
        "writer": "alpha",
        "write_tests": True,
    }
    config["reward"] = {"kind": "code", "params": {"cpu_s": 2, "wall_s": 5}}
    config["reward"]["language"] = {"mode": "off"}
    config["mixture"] = {"min_chars": 1}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path)]) == 0
    run = tmp_path / "run"
    outcomes = [json.loads(line) for line in (run / "outcomes.jsonl").read_text().splitlines()]
    for outcome in outcomes:
        assert outcome["prompt"]["tests"] == ["assert add(1, 2) == 3", "assert add(2, 0) == 2"]
        assert outcome["prompt"]["meta"]["tests_by"] == "alpha"
        rewards = {c["generation"]["teacher"]: c["reward"] for c in outcome["candidates"]}
        assert rewards == {"alpha": 1.0, "beta": 0.5}  # a - b passes add(2, 0) only
        assert outcome["winner"] == "alpha"
    report = json.loads((run / "report.json").read_text())
    assert report["reward_basis"] == {"tests": 2}


def test_write_tests_needs_a_writer_model(
    tmp_path: Path, stub_server: StubServer, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("STUB_KEY", "sk-test")
    config = stub_config(str(tmp_path / "run"), stub_server.url)
    config["pool"]["write_tests"] = True
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "write_tests needs a writer model" in err and "Traceback" not in err
