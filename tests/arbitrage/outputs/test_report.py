"""The report, the dataset card, the Hub path and the student script, over a stub-server run."""

import json
import re
import sys
import time
from pathlib import Path

import pytest
import yaml
from datasets import load_from_disk
from figures import assert_real_png
from stub_server import copy_run, run_stub_once
from trl.data_utils import is_conversational

from arbitrage.commands.cli import main

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
QUALITY = {"alpha": {"en": 4, "fr": 9}, "beta": {"en": 9, "fr": 4}, "gamma": {"en": 6, "fr": 6}}


def judge(messages):
    text = messages[-1]["content"]
    lang = re.search(r"The user's language: (\w+)", text).group(1)
    answer = text.split("[Answer]")[1]
    if "I'm sorry" in answer:
        return "Score: 10"  # a reward hacked by a polite refusal: the mixture filter catches it
    teacher = next(t for t in QUALITY if t.upper() in answer)
    return f"Score: {QUALITY[teacher][lang]}"


def teacher(name):
    def answer(messages):
        prompt = messages[-1]["content"]
        if name == "gamma" and "math" not in prompt and len(prompt) % 3 == 0:
            return "I'm sorry, but I can't help with that."
        return f"{name.upper()} answers: " + prompt[:60]

    return answer


@pytest.fixture(scope="module")
def made_run(_stub_server_session, tmp_path_factory):
    """The module's one stub-server run (its config's path); each test has a copy."""
    handlers = {name: teacher(name) for name in QUALITY} | {"judge": judge}
    return run_stub_once(_stub_server_session, tmp_path_factory.mktemp("report-run"), handlers)


@pytest.fixture
def run_dir(made_run, tmp_path, monkeypatch):
    monkeypatch.setenv("STUB_KEY", "sk-test")
    return copy_run(made_run, tmp_path)


def test_run_writes_report_card_and_training_files(run_dir):
    for name in ("win_rate_language", "win_rate_task", "rewards", "cost_tokens"):
        assert_real_png(run_dir / "figures" / f"{name}.png")
    html = (run_dir / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4
    assert "Mixture text" in html and "dropped: refusal" in html

    report = json.loads((run_dir / "report.json").read_text())
    counts = report["mixture"]
    refusals = counts["dropped"]["refusal"]
    assert refusals > 0  # gamma's refusals win (the judge loves them) and are dropped
    assert counts["rows"] + sum(counts["dropped"].values()) == 24
    # alpha wins every French prompt gamma does not refuse, beta every English one
    cells = report["win_rate"]["language"]
    assert sum(c[0] for lang in cells.values() for c in lang.values()) == 24
    assert cells["fr"]["alpha"][0] + cells["fr"]["gamma"][0] == 12
    assert cells["en"]["beta"][0] + cells["en"]["gamma"][0] == 12
    assert cells["fr"]["beta"][0] == cells["en"]["alpha"][0] == 0
    assert cells["fr"]["gamma"][0] + cells["en"]["gamma"][0] == refusals
    kept = {lang: 12 - cells[lang]["gamma"][0] for lang in ("en", "fr")}
    mix = report["text"]["language_mix"]
    assert mix == {lang: round(n / counts["rows"], 3) for lang, n in kept.items()}
    assert report["text"]["overall"]["distinct_1"] > 0

    ds = load_from_disk(str(run_dir / "dataset"))
    assert len(ds) == counts["rows"] == 24 - refusals
    assert all(is_conversational(row) for row in ds)
    pref = load_from_disk(str(run_dir / "preference"))
    # 9 vs 4 on every prompt (margin 0.55), except where the winner was a dropped refusal
    assert len(pref) == counts["pairs"] == 24 - refusals
    assert counts["pairs_dropped"] == {"refusal": refusals}
    assert all(is_conversational(row) for row in pref)
    assert {row["rejected_teacher"] for row in pref} <= {"alpha", "beta"}
    assert (run_dir / "mixture.parquet").stat().st_size > 0
    assert len((run_dir / "mixture.jsonl").read_text().splitlines()) == len(ds)

    card = (run_dir / "README.md").read_text()
    assert card.startswith("---\n")
    assert f"**SFT rows** (config `default`, column `messages`): {len(ds)}" in card
    for cell in counts["by_cell"]:
        assert (
            f"| {cell['language']} | {cell['task']} | {cell['teacher']} | {cell['rows']} |" in card
        )
    assert f"| refusal | {refusals} |" in card
    assert f"| gamma | `openai/gamma` | 24 | {refusals} |" in card  # wins: the refusals


def test_report_command_prints_tables_and_rewrites_files(run_dir, capsys):
    for png in (run_dir / "figures").glob("*.png"):
        png.unlink()
    start = time.perf_counter()
    assert main(["report", str(run_dir)]) == 0
    elapsed = time.perf_counter() - start
    out = capsys.readouterr().out
    for title in ("Wins per language × teacher", "Teachers", "Mixture: ", "Mixture text"):
        assert title in out
    assert len(list((run_dir / "figures").glob("*.png"))) == 4
    assert elapsed < 30


def test_the_report_command_reads_what_the_run_reads_and_holds_no_list_of_outcomes(
    run_dir, capsys, monkeypatch
):
    """``arbitrage report`` rebuilds report.json from the run's final outcomes, read from
    disk at each pass (as the run's own outputs stage), never every outcome in a list."""
    from arbitrage.rundir import RunDir

    def no_full_read(self):
        raise AssertionError("every outcome was read into a list")

    counted = ("prompts", "with_winner", "generations", "statuses", "routed_by", "cost_usd",
               "teachers", "wins_by_language", "scoring", "reward_basis", "win_rate",
               "mixture", "text")  # fmt: skip

    def summary(path):
        data = json.loads(path.read_text())
        return {key: data[key] for key in counted}

    written = summary(run_dir / "report.json")
    monkeypatch.setattr(RunDir, "load_outcomes", no_full_read)
    assert main(["report", str(run_dir)]) == 0
    assert "Wins per language × teacher" in capsys.readouterr().out
    assert summary(run_dir / "report.json") == written


def test_report_drops_a_last_line_torn_inside_a_multibyte_character(run_dir, capsys):
    path = run_dir / "outcomes.jsonl"
    data = path.read_bytes()
    n = data.count(b"\n")
    path.write_bytes(data + '{"prompt": {"text": "Привет'.encode()[:-1])  # half of "т"
    assert main(["report", str(run_dir)]) == 0
    assert "Wins per language × teacher" in capsys.readouterr().out
    report = json.loads((run_dir / "report.json").read_text())
    assert sum(report["statuses"].values()) == n * len(QUALITY)  # the torn row, and only it, gone


@pytest.mark.parametrize("kind", ["missing", "not-a-run"])
def test_report_on_a_bad_directory_is_one_line_and_exit_2(tmp_path, capsys, kind):
    target = tmp_path / "nothing"
    if kind == "not-a-run":
        target.mkdir()
        (target / "notes.txt").write_text("hi")
    assert main(["report", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("arbitrage: error: ")
    assert "no such run directory" in err if kind == "missing" else "is not a run directory" in err


def test_new_mixture_settings_rebuild_without_asking_teachers(run_dir, stub_server, tmp_path):
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    config["mixture"] = {"per_language": {"fr": 5}, "drop_refusals": False}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    stub_server.requests.clear()
    assert main(["run", str(tmp_path / "config.yaml")]) == 0
    assert stub_server.requests == []
    counts = json.loads((run_dir / "mixture.json").read_text())
    assert counts["dropped"] == {"quota_language": 7}
    assert len(load_from_disk(str(run_dir / "dataset"))) == 17


def test_push_to_hub_offline_is_one_clear_line(run_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    config["mixture"] = {"push_to_hub": "someone/arbitrage-mixture"}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", str(tmp_path / "config.yaml")]) == 2
    err = capsys.readouterr().err.splitlines()[-1]  # after the run's progress lines
    assert err.startswith("arbitrage: error: ")
    assert "HF_HUB_OFFLINE" in err
    assert "push to the Hub (someone/arbitrage-mixture) failed" in err
    assert "rerun the same command to retry" in err
    assert (run_dir / "README.md").is_file() and (run_dir / "dataset").is_dir()


@pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning")
def test_train_student_smoke(run_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    sys.modules.pop("train_student", None)
    import train_student

    start = time.perf_counter()
    result = train_student.main(
        [
            str(run_dir),
            "--steps",
            "2",
            "--heldout",
            "4",
            "--max-new-tokens",
            "8",
            "--max-length",
            "128",
        ]
    )
    assert time.perf_counter() - start < 60
    assert result["heldout"] == 4 and result["train_rows"] > 0
    assert result["best_teacher"] in QUALITY
    assert set(result["students"]) == {"arbitraged", "single"}
    assert 0.0 <= result["arbitraged_win_rate"] <= 1.0
    assert json.loads((run_dir / "student_eval.json").read_text()) == result
