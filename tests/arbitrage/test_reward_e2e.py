"""The reward's guards in a whole run: stub teachers and judge on loopback, real lingua."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from stub_server import StubServer, stub_config

from arbitrage.commands.cli import main

FRENCH = (
    "L'eau bout à cent degrés Celsius au niveau de la mer, et à une température plus "
    "basse en montagne parce que la pression de l'air y est plus faible."
)
ENGLISH = (
    "Water boils at one hundred degrees Celsius at sea level, and at a lower "
    "temperature in the mountains because the air pressure is lower there."
)


def _judge(messages: list[dict[str, Any]]) -> str:
    # A judge taken in by fluent English: it scores it above French whatever was asked.
    answer = messages[-1]["content"].split("[Answer]")[1]
    return "Score: 9" if "Water boils" in answer else "Score: 5"


def _run(tmp_path: Any, server: StubServer, language: dict[str, Any], capsys: Any) -> dict:
    server.set_handler("alpha", lambda m: FRENCH)
    server.set_handler("beta", lambda m: ENGLISH)
    server.set_handler("judge", _judge)
    config = stub_config(
        str(tmp_path / "run"),
        server.url,
        pool={"n_prompts": 8, "languages": ["en", "fr"], "tasks": ["open_qa"]},
    )
    config["reward"]["language"] = language
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path)]) == 0
    return json.loads((tmp_path / "run" / "report.json").read_text())


def test_the_gate_gives_each_language_to_the_teacher_that_writes_it(
    tmp_path: Any, stub_server: StubServer, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("STUB_KEY", "sk-test")
    report = _run(tmp_path, stub_server, {"mode": "gate"}, capsys)
    assert report["wins_by_language"] == {"en": {"beta": 4}, "fr": {"alpha": 4}}
    assert report["scoring"]["language_gated"] == 8
    assert report["scoring"]["language_gated_by_language"] == {"en": 4, "fr": 4}
    out = capsys.readouterr().out
    assert re.search(r"reward: 8 answers in the wrong language were gated \(en 4, fr 4\)", out)
    # Gated answers keep their fidelity and the score they would have had.
    outcomes = [
        json.loads(x) for x in (tmp_path / "run" / "outcomes.jsonl").read_text().splitlines()
    ]
    gated = [c for o in outcomes for c in o["candidates"] if c["reward"] is None]
    assert len(gated) == 8
    assert all(c["reward_details"]["language_fidelity"] < 0.5 for c in gated)
    assert {c["reward_details"]["before_gate"] for c in gated} == {0.0 + (5 - 1) / 9, (9 - 1) / 9}


def test_without_the_gate_the_fluent_wrong_language_wins(
    tmp_path: Any, stub_server: StubServer, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("STUB_KEY", "sk-test")
    report = _run(tmp_path, stub_server, {"mode": "off"}, capsys)
    assert report["wins_by_language"] == {"en": {"beta": 4}, "fr": {"beta": 4}}
    assert report["scoring"]["language_gated"] == 0
