"""eval-reward on a reward-routed run: teachers, the run's judge and the second scorer are
served by the stub server on 127.0.0.1."""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from stub_server import StubServer, stub_config

from arbitrage.commands.cli import main
from arbitrage.commands.reward_eval import spearman, wilson

SECRET = "sk-eval-SECRET-0123456789"
ANSWERS = {
    "fr": "Voici une réponse claire et complète, rédigée entièrement en français pour vous.",
    "en": "Here is a clear and complete answer, written entirely in English for you.",
}


def teacher(name: str) -> Any:
    def answer(messages: list[dict[str, Any]]) -> str:
        lang = "fr" if "en français." in messages[-1]["content"] else "en"
        return f"{name}: {ANSWERS[lang]}"

    return answer


def run_judge(messages: list[dict[str, Any]]) -> str:
    """The run's reward (A): ALPHA is better in French, BETA in English."""
    text = messages[-1]["content"]
    lang = re.search(r"The user's language: (\w+)", text).group(1)  # type: ignore[union-attr]
    good = "ALPHA" if lang == "fr" else "BETA"
    return "Score: 9" if good in text.split("[Answer]")[1] else "Score: 4"


def prefers_alpha(messages: list[dict[str, Any]]) -> str:
    """Scorer B, pairwise: ALPHA always wins, whichever order it is shown in."""
    text = messages[-1]["content"]
    first = text.split("[Answer A]", 1)[1].split("[End of answer A]", 1)[0]
    return "Verdict: A" if "ALPHA" in first else "Verdict: B"


@pytest.fixture(scope="module")
def built_run(
    tmp_path_factory: pytest.TempPathFactory, _stub_server_session: StubServer
) -> Iterator[Path]:
    server = _stub_server_session
    server.reset()
    server.set_handler("alpha", teacher("ALPHA"))
    server.set_handler("beta", teacher("BETA"))
    server.set_handler("judge", run_judge)
    root = tmp_path_factory.mktemp("reward_eval")
    pool = {"n_prompts": 12, "languages": ["en", "fr"], "tasks": ["open_qa", "math"]}
    config = stub_config(str(root / "run"), server.url, pool=pool, router={"name": "reward"})
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STUB_KEY", SECRET)
        assert main(["run", str(root / "config.yaml")]) == 0
    server.reset()
    yield root / "run"


@pytest.fixture
def run(
    built_run: Path, tmp_path: Path, stub_server: StubServer, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A fresh copy of the scored run (its cache holds the run's calls only)."""
    monkeypatch.setenv("STUB_KEY", SECRET)
    copy = tmp_path / "run"
    shutil.copytree(built_run, copy)
    return copy


def pairwise_args(run: Path, url: str, *extra: str) -> list[str]:
    return [
        "eval-reward",
        str(run),
        "--kind",
        "pairwise",
        "--model",
        "openai/pj",
        "--api-base",
        url,
        "--api-key-env",
        "STUB_KEY",
        *extra,
    ]


def prompts_per_language(run: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in (run / "outcomes.jsonl").read_text().splitlines():
        outcome = json.loads(line)
        scored = [c for c in outcome["candidates"] if c["reward"] is not None]
        if len(scored) >= 2:
            lang = outcome["prompt"]["language"]
            counts[lang] = counts.get(lang, 0) + 1
    return counts


def test_pairwise_agreement_per_language(
    run: Path, stub_server: StubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    stub_server.set_handler("pj", prefers_alpha)
    expected = prompts_per_language(run)
    assert set(expected) == {"en", "fr"}
    assert main(pairwise_args(run, stub_server.url)) == 0

    result = json.loads((run / "reward_agreement.json").read_text())
    rows = {r["language"]: r for r in result["languages"]}
    fr, en = rows["fr"], rows["en"]
    n_fr, n_en = expected["fr"], expected["en"]
    # two teachers: one pair per prompt; B agrees with A in French, never in English
    assert (fr["prompts"], fr["pairs"], fr["compared"], fr["agree"]) == (n_fr, n_fr, n_fr, n_fr)
    assert (en["prompts"], en["pairs"], en["compared"], en["agree"]) == (n_en, n_en, n_en, 0)
    assert fr["agreement"] == 1.0 and en["agreement"] == 0.0
    assert fr["ci95"] == pytest.approx([n_fr / (n_fr + 1.959963984540054**2), 1.0])
    assert en["ci95"][0] == 0.0 and en["ci95"][1] < 0.5
    assert fr["position_flip_rate"] == 0.0 and fr["ties_a"] == fr["ties_b"] == 0
    assert not fr["unreliable"] and en["unreliable"]
    assert result["unreliable"] == ["en"]
    assert result["overall"]["agreement"] == pytest.approx(n_fr / (n_fr + n_en))
    assert result["mode"] == "pairwise" and result["scorer_a"] == "judge(openai/judge)"

    png = run / "figures" / "reward_agreement.png"
    assert png.stat().st_size > 10_000
    out = capsys.readouterr().out
    assert "Reward agreement" in out and "unreliable: en" in out

    requests = [r for r in stub_server.requests if r["model"] == "pj"]
    assert len(requests) == len(stub_server.requests) == 2 * (n_fr + n_en)  # both orders

    for path in run.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path

    stub_server.requests.clear()
    assert main(pairwise_args(run, stub_server.url)) == 0
    assert stub_server.requests == []  # every verdict came from the run's cache
    assert json.loads((run / "reward_agreement.json").read_text()) == result


def test_position_biased_scorer_is_no_evidence(run: Path, stub_server: StubServer) -> None:
    stub_server.set_handler("pj", lambda messages: "Verdict: A")
    assert main(pairwise_args(run, stub_server.url)) == 0
    result = json.loads((run / "reward_agreement.json").read_text())
    for row in result["languages"]:
        assert row["agreement"] is None and row["compared"] == 0
        assert row["ties_b"] == row["pairs"] and row["position_flip_rate"] == 1.0
        assert not row["unreliable"]


def test_pointwise_scorer_reports_spearman(
    run: Path, stub_server: StubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    stub_server.set_handler(
        "judge2",
        lambda m: "Score: 8" if "ALPHA" in m[-1]["content"].split("[Answer]")[1] else "Score: 2",
    )
    args = [
        "eval-reward",
        str(run),
        "--kind",
        "judge",
        "--model",
        "openai/judge2",
        "--api-base",
        stub_server.url,
        "--api-key-env",
        "STUB_KEY",
        "--param",
        "max_concurrency=4",
        "--param",
        "rubric=Be strict.",
        "--min-agreement",
        "0.9",
    ]
    assert main(args) == 0
    result = json.loads((run / "reward_agreement.json").read_text())
    rows = {r["language"]: r for r in result["languages"]}
    assert rows["fr"]["agreement"] == 1.0 and rows["fr"]["spearman"] == pytest.approx(1.0)
    assert rows["en"]["agreement"] == 0.0 and rows["en"]["spearman"] == pytest.approx(-1.0)
    assert result["mode"] == "pointwise" and result["unreliable"] == ["en"]
    assert result["min_agreement"] == 0.9
    answers = sum(2 * n for n in prompts_per_language(run).values())
    assert len(stub_server.requests) == answers  # one call per answer
    assert all(r["messages"][-1]["content"].startswith("Be strict.") for r in stub_server.requests)
    assert "Spearman" in capsys.readouterr().out


def test_max_prompts_samples_deterministically(
    run: Path, stub_server: StubServer, tmp_path: Path
) -> None:
    stub_server.set_handler("pj", prefers_alpha)
    other = tmp_path / "other"
    shutil.copytree(run, other)
    results = []
    for target in (run, other):
        assert (
            main(pairwise_args(target, stub_server.url, "--max-prompts", "5", "--seed", "3")) == 0
        )
        results.append(json.loads((target / "reward_agreement.json").read_text()))
    assert results[0]["overall"]["prompts"] == 5
    assert [r["prompts"] for r in results[0]["languages"]] == [
        r["prompts"] for r in results[1]["languages"]
    ]
    assert len(stub_server.requests) == 2 * 5 * 2  # both copies, 5 pairs, both orders


def test_single_answer_run_is_one_error_line(
    run: Path, stub_server: StubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = (run / "outcomes.jsonl").read_text().splitlines()
    single = []
    for line in lines:
        outcome = json.loads(line)
        outcome["candidates"] = outcome["candidates"][:1]
        single.append(json.dumps(outcome))
    (run / "outcomes.jsonl").write_text("\n".join(single) + "\n")
    assert main(pairwise_args(run, stub_server.url)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("arbitrage: error:") and "\n" not in err
    assert "no prompt has two or more scored answers" in err
    assert stub_server.requests == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--param", "oops"], "--param expects KEY=VALUE"),
        (["--param", "max_concurency=2"], "did you mean 'max_concurrency'"),
        (["--max-prompts", "0"], "--max-prompts must be at least 1"),
        (["--min-agreement", "1.5"], "--min-agreement must lie in [0, 1]"),
    ],
)
def test_bad_flags_are_one_error_line(
    run: Path,
    stub_server: StubServer,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    assert main(pairwise_args(run, stub_server.url, *args)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("arbitrage: error:") and message in err and "\n" not in err


def test_missing_run_dir_or_model_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUB_KEY", SECRET)
    missing = ["eval-reward", str(tmp_path / "nope"), "--kind", "pairwise", "--model", "openai/pj"]
    assert main(missing) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("arbitrage: error:") and "not a run directory" in err and "\n" not in err
    assert main(["eval-reward", str(tmp_path), "--kind", "pairwise"]) == 2
    err = capsys.readouterr().err.strip()
    assert "'model'" in err and "--model" in err and "\n" not in err
    unset = [*missing[:-2], "--model", "openai/pj", "--api-key-env", "NO_SUCH_EVAL_KEY"]
    assert main(unset) == 2
    assert "NO_SUCH_EVAL_KEY is not set" in capsys.readouterr().err


def test_wilson_and_spearman() -> None:
    assert wilson(0, 0) is None
    low, high = wilson(8, 10)  # type: ignore[misc]
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties share their mean rank: x ranks 1, 2.5, 2.5, 4
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(3 / math.sqrt(10))
    assert spearman([1, 1, 1], [1, 2, 3]) is None
    assert spearman([1, 2], [2, 1]) is None
