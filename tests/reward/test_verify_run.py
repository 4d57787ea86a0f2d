"""Verifiers in a whole run: prompt rows with ``reference`` / ``tests`` / ``constraints``
(checked on load), stub teachers on loopback, and what each row's reward rested on in
outcomes, the mixture, the preference pairs, the report and the card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from stub_server import StubServer, stub_config

from arbitrage.commands.cli import main
from arbitrage.errors import DataError
from arbitrage.outputs.preference import build_pairs
from arbitrage.prompts.pool import load_prompts
from arbitrage.records import Candidate, Generation, Outcome, Prompt

RIGHT = "6 times 7 is 42. The answer is 42."
# Longer and wrong: what a judge that likes long answers would pick.
WRONG = "Let me think step by step about this multiplication carefully. " * 4 + "Answer: 41"


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def test_prompt_rows_keep_their_verifier_fields(tmp_path: Path) -> None:
    rows = [
        {"text": "6 × 7?", "language": "en", "task": "math", "reference": 42},
        {"text": "add", "language": "en", "tests": ["assert add(1, 2) == 3"]},
        {"text": "tips", "language": "fr", "constraints": [{"kind": "lowercase"}]},
        {"text": "plain", "language": "en"},
    ]
    prompts = load_prompts(_write(tmp_path / "p.jsonl", rows))
    assert prompts[0].reference == "42" and prompts[1].tests == ["assert add(1, 2) == 3"]
    assert prompts[2].constraints == [{"kind": "lowercase"}]
    again = [Prompt.from_dict(json.loads(json.dumps(p.to_dict()))) for p in prompts]
    assert again == prompts  # kept through prompts.jsonl and outcomes.jsonl
    assert set(prompts[3].to_dict()) == {"text", "language", "task", "persona", "id", "meta"}


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"reference": ""}, r"p.jsonl:1: 'reference' is empty"),
        ({"reference": [1]}, r"'reference' must be text or a number"),
        ({"tests": "assert x"}, r"'tests' must be a list"),
        ({"tests": [{"input": "1"}]}, r"tests\[0\]: a test is Python source"),
        ({"constraints": [{"kind": "shout"}]}, r"constraints\[0\]: unknown constraint kind"),
    ],
)
def test_bad_verifier_fields_are_refused_with_file_and_line(
    tmp_path: Path, extra: dict[str, Any], error: str
) -> None:
    row = {"text": "q", "language": "en", **extra}
    with pytest.raises(DataError, match=error):
        load_prompts(_write(tmp_path / "p.jsonl", [row]))


def test_a_bad_reference_stops_the_cli_with_one_line(
    tmp_path: Path, stub_server: StubServer, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("STUB_KEY", "sk-test")
    prompts = _write(tmp_path / "p.jsonl", [{"text": "q", "language": "en", "tests": [3]}])
    config = stub_config(str(tmp_path / "run"), stub_server.url, pool={"prompts": str(prompts)})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "p.jsonl:1: tests[0]" in err and "Traceback" not in err


def _run(tmp_path: Path, server: StubServer, reward: dict[str, Any], rows: list[dict]) -> Path:
    server.set_handler("alpha", lambda m: RIGHT)
    server.set_handler("beta", lambda m: WRONG)
    # the stub judge prefers longer answers, as real judges do
    server.set_handler(
        "judge", lambda m: "Score: 9" if "step by step" in m[-1]["content"] else "Score: 4"
    )
    prompts = _write(tmp_path / "p.jsonl", rows)
    config = stub_config(str(tmp_path / "run"), server.url, pool={"prompts": str(prompts)})
    config["reward"] = {**reward, "language": {"mode": "off"}}
    config["mixture"] = {"min_chars": 1}
    path = tmp_path / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path)]) == 0
    return tmp_path / "run"


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


MATH_ROWS = [
    {"text": f"What is 6 × 7? ({i})", "language": "en", "task": "math", "reference": "42"}
    for i in range(4)
]


def test_the_math_verifier_picks_the_right_answer_the_judge_does_not(
    tmp_path: Path, stub_server: StubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUB_KEY", "sk-test")
    judge = {
        "kind": "judge",
        "model": "openai/judge",
        "api_base": stub_server.url,
        "api_key_env": "STUB_KEY",
    }
    judged = _run(tmp_path / "judge", stub_server, judge, MATH_ROWS)
    assert {r["teacher"] for r in _jsonl(judged / "mixture.jsonl")} == {"beta"}
    assert {r["basis"] for r in _jsonl(judged / "mixture.jsonl")} == {"model"}

    run = _run(tmp_path / "math", stub_server, {"kind": "math"}, MATH_ROWS)
    rows = _jsonl(run / "mixture.jsonl")
    assert {r["teacher"] for r in rows} == {"alpha"} and {r["basis"] for r in rows} == {"reference"}
    pairs = _jsonl(run / "preference.jsonl")
    assert len(pairs) == 4 and {p["basis"] for p in pairs} == {"verified"}
    assert {p["chosen"][0]["content"] for p in pairs} == {RIGHT}
    outcomes = _jsonl(run / "outcomes.jsonl")
    assert {o["prompt"]["reference"] for o in outcomes} == {"42"}
    report = json.loads((run / "report.json").read_text())
    assert report["reward_basis"] == {"reference": 4}
    assert "reward basis of the kept rows: reference 4" in (run / "README.md").read_text()


def test_in_an_ensemble_the_basis_names_both_and_the_verified_pair_wins(
    tmp_path: Path, stub_server: StubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUB_KEY", "sk-test")
    reward = {
        "kind": "ensemble",
        "members": [
            {
                "kind": "judge",
                "model": "openai/judge",
                "api_base": stub_server.url,
                "api_key_env": "STUB_KEY",
            },
            {"kind": "math", "weight": 3.0},
        ],
    }
    run = _run(tmp_path, stub_server, reward, MATH_ROWS)
    rows = _jsonl(run / "mixture.jsonl")
    assert {r["basis"] for r in rows} == {"model+reference"}
    pairs = _jsonl(run / "preference.jsonl")
    assert all(p["basis"] == "verified" and p["chosen"][0]["content"] == RIGHT for p in pairs)


def test_without_a_reference_the_report_says_agreement(
    tmp_path: Path, stub_server: StubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUB_KEY", "sk-test")
    rows = [{"text": f"What is 6 × 7? ({i})", "language": "en", "task": "math"} for i in range(3)]
    run = _run(tmp_path, stub_server, {"kind": "math"}, rows)
    report = json.loads((run / "report.json").read_text())
    assert report["reward_basis"] == {"agreement": 3}
    outcomes = _jsonl(run / "outcomes.jsonl")
    details = [c["reward_details"] for o in outcomes for c in o["candidates"]]
    assert all(d["basis_agreement"] == 1.0 and d["math_voters"] == 2.0 for d in details)


def _cand(teacher: str, reward: float | None, details: dict[str, float]) -> Candidate:
    gen = Generation("p", teacher, teacher, text=f"{teacher} answer", finish_reason="stop")
    return Candidate(gen, reward, details)


def test_a_verified_pair_needs_a_right_and_a_wrong_answer() -> None:
    prompt = Prompt(text="q", language="en", task="math", id="p")
    # the gate left the wrong answer unscored: it is still the rejected one
    right = _cand("a", 0.9, {"math.verified": 1.0, "judge": 0.2})
    wrong = _cand("b", None, {"math.verified": 0.0, "judge": 0.9})
    pairs, _ = build_pairs([Outcome(prompt, (right, wrong), "a")], {}, min_margin=0.5)
    assert pairs[0]["basis"] == "verified" and pairs[0]["rejected_teacher"] == "b"
    assert pairs[0]["rejected_reward"] is None and pairs[0]["margin"] is None
    both_right = (right, _cand("b", 0.1, {"math.verified": 1.0}))
    pairs, _ = build_pairs([Outcome(prompt, both_right, "a")], {}, min_margin=0.5)
    assert pairs[0]["basis"] == "model"  # both right: the reward's pair, as without a verifier


def test_a_verifier_gate_stops_the_wrong_answer_the_judge_prefers(
    tmp_path: Path, stub_server: StubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUB_KEY", "sk-test")
    judge = {
        "kind": "judge",
        "model": "openai/judge",
        "api_base": stub_server.url,
        "api_key_env": "STUB_KEY",
        "verify": {"kind": "math"},
    }
    rows = [*MATH_ROWS, {"text": "Say hi", "language": "en", "task": "chat"}]
    run = _run(tmp_path, stub_server, judge, rows)
    outcomes = {o["prompt"]["text"]: o for o in _jsonl(run / "outcomes.jsonl")}
    for row in MATH_ROWS:
        by = {c["generation"]["teacher"]: c for c in outcomes[row["text"]]["candidates"]}
        assert outcomes[row["text"]]["winner"] == "alpha"
        assert by["beta"]["reward"] is None and by["beta"]["reward_details"]["verifier_gated"] == 1
        assert by["alpha"]["reward"] == pytest.approx(3 / 9)  # the judge's score stands
    # a prompt without a reference is not checked: the judge decides
    assert outcomes["Say hi"]["winner"] == "beta"
    report = json.loads((run / "report.json").read_text())
    assert report["reward_basis"] == {"model+reference": 4, "model": 1}
    assert report["scoring"]["verifier_gated"] == 4 and not report["scoring"]["warnings"]
    assert (
        "Reward basis (prompts): model+reference 4, model 1." in (run / "report.html").read_text()
    )
    pairs = _jsonl(run / "preference.jsonl")
    assert sum(p["basis"] == "verified" for p in pairs) == 4


@pytest.mark.parametrize(
    ("verify", "error"),
    [
        ({"kind": "maths"}, "verify.kind"),
        ({"kind": "math", "threshold": 2}, "verify.threshold"),
        ({"kind": "math", "params": {"agreemnt": True}}, "unknown param 'agreemnt'"),
    ],
)
def test_a_bad_verify_section_is_one_line(
    tmp_path: Path,
    stub_server: StubServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
    verify: dict[str, Any],
    error: str,
) -> None:
    monkeypatch.setenv("STUB_KEY", "sk-test")
    config = stub_config(str(tmp_path / "run"), stub_server.url)
    config["reward"]["verify"] = verify
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert error in err and "Traceback" not in err
