"""One writer per run directory: a second run refuses at once, a killed one never blocks.

The holder is a real ``arbitrage run`` in a subprocess, held mid-run by a stub server
(in this process, on 127.0.0.1) that does not answer until told to.
"""

import fcntl
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from stub_server import arbitrage_run, stub_config, wait_while_running

from arbitrage.commands.cli import main


def _write_config(tmp_path: Path, url: str) -> Path:
    config = stub_config(str(tmp_path / "run"), url, batch_size=4)
    config["teachers"] = [dict(t, max_concurrency=1) for t in config["teachers"]]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _answer_when(release: threading.Event, name: str):
    def answer(messages):
        release.wait(timeout=60)
        return f"{name.upper()} says: " + messages[-1]["content"][:40]

    return answer


@contextmanager
def held_run(tmp_path, stub_server, monkeypatch) -> Iterator[tuple[subprocess.Popen, Path]]:
    """An ``arbitrage run`` in a subprocess, stopped at its first teacher calls (the lock
    taken), and SIGKILLed when the block ends."""
    monkeypatch.setenv("STUB_KEY", "sk-lock-test")
    release = threading.Event()
    stub_server.set_handler("alpha", _answer_when(release, "alpha"))
    stub_server.set_handler("beta", _answer_when(release, "beta"))
    stub_server.set_handler(
        "judge", lambda m: "Score: 9" if "ALPHA" in m[-1]["content"] else "Score: 4"
    )
    config = _write_config(tmp_path, stub_server.url)
    try:
        with arbitrage_run(config, tmp_path) as proc:
            wait_while_running(proc, lambda: bool(stub_server.requests), 60)
            assert stub_server.requests, "the first run never called a teacher"
            yield proc, config
    finally:
        release.set()  # let the stub's threads answer the dead client and exit
        time.sleep(0.2)


def test_a_second_run_refuses_at_once_and_a_killed_holder_never_blocks_a_resume(
    tmp_path, stub_server, monkeypatch, capsys
):
    with held_run(tmp_path, stub_server, monkeypatch) as (holder, config):
        time.sleep(0.5)  # the holder's calls are all in flight (one per teacher), none return
        calls_before = len(stub_server.requests)
        capsys.readouterr()
        started = time.monotonic()
        code = main(["run", str(config)])  # this process, not the holder
        took = time.monotonic() - started
        err = capsys.readouterr().err
        time.sleep(0.3)
        assert len(stub_server.requests) == calls_before  # the second run called no one
        assert holder.poll() is None  # and did not disturb the first
    assert code == 2
    assert took < 20  # never waits on the holder
    errors = [line for line in err.splitlines() if line.startswith("arbitrage: error:")]
    assert len(errors) == 1, err
    assert f"in use by pid {holder.pid} on " in errors[0]
    assert " UTC (another arbitrage run); wait for it or stop it" in errors[0]
    assert "Traceback" not in err

    # SIGKILLed on leaving the block: its lock file stays behind, naming it
    holder_info = json.loads((tmp_path / "run" / ".lock").read_text())
    assert holder_info["pid"] == holder.pid
    assert main(["run", str(config)]) == 0
    outcomes = (tmp_path / "run" / "outcomes.jsonl").read_text().splitlines()
    ids = [json.loads(line)["prompt"]["id"] for line in outcomes]
    assert len(ids) == len(set(ids)) == 24


def test_lock_is_released_after_a_run(tmp_path, stub_server, monkeypatch):
    monkeypatch.setenv("STUB_KEY", "sk-lock-test")
    stub_server.set_handler("judge", lambda m: "Score: 7")  # a row kept: exit 0
    config = _write_config(tmp_path, stub_server.url)
    assert main(["run", str(config)]) == 0
    assert (tmp_path / "run" / ".lock").read_text() == ""  # no holder named any more
    # A leaked descriptor would still hold the flock, and refuse even this process.
    assert main(["run", str(config)]) == 0
    assert len((tmp_path / "run" / "outcomes.jsonl").read_text().splitlines()) == 24


def test_writers_refuse_and_readers_work_while_locked(tmp_path, stub_server, monkeypatch, capsys):
    monkeypatch.setenv("STUB_KEY", "sk-lock-test")
    stub_server.set_handler("judge", lambda m: "Score: 7")  # a row kept: exit 0
    config = _write_config(tmp_path, stub_server.url)
    run_dir = tmp_path / "run"
    assert main(["run", str(config)]) == 0
    fd = os.open(run_dir / ".lock", os.O_RDWR)
    try:  # another process's lock, as the kernel sees it
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        holder = {"pid": 4242, "host": "gpu-7", "since": "2026-12-01 10:00:00 UTC"}
        os.write(fd, json.dumps(holder).encode())
        capsys.readouterr()
        calls = len(stub_server.requests)

        assert main(["run", str(config)]) == 2
        assert main(["retry-failed", str(run_dir)]) == 2
        err = capsys.readouterr().err
        line = (
            f"arbitrage: error: {run_dir} is in use by pid 4242 on gpu-7 since "
            "2026-12-01 10:00:00 UTC (another arbitrage run); wait for it or stop it"
        )
        assert err.splitlines().count(line) == 2, err
        assert len(stub_server.requests) == calls

        assert main(["report", str(run_dir)]) == 0  # reading needs no lock
    finally:
        os.close(fd)
