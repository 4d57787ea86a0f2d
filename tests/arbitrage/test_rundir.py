"""The run directory's files: opening one, streaming its outcomes, mending a torn last
line in place before a resume appends, and rewriting outcomes all at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from stub_server import stub_config

from arbitrage.config import parse_config
from arbitrage.errors import DataError
from arbitrage.records import Candidate, Generation, Outcome, Prompt, dumps
from arbitrage.rundir import RunDir, load_run


def outcomes(n: int, *, text: str = "an answer") -> list[Outcome]:
    rows = []
    for i in range(n):
        prompt = Prompt(f"prompt {i}", "en", "math")
        cand = Candidate(Generation(prompt.id, "a", "openai/a", text, "stop"), 0.5)
        rows.append(Outcome(prompt, (cand,), "a"))
    return rows


@pytest.fixture
def run_dir(tmp_path: Path) -> RunDir:
    run = RunDir(tmp_path / "run")
    run.prepare(parse_config(stub_config(str(run.path), "http://127.0.0.1:9")))
    return run


def test_open_refuses_what_is_not_a_run_directory(tmp_path: Path, run_dir: RunDir) -> None:
    with pytest.raises(DataError, match="no such run directory"):
        RunDir.open(tmp_path / "nope")
    (tmp_path / "notes").mkdir()
    with pytest.raises(DataError, match=r"is not a run directory \(no run.json / config.yaml\)"):
        RunDir.open(tmp_path / "notes")
    (run_dir.path / "config.yaml").write_text("teachers: [")
    with pytest.raises(DataError, match=r"config\.yaml: unreadable run config"):
        RunDir.open(run_dir.path).config()


def test_load_run_gives_the_config_here_and_needs_outcomes(tmp_path: Path, run_dir: RunDir) -> None:
    with pytest.raises(DataError, match="holds no outcomes yet"):
        load_run(run_dir.path)
    run_dir.append_outcomes(outcomes(3))
    moved = tmp_path / "moved"
    run_dir.path.rename(moved)
    config, got = load_run(moved)
    assert config.out == str(moved) and got == outcomes(3)


def test_iter_outcomes_streams_and_drops_only_a_torn_last_line(run_dir: RunDir) -> None:
    assert list(run_dir.iter_outcomes()) == []  # no file yet
    run_dir.append_outcomes(outcomes(3))
    with run_dir.outcomes_path.open("ab") as fh:
        fh.write(dumps(outcomes(4)[3]).encode()[:-5])
    rows = run_dir.iter_outcomes()
    assert isinstance(rows, Iterator) and not isinstance(rows, list)
    assert next(rows) == outcomes(1)[0]
    assert list(rows) == outcomes(3)[1:]


def test_iter_prompts_from_a_start_skips_rows_unread_and_counts_lines_on(run_dir: RunDir) -> None:
    prompts = [o.prompt for o in outcomes(5)]
    run_dir.save_prompts(prompts)
    lines = (run_dir.path / "prompts.jsonl").read_text().splitlines()
    lines[0] = "not json"  # never decoded from start 2 on
    lines.insert(2, "")  # a blank line is no row
    lines[4] = "{"
    (run_dir.path / "prompts.jsonl").write_text("\n".join(lines) + "\n")
    rows = run_dir.iter_prompts(2)
    assert next(rows) == prompts[2]
    with pytest.raises(DataError, match=r"prompts\.jsonl:5: corrupt prompt row"):
        next(rows)  # the line numbers count every line, the skipped ones too


def test_mend_cuts_a_torn_last_line_in_place(run_dir: RunDir) -> None:
    run_dir.append_outcomes(outcomes(3))
    whole = run_dir.outcomes_path.read_bytes()
    torn = dumps(outcomes(4, text="Привет")[3]).encode("utf-8")
    cut = torn.index("Привет".encode()) + 1  # inside a two-byte character
    with run_dir.outcomes_path.open("ab") as fh:
        fh.write(torn[:cut])
    inode = run_dir.outcomes_path.stat().st_ino
    run_dir.mend_outcomes()
    assert run_dir.outcomes_path.read_bytes() == whole
    assert run_dir.outcomes_path.stat().st_ino == inode  # truncated, not replaced
    run_dir.append_outcomes(outcomes(4)[3:])
    assert run_dir.load_outcomes() == outcomes(4)


def test_mend_keeps_a_whole_row_that_lacks_only_its_newline(run_dir: RunDir) -> None:
    run_dir.outcomes_path.write_text(
        "".join(dumps(o) + "\n" for o in outcomes(2)) + dumps(outcomes(3)[2])
    )
    run_dir.mend_outcomes()
    run_dir.append_outcomes(outcomes(4)[3:])
    assert run_dir.load_outcomes() == outcomes(4)


@pytest.mark.parametrize("rows", [0, 2])
def test_mend_finds_the_line_start_past_a_long_torn_line(run_dir: RunDir, rows: int) -> None:
    run_dir.append_outcomes(outcomes(rows))
    whole = run_dir.outcomes_path.read_bytes()
    long = dumps(outcomes(1, text="x" * 200_000)[0]).encode()  # over three tail chunks
    with run_dir.outcomes_path.open("ab") as fh:
        fh.write(long[:-2])
    run_dir.mend_outcomes()
    assert run_dir.outcomes_path.read_bytes() == whole


def test_mend_leaves_a_whole_file_alone_and_starts_a_missing_one(run_dir: RunDir) -> None:
    run_dir.mend_outcomes()
    assert run_dir.outcomes_path.read_bytes() == b""
    run_dir.append_outcomes(outcomes(2))
    whole = run_dir.outcomes_path.read_bytes()
    run_dir.mend_outcomes()
    assert run_dir.outcomes_path.read_bytes() == whole


def test_rewrite_outcomes_is_all_or_nothing(run_dir: RunDir) -> None:
    run_dir.append_outcomes(outcomes(3))
    whole = run_dir.outcomes_path.read_bytes()

    def broken() -> Iterator[Outcome]:
        yield outcomes(1)[0]
        raise DataError("a bad row")

    with pytest.raises(DataError):
        run_dir.rewrite_outcomes(broken())
    assert run_dir.outcomes_path.read_bytes() == whole
    assert sorted(p.name for p in run_dir.path.iterdir() if "outcomes" in p.name) == [
        "outcomes.jsonl"
    ]
    run_dir.rewrite_outcomes(o for o in run_dir.iter_outcomes() if o.prompt.text != "prompt 1")
    assert run_dir.load_outcomes() == [outcomes(3)[0], outcomes(3)[2]]
