"""SIGKILL in the middle of a run, then a rerun: no returned call is paid for twice.

The stub server runs in this process; ``arbitrage run`` runs in a subprocess and
reaches it through ``api_base``, so the kill is a real one.
"""

import json
import threading
import time

import yaml
from stub_server import arbitrage_run, stub_config, wait_while_running

from arbitrage.commands.cli import main

DELAY_S = 0.25


def test_sigkill_mid_run_loses_no_returned_call(tmp_path, stub_server, monkeypatch):
    monkeypatch.setenv("STUB_KEY", "sk-kill-test")
    lock = threading.Lock()
    received: list[tuple[float, tuple]] = []
    sent: list[tuple[float, tuple]] = []

    def slow_teacher(name):
        def answer(messages):
            key = (name, messages[-1]["content"])
            with lock:
                received.append((time.monotonic(), key))
            time.sleep(DELAY_S)
            with lock:
                sent.append((time.monotonic(), key))
            return f"{name.upper()} says: " + messages[-1]["content"]  # unique per prompt

        return answer

    stub_server.set_handler("alpha", slow_teacher("alpha"))
    stub_server.set_handler("beta", slow_teacher("beta"))
    stub_server.set_handler(
        "judge", lambda m: "Score: 9" if "ALPHA" in m[-1]["content"] else "Score: 4"
    )

    config = stub_config(str(tmp_path / "run"), stub_server.url, batch_size=4)
    config["teachers"] = [dict(t, max_concurrency=2) for t in config["teachers"]]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    with arbitrage_run(tmp_path / "c.yaml", tmp_path) as proc:
        wait_while_running(proc, lambda: len(sent) >= 18, 120)
        killed_at = time.monotonic()  # the block's end SIGKILLs it
    time.sleep(DELAY_S * 2)  # let the stub finish answering the dead client
    with lock:
        first_sent = {key for t, key in sent if t < killed_at - 0.05}  # surely returned
        first_received = [key for t, key in received if t < killed_at]
        in_flight = len(first_received) - len(first_sent)
        answered = {key for _, key in sent}  # including answers to the dead client
        received.clear()
        sent.clear()
    assert 12 <= len(first_sent) < 48  # killed mid-run

    assert main(["run", str(tmp_path / "c.yaml")]) == 0
    rerun = [key for _, key in received]
    assert not first_sent & set(rerun)  # no returned response was lost or paid twice
    reissued = [key for key in rerun if key in set(first_received)]
    assert len(reissued) <= in_flight
    assert len(set(rerun) | answered) == 48  # every call was answered at least once

    for name in ("alpha", "beta"):  # the same answers, at once: nothing is killed now
        stub_server.set_handler(name, lambda m, n=name: f"{n.upper()} says: " + m[-1]["content"])
    config["out"] = str(tmp_path / "straight")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", str(tmp_path / "s.yaml")]) == 0
    resumed = (tmp_path / "run" / "mixture.jsonl").read_text().splitlines()
    straight = (tmp_path / "straight" / "mixture.jsonl").read_text().splitlines()
    assert len(resumed) == 24 and resumed == straight
    outcomes = (tmp_path / "run" / "outcomes.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["prompt"]["id"] for x in outcomes) == sorted(
        json.loads(x)["prompt_id"] for x in straight
    )
