"""``engine: ray`` on a local Ray instance (num_cpus=2): same mixture as one process, a
killed worker loses and repeats no paid call, limits hold across workers.

Teachers and judge are the stub server in this process; the Ray workers reach it over
127.0.0.1, as they would reach a provider.
"""

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import yaml
from stub_server import stub_config

from arbitrage.commands.cli import main
from arbitrage.config import parse_config
from arbitrage.errors import ConfigError

SECRET = "sk-ray-secret-0123456789"

# One Ray instance (the module's), on one worker under pytest-xdist's --dist loadgroup.
pytestmark = pytest.mark.xdist_group("ray")


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    temp = tempfile.mkdtemp(prefix="arb-ray-test-")

    def no_backoff():  # conftest's _no_backoff, in each worker process
        import tenacity

        from arbitrage.calls import client

        client.BACKOFF = tenacity.wait_none()

    ray.init(
        num_cpus=2,
        _temp_dir=temp,
        include_dashboard=False,
        configure_logging=False,
        runtime_env={"worker_process_setup_hook": no_backoff},
    )
    yield ray
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def stub(stub_server, monkeypatch):
    monkeypatch.setenv("STUB_KEY", SECRET)
    return stub_server


def judge(messages):
    """Alpha is the better teacher in French, beta in English."""
    text = messages[-1]["content"]
    lang = re.search(r"The user's language: (\w+)", text).group(1)
    good = "ALPHA" if lang == "fr" else "BETA"
    return "Good.\nScore: 9" if good in text.split("[Answer]")[1] else "Weak.\nScore: 3"


def write(tmp_path: Path, name: str, url: str, *teachers: tuple[str, ...], **overrides) -> Path:
    config = stub_config(str(tmp_path / name), url, *teachers, **overrides)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def lines(run: Path, name: str) -> list[str]:
    return (run / name).read_text().splitlines()


def routes(run: Path) -> list[tuple[str, str, list[str]]]:
    """Per prompt, in order: why it was routed where, and who answered."""
    outcomes = map(json.loads, lines(run, "outcomes.jsonl"))
    return [
        (o["prompt"]["id"], o["routed_by"], [c["generation"]["teacher"] for c in o["candidates"]])
        for o in outcomes
    ]


def teacher_keys(stub) -> list[tuple[str, str]]:
    return [
        (r["model"], r["messages"][-1]["content"])
        for r in stub.requests
        if r["model"] in ("alpha", "beta")
    ]


def test_ray_run_makes_the_mixture_a_single_process_run_makes(tmp_path, stub, ray_instance, capsys):
    stub.set_handler("alpha", lambda m: "ALPHA answers: " + m[-1]["content"][:40])
    stub.set_handler("beta", lambda m: "BETA answers: " + m[-1]["content"][:40])
    stub.set_handler("judge", judge)
    rows = [
        {"text": f"Question {i}: explain idea number {i} with an example.", "task": "open_qa"}
        | {"language": ("en", "fr")[i % 2]}
        for i in range(20)
    ]
    rows = rows[:10] + rows[:2] + rows[10:] + rows[2:4]  # a pool may repeat a prompt
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pool = {"prompts": str(tmp_path / "prompts.jsonl"), "n_prompts": 24}
    # explore > 0: the routes depend on the router's random draws, batch after batch
    router = {"name": "learned", "params": {"warmup": 6, "explore": 0.3}}
    held = "pool: 24 prompts × 2 languages (en, fr) × 1 task (open_qa)"
    for name in ("local", "ray"):
        config = write(tmp_path, name, stub.url, batch_size=5, pool=pool, router=router)
        assert main(["run", str(config), "--engine", name]) == 0
        assert f"{held}, from {tmp_path / 'prompts.jsonl'}" in capsys.readouterr().err

    local, ray = tmp_path / "local", tmp_path / "ray"
    assert lines(ray, "mixture.jsonl") == lines(local, "mixture.jsonl")
    assert len(lines(ray, "mixture.jsonl")) == 20
    assert len(routes(ray)) == 24 and routes(ray) == routes(local)
    assert {why for _, why, _ in routes(ray)} == {"warmup", "explore", "exploit"}
    engine = json.loads((ray / "report.json").read_text())["engine"]
    assert engine["ray"]["workers"] == 2 and engine["ray"]["restarts"] == 0
    assert all(n > 0 for ns in engine["ray"]["requests_per_worker"].values() for n in ns)
    sent = sum(t["requests"] for t in engine["teachers"].values())
    assert sent == len(teacher_keys(stub)) // 2  # each run sent the same calls once
    for path in ray.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert main(["run", str(config), "--engine", "ray"]) == 0  # done already: nothing to ask
    assert f"{held}, resumed from {ray / 'prompts.jsonl'}" in capsys.readouterr().err


def _cached_keys(cache: Path, texts: dict[str, str]) -> set[tuple[str, str]]:
    with sqlite3.connect(cache) as db:
        rows = db.execute("SELECT generation FROM calls WHERE teacher != 'judge'").fetchall()
    gens = [json.loads(r[0]) for r in rows]
    return {(g["teacher"], texts[g["prompt_id"]]) for g in gens}


def test_a_worker_killed_mid_run_loses_and_repeats_no_paid_call(tmp_path, stub, ray_instance):
    from arbitrage.commands.run import arun_config
    from arbitrage.executors.ray.session import NAMESPACE

    lock = threading.Lock()
    received: list[tuple[str, str]] = []
    answered: list[tuple[str, str]] = []

    def slow(name):
        def answer(messages):
            key = (name, messages[-1]["content"])
            with lock:
                received.append(key)
            time.sleep(0.3)
            with lock:
                answered.append(key)
            return f"{name.upper()} answers: " + messages[-1]["content"][:30]

        return answer

    stub.set_handler("alpha", slow("alpha"))
    stub.set_handler("beta", slow("beta"))
    stub.set_handler("judge", judge)
    data = stub_config(str(tmp_path / "run"), stub.url, batch_size=8, engine="ray")
    data["teachers"] = [dict(t, max_concurrency=4) for t in data["teachers"]]
    config = parse_config(data)
    run = tmp_path / "run"

    async def kill_one_worker_mid_run():
        task = asyncio.ensure_future(arun_config(config))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not task.done():
            with lock:
                if len(answered) >= 12 and len(received) - len(answered) >= 2:
                    break  # some calls came back, some are at the stub
            await asyncio.sleep(0.01)
        assert not task.done() and len(answered) >= 12
        names = ray_instance.util.list_named_actors(all_namespaces=True)
        name = next(a["name"] for a in names if a["name"].endswith("-generate-0"))
        worker = ray_instance.get_actor(name, namespace=NAMESPACE)
        pid = (await worker.stats.remote())["pid"]
        texts = {p["id"]: p["text"] for p in map(json.loads, lines(run, "prompts.jsonl"))}
        paid = _cached_keys(run / "cache.sqlite", texts)  # returned: must never be paid again
        with lock:
            before = len(received)
        os.kill(pid, signal.SIGKILL)
        await task
        return paid, before

    paid, before = asyncio.run(kill_one_worker_mid_run())
    assert 0 < len(paid) < 48  # killed mid-run
    assert not paid & set(received[before:])  # no call that came back was paid for twice
    assert len(set(received)) == 48  # none lost: every call was made
    # Sent again: only calls that had not come back, which hold a slot of the gate's
    # max_concurrency (4 per teacher, across workers), and each at most once more.
    repeats = len(received) - 48
    assert repeats <= 8 and all(received.count(k) <= 2 for k in set(received))

    outcomes = [json.loads(x) for x in lines(run, "outcomes.jsonl")]
    assert len({o["prompt"]["id"] for o in outcomes}) == len(outcomes) == 24
    assert all(c["generation"]["text"] for o in outcomes for c in o["candidates"])
    assert json.loads((run / "report.json").read_text())["engine"]["ray"]["restarts"] == 1

    for name in ("alpha", "beta"):  # the same answers, at once: nothing is killed now
        stub.set_handler(name, lambda m, n=name: f"{n.upper()} answers: " + m[-1]["content"][:30])
    local = write(tmp_path, "local", stub.url, batch_size=8)
    assert main(["run", str(local)]) == 0
    assert lines(run, "mixture.jsonl") == lines(tmp_path / "local", "mixture.jsonl")


def test_limits_and_retry_after_hold_across_workers(tmp_path, stub, ray_instance):
    """One run, a limit per teacher: alpha's concurrency, beta's rate, gamma's pause."""
    from stub_server import Reply, Scripted

    lock = threading.Lock()
    state = {"now": 0, "peak": 0}
    beta_times: list[float] = []

    def alpha(messages):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.15)
        with lock:
            state["now"] -= 1
        return "ALPHA answers"

    def beta(messages):
        with lock:
            beta_times.append(time.monotonic())
        return "BETA answers"

    # gamma's third request: slow down, for 2 s
    gamma = Scripted(
        {3: Reply("slow down", status=429, headers={"Retry-After": "2"})},
        lambda m: "GAMMA answers: " + m[-1]["content"],
    )
    stub.set_handler("alpha", alpha)
    stub.set_handler("beta", beta)
    stub.set_handler("gamma", gamma)
    stub.set_handler("judge", judge)
    data = stub_config(str(tmp_path / "run"), stub.url, ("alpha", "beta", "gamma"), batch_size=24)
    data["teachers"][0]["max_concurrency"] = 2
    data["teachers"][1].update(max_concurrency=16, requests_per_minute=300)  # 5 a second
    data["teachers"][2]["max_concurrency"] = 1  # one gamma call at a time across both workers
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    assert main(["run", str(tmp_path / "c.yaml"), "--engine", "ray"]) == 0

    assert len(lines(tmp_path / "run", "mixture.jsonl")) == 24
    engine = json.loads((tmp_path / "run" / "report.json").read_text())["engine"]
    per_worker = engine["ray"]["requests_per_worker"]
    assert len(per_worker["alpha"]) == 2 and min(per_worker["alpha"] + per_worker["beta"]) > 0
    assert state["peak"] == 2  # not 2 per worker
    assert len(beta_times) == 24
    # One limiter: a bucket of 5, then 5 a second, so 24 calls span (24 - 5) / 5 = 3.8 s.
    # A limiter per worker would let both buckets and rates through: (24 - 10) / 10 = 1.4 s.
    # (A lower bound: a slow machine only stretches it; the slack is a first call's warm-up.)
    assert max(beta_times) - min(beta_times) >= 2.5
    throttled = gamma.times[2]
    after = [t - throttled for t in gamma.times[3:]]
    assert after and min(after) >= 1.9  # no worker sent gamma anything during the pause


def test_the_budget_holds_across_workers(tmp_path, stub, ray_instance, capsys):
    stub.set_handler("alpha", lambda m: "ALPHA answers")  # 2 output tokens
    stub.set_handler("beta", lambda m: "BETA answers")
    stub.set_handler("judge", judge)
    data = stub_config(str(tmp_path / "run"), stub.url, batch_size=24, budget_usd=3.1)
    for t in data["teachers"]:  # a call reserves (and costs) 2 output tokens at $0.10
        t.update(max_tokens=2, input_cost_per_mtok=0, output_cost_per_mtok=100_000)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    assert main(["run", str(tmp_path / "c.yaml"), "--engine", "ray"]) == 2
    assert "budget_usd 3.1 reached" in capsys.readouterr().err
    # $3.10 buys 15 calls; a budget per worker would have let 30 through
    assert 0 < len(teacher_keys(stub)) <= 15


def test_a_dead_teacher_is_circuit_broken_across_workers(tmp_path, stub, ray_instance):
    from stub_server import Reply

    stub.set_handler("alpha", lambda m: "ALPHA answers: " + m[-1]["content"])
    stub.set_handler("beta", lambda m: Reply("down", status=503))
    stub.set_handler("judge", judge)
    config = write(
        tmp_path,
        "run",
        stub.url,
        batch_size=6,
        breaker={"failures": 3, "cooldown_s": 600},
        windows=1,  # one window in flight: what "the first batch" below means
    )
    assert main(["run", str(config), "--engine", "ray"]) == 0
    rows = lines(tmp_path / "run", "mixture.jsonl")
    assert len(rows) == 24 and {json.loads(r)["teacher"] for r in rows} == {"alpha"}
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert ("beta", "open") in [(e["teacher"], e["state"]) for e in report["breaker"]]
    # one breaker for the run, not one per worker: after it opened in the first batch,
    # later batches were routed around beta before any call
    later = routes(tmp_path / "run")[6:]
    assert later and all(teachers == ["alpha"] for _, _, teachers in later)
    beta_calls = [k for k in teacher_keys(stub) if k[0] == "beta"]
    assert len(beta_calls) <= 6 * 3  # the first batch, with its retries


def test_engine_ray_without_ray_installed_is_one_clear_line(tmp_path, stub, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    config = write(tmp_path, "run", stub.url)
    assert main(["run", str(config), "--engine", "ray"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "arbitrage: error: engine: ray needs Ray, which is not installed: "
        "pip install 'data-arbitrage[ray]'"
    )
    assert stub.requests == []


def test_the_engine_is_not_part_of_the_run_so_a_run_moves_between_engines():
    from arbitrage.rundir import config_hash

    local = parse_config(stub_config("out", "http://127.0.0.1:1/v1"))
    on_ray = parse_config(
        stub_config(
            "out", "http://127.0.0.1:1/v1", engine="ray", ray_address="auto", ray={"workers": 8}
        )
    )
    assert config_hash(on_ray) == config_hash(local)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"engine": "spark"}, "bad value for 'engine'"),
        ({"ray": {"workers": 0}}, "bad value for 'ray.workers'"),
        ({"ray": {"worker": 2}}, "unknown config key 'ray.worker' (did you mean 'workers'?)"),
        ({"ray": {"reward_gpus": -1}}, "bad value for 'ray.reward_gpus'"),
    ],
)
def test_bad_ray_config_names_the_key(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(stub_config("out", "http://127.0.0.1:1/v1", **override))


def test_an_unreachable_ray_address_fails_fast_with_one_line():
    from arbitrage.errors import ClusterError
    from arbitrage.executors.ray.session import check_reachable

    with socket_on_free_port() as port:
        pass  # the port is free again: nothing listens there
    with pytest.raises(ClusterError, match=f"ray_address '127.0.0.1:{port}': nothing answers"):
        check_reachable(f"127.0.0.1:{port}")
    with pytest.raises(ClusterError, match="nothing answers"):
        check_reachable(f"ray://127.0.0.1:{port}")
    check_reachable("auto")  # no port: left to Ray


@contextlib.contextmanager
def socket_on_free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def pairwise(messages):
    """Prefers the teacher ``judge`` prefers, whichever position it is shown in."""
    text = messages[-1]["content"]
    lang = re.search(r"The user's language: (\w+)", text).group(1)
    good = "ALPHA" if lang == "fr" else "BETA"
    first = text.split("[Answer A]")[1].split("[End of answer A]")[0]
    second = text.split("[Answer B]")[1].split("[End of answer B]")[0]
    return "Verdict: A" if good in first else "Verdict: B" if good in second else "Verdict: tie"


def test_reward_state_lives_on_the_driver_so_workers_do_not_change_scores(
    tmp_path, stub, ray_instance
):
    stub.set_handler(
        "alpha", lambda m: "ALPHA answers: " + m[-1]["content"][: len(m[-1]["content"]) % 50]
    )
    stub.set_handler("beta", lambda m: "BETA answers at length: " + m[-1]["content"])
    stub.set_handler("gamma", lambda m: "GAMMA: " + m[-1]["content"][:30])
    stub.set_handler("judge", judge)
    stub.set_handler("pw", pairwise)
    member = {"api_base": stub.url, "api_key_env": "STUB_KEY"}
    reward = {
        "kind": "ensemble",
        "members": [
            {"kind": "judge", "model": "openai/judge", **member},
            {"kind": "pairwise", "model": "openai/pw", "weight": 2.0, **member},
        ],
        "length": {"mode": "regress", "min_samples": 4},
        "normalise": "language",
        "language": {"mode": "off"},
    }
    pool = {"n_prompts": 12, "languages": ["en", "fr"], "tasks": ["open_qa"]}
    for name in ("local", "ray"):
        config = write(
            tmp_path,
            name,
            stub.url,
            ("alpha", "beta", "gamma"),
            batch_size=3,
            pool=pool,
            reward=reward,
            ray={"reward_workers": 2},
        )
        assert main(["run", str(config), "--engine", name]) == 0

    def rewards(run):
        return [
            [(c["generation"]["teacher"], c["reward"]) for c in json.loads(line)["candidates"]]
            for line in lines(run, "outcomes.jsonl")
        ]

    local, ray = rewards(tmp_path / "local"), rewards(tmp_path / "ray")
    assert ray == local
    assert all(reward is not None for row in ray for _, reward in row)
    # 9 answers a batch over 2 workers: cut at 5 they would split a prompt's three answers,
    # and the pairwise judge would score that prompt from part of them.
    details = [
        c["reward_details"]
        for line in lines(tmp_path / "ray", "outcomes.jsonl")
        for c in json.loads(line)["candidates"]
    ]
    assert {d["pairwise.pairwise_comparisons"] for d in details} == {2.0}
    assert lines(tmp_path / "ray", "mixture.jsonl") == lines(tmp_path / "local", "mixture.jsonl")
