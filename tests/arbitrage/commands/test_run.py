"""End to end through the CLI: teachers and judge are served by the stub server on 127.0.0.1."""

import gc
import json
import re
import weakref
from pathlib import Path

import pytest
import yaml
from datasets import load_from_disk
from stub_server import Reply, stub_config
from trl.data_utils import is_conversational

from arbitrage.commands.cli import main

SECRET = "sk-very-secret-0123456789"


def judge(messages):
    """Alpha is the better teacher in French, beta in English."""
    text = messages[-1]["content"]
    lang = re.search(r"The user's language: (\w+)", text).group(1)
    answer = text.split("[Answer]")[1]
    good = "ALPHA" if lang == "fr" else "BETA"
    return "Clear and correct.\nScore: 9" if good in answer else "Weak.\nScore: 3"


def write_config(tmp_path: Path, url: str, **overrides) -> Path:
    config = stub_config(
        str(tmp_path / "run"),
        url,
        batch_size=6,
        router={"name": "learned", "params": {"warmup": 6, "explore": 0.0}},
        # one window in flight: the router learns the warm-up before routing the rest
        windows=1,
    )
    config.update(overrides)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def teachers(stub_server, monkeypatch):
    monkeypatch.setenv("STUB_KEY", SECRET)
    stub_server.set_handler("alpha", lambda m: "ALPHA answers: " + m[-1]["content"][:30])
    stub_server.set_handler("beta", lambda m: "BETA answers: " + m[-1]["content"][:30])
    stub_server.set_handler("judge", judge)
    return stub_server


def read_outcomes(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "outcomes.jsonl").read_text().splitlines()]


def test_run_learns_who_wins_and_writes_a_trl_dataset(tmp_path, teachers, capsys):
    config = write_config(tmp_path, teachers.url)
    assert main(["run", str(config)]) == 0
    run = tmp_path / "run"
    ds = load_from_disk(str(run / "dataset"))
    assert len(ds) == 24
    assert all(is_conversational(row) for row in ds)
    assert ds[0]["messages"][0] == {"role": "user", "content": ds[0]["messages"][0]["content"]}
    assert {row["teacher"] for row in ds} == {"alpha", "beta"}
    # after the warm-up, French goes to alpha and English to beta, one generation each
    for row in ds:
        if row["routed_by"] == "exploit":
            assert row["teacher"] == ("alpha" if row["language"] == "fr" else "beta")
            assert len(row["candidates"]) == 1
    report = json.loads((run / "report.json").read_text())
    assert report["wins_by_language"]["fr"] == {"alpha": 12}
    assert report["wins_by_language"]["en"] == {"beta": 12}
    assert report["generations_per_prompt"] == pytest.approx((6 * 2 + 18) / 24)
    out = capsys.readouterr().out
    assert "Wins per language × teacher" in out and str(run / "dataset") in out


def test_api_key_never_reaches_run_files(tmp_path, teachers):
    assert main(["run", str(write_config(tmp_path, teachers.url))]) == 0
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_rerun_resumes_without_asking_teachers_again(tmp_path, teachers):
    config = write_config(tmp_path, teachers.url)
    assert main(["run", str(config)]) == 0
    run = tmp_path / "run"
    first = load_from_disk(str(run / "dataset")).to_list()
    lines = (run / "outcomes.jsonl").read_text().splitlines()
    # simulate a kill after 2 of 4 batches, the last line torn mid-write
    (run / "outcomes.jsonl").write_text("\n".join(lines[:12]) + "\n" + lines[12][:40])
    teachers.requests.clear()
    assert main(["run", str(config)]) == 0
    teacher_calls = [r for r in teachers.requests if r["model"] in ("alpha", "beta")]
    redone = {o["prompt"]["id"] for o in read_outcomes(run)[12:]}
    assert len(redone) == 12
    assert len(teacher_calls) <= 12 * 2  # only the 12 missing prompts, never the finished ones
    assert load_from_disk(str(run / "dataset")).to_list() == first


def test_rerun_drops_a_last_line_torn_inside_a_cyrillic_character(tmp_path, teachers):
    config = write_config(tmp_path, teachers.url)
    assert main(["run", str(config)]) == 0
    run = tmp_path / "run"
    lines = (run / "outcomes.jsonl").read_bytes().splitlines()
    row = json.loads(lines[12])
    row["candidates"][0]["generation"]["text"] = "Ответ: Волга впадает в Каспийское море."
    torn = json.dumps(row, ensure_ascii=False).encode("utf-8")
    cut = torn.index("Волга".encode()) + 1  # inside the two bytes of "В"
    (run / "outcomes.jsonl").write_bytes(b"\n".join(lines[:12]) + b"\n" + torn[:cut])
    assert main(["run", str(config)]) == 0
    outcomes = read_outcomes(run)
    assert len(outcomes) == 24 and "Волга" not in json.dumps(outcomes, ensure_ascii=False)
    # the 12 whole rows kept as written, only the torn one redone
    assert (run / "outcomes.jsonl").read_bytes().startswith(b"\n".join(lines[:12]) + b"\n")


def test_a_resumed_run_counts_what_is_done_asks_the_rest_and_reads_the_pool_once(
    tmp_path, teachers, monkeypatch
):
    from rich.progress import Progress

    from arbitrage.commands.run import run_config
    from arbitrage.config import load_config
    from arbitrage.rundir import RunDir

    config = load_config(write_config(tmp_path, teachers.url))
    run_config(config)
    run = tmp_path / "run"
    lines = (run / "outcomes.jsonl").read_text().splitlines()
    # killed after 2 windows, and a row of the first dropped (as retry-failed drops a failed one)
    left = lines[:3] + lines[4:12]
    (run / "outcomes.jsonl").write_text("\n".join(left) + "\n")
    kept = sum(json.loads(line)["winner"] is not None for line in left)
    (run / "cache.sqlite").unlink()  # the 12 prompts left are asked again, not read back
    reads = []
    iter_prompts = RunDir.iter_prompts
    monkeypatch.setattr(
        RunDir, "iter_prompts", lambda self, *a: reads.append(1) or iter_prompts(self, *a)
    )
    progress = Progress(disable=True)
    at_first_call = []

    def answer(name):
        def reply(messages):
            if not at_first_call:  # what the run had read and counted when it made its first call
                task = progress.tasks[0]
                at_first_call.append((len(reads), task.completed, task.total, task.fields["kept"]))
            return f"{name.upper()} answers: " + messages[-1]["content"][:30]

        return reply

    for name in ("alpha", "beta"):
        teachers.set_handler(name, answer(name))
    pool = []
    run_config(config, progress=progress, on_pool=pool.append)
    # one read to count the pool, describe it and find what is done; one for the loop
    assert at_first_call == [(2, 11, 24, kept)]
    assert pool == [
        "pool: 24 prompts × 2 languages (fr, en) × 2 tasks (math, open_qa), "
        f"resumed from {run / 'prompts.jsonl'}"
    ]
    assert progress.tasks[0].completed == 24
    # every prompt not done is asked once, the dropped one among them; no done one again
    pool_ids = [json.loads(line)["id"] for line in (run / "prompts.jsonl").read_text().splitlines()]
    asked = [o["prompt"]["id"] for o in read_outcomes(run)[11:]]
    assert sorted(asked) == sorted(set(pool_ids) - {json.loads(x)["prompt"]["id"] for x in left})
    assert len(asked) == 13


@pytest.mark.parametrize("command", ["run", "report", "retry-failed"])
def test_a_bad_line_before_the_last_is_one_error_naming_file_and_line(
    tmp_path, teachers, capsys, command
):
    config = write_config(tmp_path, teachers.url)
    assert main(["run", str(config)]) == 0
    run = tmp_path / "run"
    lines = (run / "outcomes.jsonl").read_bytes().splitlines(keepends=True)
    lines[4] = "Ответ".encode()[:3] + b"\n"  # cut inside a character, then more rows
    (run / "outcomes.jsonl").write_bytes(b"".join(lines))
    capsys.readouterr()
    assert main([command, str(config if command == "run" else run)]) != 0
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("arbitrage: error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert f"{run / 'outcomes.jsonl'}:5: corrupt outcome row (not UTF-8" in errors[0]


def test_same_out_with_another_config_is_refused(tmp_path, teachers, capsys):
    assert main(["run", str(write_config(tmp_path, teachers.url))]) == 0
    other = write_config(tmp_path, teachers.url, seed=2)
    assert main(["run", str(other)]) == 2
    assert "holds a run of a different config" in capsys.readouterr().err


def test_failing_teacher_becomes_data_not_rows(tmp_path, teachers):
    # a 400, not a 401: a refused key stops the run (test_hostile.py)
    teachers.set_handler("beta", lambda m: Reply("down", status=400))
    config = write_config(tmp_path, teachers.url, router={"name": "reward"})
    assert main(["run", str(config)]) == 0
    run = tmp_path / "run"
    ds = load_from_disk(str(run / "dataset"))
    assert set(ds["teacher"]) == {"alpha"}
    assert all(row["messages"][1]["content"] for row in ds)
    report = json.loads((run / "report.json").read_text())
    assert report["teachers"]["beta"]["failed"] == 24
    assert report["statuses"]["error"] == 24
    errors = [
        c["generation"]["error"]
        for o in read_outcomes(run)
        for c in o["candidates"]
        if c["generation"]["error"]
    ]
    assert all(SECRET not in e for e in errors)


def test_truncated_answers_never_win(tmp_path, teachers):
    teachers.set_handler("alpha", lambda m: Reply("ALPHA cut off mid", finish_reason="length"))
    config = write_config(tmp_path, teachers.url, router={"name": "reward"})
    assert main(["run", str(config)]) == 0
    ds = load_from_disk(str(tmp_path / "run" / "dataset"))
    assert set(ds["teacher"]) == {"beta"}
    statuses = {c["status"] for row in ds for c in row["candidates"] if c["teacher"] == "alpha"}
    assert statuses == {"truncated"}


def test_writer_model_writes_prompts_and_falls_back_to_templates(tmp_path, teachers):
    def writer(messages):
        content = messages[-1]["content"]
        if "French" in content:
            return Reply("busy", status=400)
        return '"Explain tides to a fisherman."'

    teachers.set_handler("alpha", writer)
    config = write_config(
        tmp_path,
        teachers.url,
        pool={"n_prompts": 4, "languages": ["en", "fr"], "tasks": ["open_qa"], "writer": "alpha"},
        router={"name": "random"},
    )
    assert main(["run", str(config)]) == 0
    prompts = [json.loads(x) for x in (tmp_path / "run" / "prompts.jsonl").read_text().splitlines()]
    by_lang = {p["language"]: p for p in prompts}
    assert by_lang["en"]["text"] == "Explain tides to a fisherman."
    assert by_lang["en"]["meta"]["writer"] == "alpha"
    assert by_lang["fr"]["meta"]["writer"] == "template-fallback"
    assert by_lang["fr"]["text"].endswith("Réponds uniquement en français.")


def test_a_prompts_file_is_used_whole_and_the_pool_line_says_what_it_holds(
    tmp_path, teachers, capsys
):
    tasks = ("open_qa", "math", "coding")
    path = tmp_path / "prompts.jsonl"
    rows = [{"text": f"Question {i}?", "language": "en", "task": tasks[i % 3]} for i in range(65)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = write_config(tmp_path, teachers.url, pool={"prompts": str(path)})
    assert main(["run", str(config)]) == 0
    run = tmp_path / "run"
    assert len((run / "prompts.jsonl").read_text().splitlines()) == 65  # not cut to 60
    err = capsys.readouterr().err
    held = "pool: 65 prompts × 1 language (en) × 3 tasks (open_qa, math, coding)"
    assert f"{held}, from {path}" in err
    assert "languages" not in err  # pool.languages (en, fr, sw) is not what the pool holds
    assert main(["run", str(config)]) == 0  # resumes: the same config, the same hash
    assert f"{held}, resumed from {run / 'prompts.jsonl'}" in capsys.readouterr().err


def test_a_run_checks_its_config_once_and_builds_its_router_once(tmp_path, teachers, monkeypatch):
    import routers

    built = []
    build = routers.registry.build

    def counted(name, *args, **kwargs):
        built.append(name)
        return build(name, *args, **kwargs)

    monkeypatch.setattr(routers.registry, "build", counted)
    assert main(["run", str(write_config(tmp_path, teachers.url))]) == 0
    assert built == ["learned"]


def test_the_outputs_stage_reads_outcomes_a_few_at_a_time_never_the_whole_run(
    tmp_path, teachers, monkeypatch
):
    from arbitrage.records import Outcome
    from arbitrage.rundir import RunDir

    live = {"now": 0, "outputs": 0, "read": 0}  # outcomes alive; their peak, and reads
    parse, write = Outcome.from_dict, RunDir.write_outputs
    writing = False

    def gone() -> None:
        live["now"] -= 1

    def tracked(cls, data):
        outcome = parse(data)
        live["now"] += 1
        weakref.finalize(outcome, gone)
        if writing:
            live["read"] += 1
            live["outputs"] = max(live["outputs"], live["now"])
        return outcome

    def outputs(self, *args, **kwargs):
        nonlocal writing
        gc.collect()
        writing = True
        live["outputs"] = live["now"]  # what the run holds as its outputs start
        try:
            write(self, *args, **kwargs)
        finally:
            writing = False

    monkeypatch.setattr(Outcome, "from_dict", classmethod(tracked))
    monkeypatch.setattr(RunDir, "write_outputs", outputs)
    assert main(["run", str(write_config(tmp_path, teachers.url))]) == 0
    assert len(load_from_disk(str(tmp_path / "run" / "dataset"))) == 24
    # every outcome was read, in passes, and never more than a few of the 24 were alive
    assert 1 <= live["outputs"] <= 4
    assert live["read"] >= 2 * 24
