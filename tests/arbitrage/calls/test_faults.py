"""Faults injected by the stub server, seen through litellm's real ``openai/`` code path.

Each fault must end as what it is: retried when it is transient (429, 500, timeout,
dropped connection, malformed body), recorded as a failure with its reason when it
does not go away, and never passed off as a good completion (empty, content-filtered).
"""

import asyncio
import json
import threading

import pytest
import yaml
from stub_server import Reply, Scripted, stub_config

from arbitrage.calls.teachers import Teacher
from arbitrage.commands.cli import main
from arbitrage.records import Outcome, Prompt

SECRET = "sk-faults-secret-42"
PROMPT = Prompt(text="Name a river in France.", language="en", task="open_qa")


@pytest.fixture
def stub(stub_server, monkeypatch):
    monkeypatch.setenv("STUB_KEY", SECRET)
    return stub_server


def teacher(url: str, **params) -> Teacher:
    params = {"retries": 2, "timeout_s": 5.0, **params}
    return Teacher.from_model("t", "openai/t", api_base=url, api_key_env="STUB_KEY", **params)


TRANSIENT = {
    "429 with Retry-After": Reply("slow down", status=429, headers={"Retry-After": "0.2"}),
    "500": Reply("internal", status=500),
    "503": Reply("overloaded", status=503),
    "dropped connection": Reply("", fault="drop"),
    "malformed JSON": Reply("", fault="malformed"),
}


@pytest.mark.parametrize("fault", list(TRANSIENT), ids=list(TRANSIENT))
def test_transient_fault_is_retried_and_the_answer_kept(stub, fault):
    stub.set_handler("t", Scripted({1: TRANSIENT[fault]}, "The Loire."))
    t = teacher(stub.url)
    gen = asyncio.run(t.agenerate(PROMPT))
    assert gen.status == "ok" and gen.text == "The Loire."
    assert len(stub.requests) == 2
    assert t.stats.retries == 1 and t.stats.ok == 1 and t.stats.failed == 0


def test_timeout_is_retried_then_recorded_with_its_reason(stub):
    stub.set_handler("t", lambda m: Reply("too late", delay_s=1.5))
    t = teacher(stub.url, timeout_s=0.3, retries=1)
    gen = asyncio.run(t.agenerate(PROMPT))
    assert gen.status == "error" and "Timeout" in gen.error
    assert len(stub.requests) == 2 and t.stats.failed == 1
    assert SECRET not in gen.error


@pytest.mark.parametrize("fault", list(TRANSIENT), ids=list(TRANSIENT))
def test_fault_that_persists_becomes_a_failure_with_a_reason(stub, fault):
    stub.set_handler("t", lambda m: TRANSIENT[fault])
    t = teacher(stub.url, retries=1)
    gen = asyncio.run(t.agenerate(PROMPT))
    assert gen.status == "error" and gen.error and not gen.ok
    assert len(stub.requests) == 2  # one try plus one retry, no more
    assert SECRET not in gen.error


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        (Reply(""), "empty"),
        (Reply("   \n"), "empty"),
        (Reply("I can't show that.", finish_reason="content_filter"), "filtered"),
        (Reply("The Loire is a river that", finish_reason="length"), "truncated"),
    ],
    ids=["empty", "whitespace", "content_filter", "length"],
)
def test_unusable_reply_is_recorded_as_such_and_not_retried(stub, reply, status):
    stub.set_handler("t", lambda m: reply)
    gen = asyncio.run(teacher(stub.url).agenerate(PROMPT))
    assert gen.status == status and not gen.ok
    assert len(stub.requests) == 1


def test_a_run_through_every_fault_has_no_row_without_a_completion(tmp_path, stub):
    """Teacher beta fails in every way at once; each prompt still ends as a row from alpha
    or as a failure with its reason, and no bad answer reaches the mixture."""
    faults = [
        *TRANSIENT.values(),
        Reply("", body={"choices": []}),  # a 200 with no choices (issue 13)
        Reply(""),
        Reply("cut", finish_reason="content_filter"),
    ]
    lock = threading.Lock()
    count = [0]

    def beta(messages):
        with lock:
            count[0] += 1
            return faults[count[0] % len(faults)]

    stub.set_handler("beta", beta)
    stub.set_handler("judge", lambda m: "Score: 6")
    config = stub_config(str(tmp_path / "run"), stub.url, batch_size=8)
    config["teachers"] = [dict(t, retries=0) for t in config["teachers"]]
    config["breaker"] = {"failures": 1000}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", str(tmp_path / "c.yaml")]) == 0

    lines = (tmp_path / "run" / "outcomes.jsonl").read_text().splitlines()
    outcomes = [Outcome.from_dict(json.loads(x)) for x in lines]
    statuses = {c.generation.status for o in outcomes for c in o.candidates if c.teacher == "beta"}
    rows = [json.loads(x) for x in (tmp_path / "run" / "mixture.jsonl").read_text().splitlines()]
    assert len(outcomes) == 24 and len(rows) == 24
    assert all(r["teacher"] == "alpha" for r in rows)
    assert all(r["messages"][-1]["content"].startswith("Answer from alpha") for r in rows)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["engine"]["teachers"]["beta"]["failed"] > 0
    assert statuses == {"error", "empty", "filtered"}  # beta's answers, for what they are


def test_live_panel_shows_each_teacher_with_its_counters(tmp_path, stub):
    from rich.console import Console

    from arbitrage.commands.live import TeacherPanel
    from arbitrage.commands.run import run_config
    from arbitrage.config import parse_config

    stub.set_handler("beta", lambda m: Reply("down", status=500))
    stub.set_handler("judge", lambda m: "Score: 6")
    config = stub_config(str(tmp_path / "run"), stub.url, batch_size=8)
    config["teachers"] = [dict(t, retries=0) for t in config["teachers"]]
    config["breaker"] = {"failures": 1000}
    panel = TeacherPanel()
    run_config(parse_config(config), panel=panel)

    console = Console(record=True, width=80)
    console.print(panel)
    rows = {line.split()[0]: line.split() for line in console.export_text().splitlines() if line}
    header = rows["teacher"]
    # the judge makes its calls like a teacher and shows with them
    assert [t.name for t in panel.teachers] == ["alpha", "beta", "judge"]
    assert panel.teachers[0].stats.ok == 24 and panel.teachers[1].stats.failed == 24
    assert len(rows["alpha"]) == len(rows["beta"]) == len(header) == 11  # fits 80 columns
    assert rows["alpha"][header.index("circuit")] == "up"
    assert rows["beta"][header.index("err")] == "24"
    assert rows["alpha"][header.index("$")] == "0.00"


def test_live_panel_rate_is_over_the_last_seconds():
    from arbitrage.commands.live import TeacherPanel

    now = [0.0]
    panel = TeacherPanel(clock=lambda: now[0])
    t = teacher("http://127.0.0.1:9/v1")
    panel.attach([t])
    assert panel.rate(t) == 0.0
    for _ in range(10):  # 10 requests a second for 10 s
        now[0] += 1.0
        t.stats.requests += 10
        panel.rate(t)
    assert panel.rate(t) == pytest.approx(10.0)
    now[0] += 5.0  # then silence: the rate falls as the window moves on
    assert panel.rate(t) < 5.0
