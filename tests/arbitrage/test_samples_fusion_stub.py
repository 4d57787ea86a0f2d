"""Samples per teacher and fusion end to end through the CLI, over HTTP: teachers, fuser
and judge are served by the stub server on 127.0.0.1 (litellm's real code path)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from datasets import load_from_disk
from stub_server import stub_config

from arbitrage.commands.cli import main
from arbitrage.config import parse_config
from arbitrage.errors import ConfigError
from arbitrage.rundir import config_hash

T = [{"name": "a", "model": "openai/m"}, {"name": "b", "model": "openai/n"}]


def judge(messages: list[dict[str, Any]]) -> str:
    """A fused answer is the best, then alpha's, then beta's."""
    answer = messages[-1]["content"].split("[Answer]")[1]
    score = 9 if "FUSED" in answer else 6 if "ALPHA" in answer else 4
    return f"Score: {score}"


def fuse_or_answer(name: str):  # type: ignore[no-untyped-def]
    def answer(messages: list[dict[str, Any]]) -> str:
        text = messages[-1]["content"]
        if "draft answers" in text:
            return "FUSED from " + " + ".join(re.findall(r"Draft \d+:\n<<<\n(\w+)", text))
        return f"{name} answers: {text[:30]}"

    return answer


@pytest.fixture
def served(stub_server, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("STUB_KEY", "sk-stub-0123456789")
    stub_server.set_handler("alpha", fuse_or_answer("ALPHA"))
    stub_server.set_handler("beta", fuse_or_answer("BETA"))
    stub_server.set_handler("judge", judge)
    return stub_server


def write(tmp_path: Path, url: str, out: str = "run", **overrides: Any) -> Path:
    config = stub_config(str(tmp_path / out), url, batch_size=3, windows=2)
    config["pool"]["n_prompts"] = 6
    config["cache"] = {"path": str(tmp_path / "cache.sqlite")}
    config.update(overrides)
    path = tmp_path / f"{out}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def teacher_requests(server, model: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return [r for r in server.requests if r.get("model") == model]


def outcomes(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "outcomes.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("via", ["calls", "auto"])
def test_samples_by_calls_or_n_are_each_cached_and_paid_for(tmp_path, served, capsys, via):  # type: ignore[no-untyped-def]
    config = write(tmp_path, served.url)
    data = yaml.safe_load(config.read_text())
    data["teachers"][0]["samples"] = 3
    data["teachers"][0]["samples_via"] = via
    data["teachers"][0]["output_cost_per_mtok"] = 1000.0
    config.write_text(yaml.safe_dump(data))
    assert main(["run", str(config)]) == 0
    alpha = teacher_requests(served, "alpha")
    assert len(teacher_requests(served, "beta")) == 6
    if via == "calls":
        assert len(alpha) == 18
        seeds: dict[str, set[int]] = {}
        for request in alpha:
            seeds.setdefault(request["messages"][-1]["content"], set()).add(request["seed"])
        assert [len(s) for s in seeds.values()] == [3] * 6  # three distinct seeds a prompt
    else:  # openai/ takes n: one request a prompt for its three samples
        assert len(alpha) == 6 and [r["n"] for r in alpha] == [3] * 6
    run = tmp_path / "run"
    rows = outcomes(run)
    for row in rows:
        got = sorted(
            (c["generation"]["teacher"], c["generation"]["sample"]) for c in row["candidates"]
        )
        assert got == [("alpha", 0), ("alpha", 1), ("alpha", 2), ("beta", 0)]
    report = json.loads((run / "report.json").read_text())
    paid = sum(c["generation"]["cost_usd"] for r in rows for c in r["candidates"])
    assert paid > 0
    assert report["engine"]["spent_usd"] == pytest.approx(paid, rel=1e-6)
    assert report["samples"]["samples"] == 3 and report["samples"]["prompts"] == 6
    assert report["samples"]["best single × 3 samples teacher"] == "alpha"
    assert "samples: arbitraged" in capsys.readouterr().out
    card = (run / "README.md").read_text()
    assert "## Samples and fusion" in card and "samples per prompt: alpha × 3" in card
    ds = load_from_disk(str(run / "dataset"))
    assert set(ds["sample"]) <= {0, 1, 2}
    assert all(len(row["candidates"]) == 4 for row in ds)

    # another run directory on the same cache: every sample is answered from it
    served.requests.clear()
    again = write(tmp_path, served.url, out="again")
    data["out"] = str(tmp_path / "again")
    again.write_text(yaml.safe_dump(data))
    assert main(["run", str(again)]) == 0
    assert teacher_requests(served, "alpha") == [] and teacher_requests(served, "beta") == []

    def answers(rows: list[dict[str, Any]]) -> list[list[tuple[str, int, str]]]:
        return [
            [
                (c["generation"]["teacher"], c["generation"]["sample"], c["generation"]["text"])
                for c in r["candidates"]
            ]
            for r in rows
        ]

    assert answers(outcomes(tmp_path / "again")) == answers(rows)


def test_fusion_writes_one_answer_from_the_best_candidates_and_keeps_it_when_it_wins(
    tmp_path, served, capsys
):  # type: ignore[no-untyped-def]
    config = write(tmp_path, served.url, fusion={"model": "alpha", "top_k": 2})
    assert main(["run", str(config)]) == 0
    fuser_calls = [
        r
        for r in teacher_requests(served, "alpha")
        if "draft answers" in r["messages"][-1]["content"]
    ]
    assert len(fuser_calls) == 6
    text = fuser_calls[0]["messages"][-1]["content"]
    assert text.index("Draft 1:\n<<<\nALPHA") < text.index("Draft 2:\n<<<\nBETA")  # best first
    run = tmp_path / "run"
    rows = outcomes(run)
    assert all(r["fusion"]["kept"] for r in rows)
    ds = load_from_disk(str(run / "dataset"))
    assert len(ds) == 6
    for row in ds:
        assert row["messages"][-1]["content"] == "FUSED from ALPHA + BETA"
        assert row["teacher"] == "alpha"
        assert [(s["teacher"], s["sample"]) for s in row["fused_from"]] == [
            ("alpha", 0),
            ("beta", 0),
        ]
    report = json.loads((run / "report.json").read_text())
    fusion = report["fusion"]
    assert fusion["fused"] == fusion["won"] == fusion["kept"] == 6
    # judge: 9 for the fused answer, 6 for alpha's best: +3 on the judge's 1-10 scale,
    # whatever the scale the reward maps it to
    assert fusion["mean_gain"] > 0 and fusion["mean_gain"] == fusion["mean_gain_when_won"]
    assert "fusion: 6 prompts fused, won 6 of 6 scored" in capsys.readouterr().out
    card = (run / "README.md").read_text()
    assert "6 of 6 kept rows are fused" in card and "fusion won 6 of 6" in card
    page = (run / "report.html").read_text()
    assert "<h2>Samples and fusion</h2>" in page and "won 6 of 6 scored" in page


def test_fusion_that_loses_is_recorded_but_not_kept(tmp_path, served):  # type: ignore[no-untyped-def]
    served.set_handler("judge", lambda m: "Score: 2" if "FUSED" in m[-1]["content"] else judge(m))
    config = write(tmp_path, served.url, fusion={"model": "beta", "top_k": 3})
    assert main(["run", str(config)]) == 0
    rows = outcomes(tmp_path / "run")
    assert all(r["fusion"] is not None and not r["fusion"]["kept"] for r in rows)
    ds = load_from_disk(str(tmp_path / "run" / "dataset"))
    assert all(row["fused_from"] == [] and row["teacher"] == "alpha" for row in ds)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["fusion"]["won"] == 0 and report["fusion"]["mean_gain"] < 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"fusion": {"model": "c"}}, "fusion.model 'c' is not a teacher name (a, b)"),
        ({"fusion": {"model": "a", "top_k": 1}}, "fusion.top_k"),
        ({"fusion": {"model": "a", "keep": "best"}}, "fusion.keep"),
        ({"fusion": {"model": "a", "topk": 2}}, "did you mean 'top_k'"),
        ({"teachers": [{**T[0], "samples": 0}, T[1]]}, "teachers[0].samples"),
    ],
)
def test_bad_samples_and_fusion_keys_are_one_clear_error(extra, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config({"teachers": T, **extra})


def test_samples_and_fusion_change_the_config_hash_only_when_set() -> None:
    plain = config_hash(parse_config({"teachers": T}))
    assert config_hash(parse_config({"teachers": [{**T[0], "samples": 1}, T[1]]})) == plain
    assert config_hash(parse_config({"teachers": [{**T[0], "samples": 2}, T[1]]})) != plain
    assert config_hash(parse_config({"teachers": T, "fusion": {"model": "a"}})) != plain


def test_a_bad_fusion_key_exits_2_with_one_line(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"teachers": T, "fusion": {"model": "z"}}))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "fusion.model 'z'" in err and "Traceback" not in err


def test_the_estimate_counts_every_sample_and_the_fusions() -> None:
    from arbitrage.commands.estimate import estimate

    base = {"teachers": T, "pool": {"n_prompts": 10}, "router": {"name": "reward"}}
    plain = {r["who"]: r["calls"] for r in estimate(parse_config(base))}
    more = parse_config(
        {**base, "teachers": [{**T[0], "samples": 3}, T[1]], "fusion": {"model": "b"}}
    )
    calls = {r["who"]: r["calls"] for r in estimate(more)}
    assert plain == {"a": 10, "b": 10}
    assert calls == {"a": 30, "b": 10, "b (fusion)": 10}
