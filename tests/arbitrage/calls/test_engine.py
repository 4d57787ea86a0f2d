"""The teacher engine through the CLI and the Teacher: cache, limits, breaker, budget."""

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import pytest
import yaml
from stub_server import PeakInFlight, Reply, Scripted, stub_config, write_stub_run

from arbitrage.calls.breaker import CircuitBreaker
from arbitrage.calls.cache import request_key
from arbitrage.calls.limits import TeacherLimits
from arbitrage.calls.teachers import Teacher
from arbitrage.commands.cli import main
from arbitrage.records import Prompt

SECRET = "sk-engine-secret-0123456789"
TEACHERS = ("alpha", "beta")


@pytest.fixture
def stub(stub_server, monkeypatch):
    monkeypatch.setenv("STUB_KEY", SECRET)
    stub_server.set_handler("judge", lambda m: "Fine.\nScore: 7")
    return stub_server


def teacher_requests(stub, name: str | None = None) -> list[dict]:
    names = TEACHERS if name is None else (name,)
    return [r for r in stub.requests if r["model"] in names]


def report(tmp_path: Path, name: str = "run") -> dict:
    return json.loads((tmp_path / name / "report.json").read_text())


# --- cache ---------------------------------------------------------------------------


def test_cache_key_ignores_key_and_transport_but_not_sampling():
    base = {"model": "openai/a", "messages": [{"role": "user", "content": "hi"}], "seed": 1}
    assert request_key(base) == request_key({**base, "api_key": "sk-x", "timeout": 3})
    assert request_key(base) != request_key({**base, "seed": 2})
    assert request_key(base) != request_key({**base, "temperature": 0.1})


def test_second_run_sends_no_teacher_request(tmp_path, stub):
    cache = {"path": str(tmp_path / "shared.sqlite")}
    assert main(["run", str(write_stub_run(tmp_path, stub.url, "one", cache=cache))]) == 0
    assert len(teacher_requests(stub)) == 48
    stub.requests.clear()
    assert main(["run", str(write_stub_run(tmp_path, stub.url, "two", cache=cache))]) == 0
    assert stub.requests == []  # neither teachers (48 calls) nor the judge (48 calls)
    assert report(tmp_path, "two")["engine"]["cache"]["hits"] == 96
    rows = [(tmp_path / n / "mixture.jsonl").read_text() for n in ("one", "two")]
    assert rows[0] == rows[1]


def test_changed_temperature_re_requests_only_that_teacher(tmp_path, stub):
    cache = {"path": str(tmp_path / "shared.sqlite")}
    assert main(["run", str(write_stub_run(tmp_path, stub.url, "one", cache=cache))]) == 0
    config = stub_config(str(tmp_path / "two"), stub.url, batch_size=6, cache=cache)
    config["teachers"][1]["temperature"] = 0.2
    (tmp_path / "two.yaml").write_text(yaml.safe_dump(config))
    stub.requests.clear()
    assert main(["run", str(tmp_path / "two.yaml")]) == 0
    assert teacher_requests(stub, "alpha") == []
    assert len(teacher_requests(stub, "beta")) == 24


def test_failed_calls_are_retried_on_rerun_truncated_ones_are_not(tmp_path, stub):
    stub.set_handler("alpha", lambda m: Reply("cut", finish_reason="length"))
    stub.set_handler("beta", lambda m: Reply("bad request", status=400))
    cache = {"path": str(tmp_path / "shared.sqlite")}
    # no answer can win, so the run exits 2 ("kept no row"), its calls cached all the same
    assert main(["run", str(write_stub_run(tmp_path, stub.url, "one", cache=cache))]) == 2
    with sqlite3.connect(tmp_path / "shared.sqlite") as db:
        statuses = db.execute(
            "SELECT teacher, status, COUNT(*) FROM calls GROUP BY 1, 2"
        ).fetchall()
    assert statuses == [("alpha", "truncated", 24)]
    stub.reset()
    stub.set_handler("judge", lambda m: "Fine.\nScore: 7")
    assert main(["run", str(write_stub_run(tmp_path, stub.url, "two", cache=cache))]) == 0
    assert teacher_requests(stub, "alpha") == []
    assert len(teacher_requests(stub, "beta")) == 24
    assert report(tmp_path, "two")["teachers"]["beta"]["ok"] == 24


def test_api_key_is_not_in_the_cache_file(tmp_path, stub):
    assert main(["run", str(write_stub_run(tmp_path, stub.url))]) == 0
    files = list((tmp_path / "run").glob("cache.sqlite*"))
    assert tmp_path / "run" / "cache.sqlite" in files
    for path in files:
        assert SECRET.encode() not in path.read_bytes()
    with sqlite3.connect(tmp_path / "run" / "cache.sqlite") as db:
        (count,) = db.execute("SELECT COUNT(*) FROM calls").fetchone()
    assert count == 96  # 48 teacher answers, 48 judge replies


def test_cache_can_be_disabled(tmp_path, stub):
    config = write_stub_run(tmp_path, stub.url, cache={"enabled": False})
    assert main(["run", str(config)]) == 0
    assert not (tmp_path / "run" / "cache.sqlite").exists()


# --- rate limits and adaptive concurrency -----------------------------------------------

PROMPTS = [Prompt(text=f"question {i}", language="en", task="open_qa") for i in range(12)]


def teacher(url: str, name: str = "t", **params) -> Teacher:
    return Teacher.from_model(
        name, f"openai/{name}", api_base=url, api_key_env="STUB_KEY", **params
    )


async def answer_all(t: Teacher, prompts=PROMPTS):
    return await asyncio.gather(*(t.agenerate(p) for p in prompts))


def test_retry_after_is_honoured_and_halves_concurrency(stub):
    limited = Scripted({1: Reply("slow down", status=429, headers={"Retry-After": "1"})}, "fine")
    times = limited.times
    stub.set_handler("t", limited)
    t = teacher(stub.url, max_concurrency=8, retries=2)
    start = time.monotonic()
    gen = asyncio.run(t.agenerate(PROMPTS[0]))
    assert gen.ok and len(times) == 2
    assert 1.0 <= times[1] - times[0] < 3.0  # waited as told, no more
    assert time.monotonic() - start < 5
    assert t.limits.concurrency == 4 and t.stats.rate_limited == 1 and t.stats.retries == 1


def test_a_paused_teacher_does_not_hold_back_another(stub):
    stub.set_handler("slow", lambda m: Reply("wait", status=429, headers={"Retry-After": "2"}))
    stub.set_handler("fast", lambda m: "quick")
    slow, fast = teacher(stub.url, "slow", retries=1), teacher(stub.url, "fast")

    async def go():
        start = time.monotonic()
        slow_task = asyncio.ensure_future(answer_all(slow, PROMPTS[:2]))
        await asyncio.sleep(0.3)  # the slow teacher is now paused by Retry-After
        fast_gens = await answer_all(fast)
        fast_done = time.monotonic() - start
        slow_gens = await slow_task
        return fast_gens, fast_done, slow_gens, time.monotonic() - start

    fast_gens, fast_done, slow_gens, total = asyncio.run(go())
    assert all(g.ok for g in fast_gens) and fast_done < 1.5
    assert all(g.status == "error" and "RateLimitError" in g.error for g in slow_gens)
    assert total >= 2.0


def test_requests_per_minute_spreads_calls(stub):
    stub.set_handler("t", lambda m: "ok")
    t = teacher(stub.url, requests_per_minute=600, max_concurrency=64)  # 10 per second
    prompts = [Prompt(text=f"q{i}", language="en", task="open_qa") for i in range(25)]
    start = time.monotonic()
    gens = asyncio.run(answer_all(t, prompts))
    elapsed = time.monotonic() - start
    assert all(g.ok for g in gens)
    assert 1.2 <= elapsed < 6  # a bucket of 10, then 10 per second


def test_aimd_halves_on_overload_never_below_one_and_grows_back():
    now = [0.0]
    limits = TeacherLimits(8, increase_after=3, clock=lambda: now[0])
    limits.overloaded()
    limits.overloaded()  # the same burst: one halving
    assert limits.concurrency == 4
    for _ in range(5):
        now[0] += 2
        limits.overloaded()
    assert limits.concurrency == 1
    for _ in range(6):
        limits.success()
    assert limits.concurrency == 3


def test_concurrency_limit_is_what_is_in_flight(stub):
    slow = PeakInFlight(delay_s=0.1)
    stub.set_handler("t", slow)
    t = teacher(stub.url, max_concurrency=4)
    t.limits.overloaded()  # as after a 429: 4 -> 2
    assert all(g.ok for g in asyncio.run(answer_all(t)))
    assert slow.peak == 2


# --- circuit breaker ---------------------------------------------------------------------


def test_breaker_opens_after_k_failures_then_probes_once():
    now = [0.0]
    breaker = CircuitBreaker("t", failures=3, cooldown_s=10, clock=lambda: now[0])
    for _ in range(2):
        breaker.failure("InternalServerError")
    assert breaker.allow()
    breaker.failure("InternalServerError")
    assert breaker.state == "open" and not breaker.available()
    now[0] = 10
    assert breaker.available() and breaker.allow()  # the probe
    assert not breaker.allow()  # only one
    breaker.failure("Timeout")
    assert breaker.state == "open"
    now[0] = 20
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed"
    assert [e.state for e in breaker.events] == ["open", "half-open", "open", "half-open", "closed"]


def test_dead_teacher_is_circuit_broken_and_the_run_finishes_on_the_others(tmp_path, stub):
    stub.set_handler("beta", lambda m: Reply("boom", status=500))
    # one window in flight: what "the first batch" below means
    config = write_stub_run(
        tmp_path, stub.url, breaker={"failures": 3, "cooldown_s": 600}, windows=1
    )
    start = time.monotonic()
    assert main(["run", str(config)]) == 0
    assert time.monotonic() - start < 30
    rows = [json.loads(x) for x in (tmp_path / "run" / "mixture.jsonl").read_text().splitlines()]
    assert len(rows) == 24 and {r["teacher"] for r in rows} == {"alpha"}
    # the first batch's calls were in flight when it opened; after that, no request to beta
    assert len(teacher_requests(stub, "beta")) <= 6 * 3
    rep = report(tmp_path)
    assert [(e["teacher"], e["state"]) for e in rep["breaker"]] == [("beta", "open")]
    assert "consecutive failures" in rep["breaker"][0]["why"]
    # calls of the first batch that met the open circuit went elsewhere; later batches
    # were routed around beta before any call
    assert rep["engine"]["teachers"]["beta"]["rerouted"] >= 1
    outcomes = [
        json.loads(x) for x in (tmp_path / "run" / "outcomes.jsonl").read_text().split("\n") if x
    ]
    assert all(len(o["candidates"]) == 1 for o in outcomes[6:])


@pytest.mark.parametrize("router", ["learned", "bandit"])
def test_learning_routers_never_route_to_an_open_circuit(tmp_path, stub, router):
    stub.set_handler("beta", lambda m: Reply("boom", status=503))
    params = {"warmup": 6} if router == "learned" else {"max_generations_per_prompt": 2.0}
    config = write_stub_run(
        tmp_path,
        stub.url,
        router={"name": router, "params": params},
        breaker={"failures": 2, "cooldown_s": 600},
        windows=1,  # one window in flight: what "the first batch" below means
    )
    assert main(["run", str(config)]) == 0
    lines = (tmp_path / "run" / "outcomes.jsonl").read_text().splitlines()
    outcomes = [json.loads(x) for x in lines]
    later = outcomes[6:]  # batches routed after the circuit opened in the first one
    assert later and all(
        c["generation"]["teacher"] == "alpha" for o in later for c in o["candidates"]
    )
    assert len(teacher_requests(stub, "beta")) <= 6 * 3
    assert report(tmp_path)["engine"]["teachers"]["beta"]["rerouted"] <= 6


def test_a_route_to_an_open_teacher_goes_to_the_next_one(tmp_path, stub):
    stub.set_handler("beta", lambda m: Reply("boom", status=503))
    fixed = {"name": "fixed", "params": {"default": "beta"}}
    config = write_stub_run(
        tmp_path, stub.url, router=fixed, breaker={"failures": 2, "cooldown_s": 600}
    )
    assert main(["run", str(config)]) == 0
    rows = [json.loads(x) for x in (tmp_path / "run" / "mixture.jsonl").read_text().splitlines()]
    assert len(rows) >= 18 and {r["teacher"] for r in rows} == {"alpha"}


def test_every_teacher_down_stops_with_one_line_and_keeps_work(tmp_path, stub, capsys):
    calls = []

    def dies_later(messages):
        calls.append(1)
        return "fine" if len(calls) <= 12 else Reply("boom", status=500)

    stub.set_handler("alpha", dies_later)
    stub.set_handler("beta", dies_later)
    # one window in flight: what "the first batch" below means
    config = write_stub_run(
        tmp_path, stub.url, breaker={"failures": 2, "cooldown_s": 600}, windows=1
    )
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith("arbitrage: error: every teacher is out of rotation")
    )
    outcomes = (tmp_path / "run" / "outcomes.jsonl").read_text().splitlines()
    assert len(outcomes) == 6  # the first batch, finished before both went down


# --- cost and budget ---------------------------------------------------------------------


def test_price_overrides_set_the_cost(stub):
    stub.set_handler("t", lambda m: "one two three four")
    t = teacher(stub.url, input_cost_per_mtok=1_000_000, output_cost_per_mtok=2_000_000)
    gen = asyncio.run(t.agenerate(PROMPTS[0]))  # 2 prompt words, 4 completion words
    assert gen.cost_usd == pytest.approx(2 * 1.0 + 4 * 2.0)


def test_budget_stops_before_it_is_crossed_and_keeps_finished_work(tmp_path, stub, capsys):
    priced = stub_config(str(tmp_path / "run"), stub.url, batch_size=6, budget_usd=0.05)
    for t in priced["teachers"]:
        t.update(max_tokens=100, input_cost_per_mtok=10.0, output_cost_per_mtok=30.0)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(priced))
    assert main(["run", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err
    assert "budget_usd 0.05 reached" in err and "rerun" in err
    outcomes = [
        json.loads(x) for x in (tmp_path / "run" / "outcomes.jsonl").read_text().splitlines()
    ]
    spent = sum(c["generation"]["cost_usd"] for o in outcomes for c in o["candidates"])
    assert 0 < len(outcomes) < 24 and spent <= 0.05
    # a bigger budget resumes the same run (the budget is not part of the config hash)
    priced["budget_usd"] = 10.0
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(priced))
    assert main(["run", str(tmp_path / "c.yaml")]) == 0
    assert len((tmp_path / "run" / "outcomes.jsonl").read_text().splitlines()) == 24


def test_the_budget_covers_the_run_directory_across_reruns(tmp_path, stub, capsys):
    """Issue 13.1: each rerun used to start its spend at 0; three runs of a $0.05 budget
    spent $0.10. What the run directory's cache already paid counts."""
    priced = stub_config(str(tmp_path / "run"), stub.url, batch_size=6, budget_usd=0.05)
    for t in priced["teachers"]:
        t.update(max_tokens=100, input_cost_per_mtok=10.0, output_cost_per_mtok=30.0)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(priced))
    for _ in range(3):
        assert main(["run", str(tmp_path / "c.yaml")]) == 2
    assert "budget_usd 0.05 reached" in capsys.readouterr().err
    from arbitrage.calls.cache import CallCache

    cache = CallCache(tmp_path / "run" / "cache.sqlite")
    assert 0 < cache.paid_usd() <= 0.05
    cache.close()


def test_estimate_prints_a_table_without_calling_anyone(tmp_path, stub, capsys):
    config = stub_config(str(tmp_path / "run"), stub.url, router={"name": "reward"})
    for t in config["teachers"]:
        t.update(max_tokens=100, input_cost_per_mtok=1.0, output_cost_per_mtok=2.0)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["estimate", str(tmp_path / "c.yaml"), "--n-prompts", "1000"]) == 0
    out = capsys.readouterr().out
    assert stub.requests == [] and not (tmp_path / "run").exists()
    # 1000 calls per teacher: 60k input tokens at $1/M + 100k output tokens at $2/M = $0.26
    assert out.count("1,000") >= 2 and "0.2600" in out and "0.5200" in out


def test_judge_calls_count_against_the_budget(tmp_path, stub, capsys):
    """Free teachers, a priced judge: the judge alone reaches the budget, and what it
    was billed (the stub's token counts at the configured price) never crosses it."""
    config = stub_config(str(tmp_path / "run"), stub.url, batch_size=6, budget_usd=0.2)
    config["reward"]["params"] = {
        "input_cost_per_mtok": 100.0,
        "output_cost_per_mtok": 100.0,
        "max_tokens": 50,
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err
    assert "budget_usd 0.2 reached" in err and "'judge'" in err
    judged = [r for r in stub.requests if r["model"] == "judge"]
    words = sum(len(m["content"].split()) for r in judged for m in r["messages"])
    billed = (words + 3 * len(judged)) * 100.0 / 1e6  # the stub's usage: words in and out
    assert 0 < len(judged) < 48 and billed <= 0.2
    outcomes = (tmp_path / "run" / "outcomes.jsonl").read_text().splitlines()
    assert len(outcomes) < 24
