"""Batch mode against a loopback server of the OpenAI and Anthropic batch APIs
(``tests/batch_server.py``): real sockets, our real batch client, the real run."""

import asyncio
import json

import pytest
import yaml
from batch_server import BatchServer
from stub_server import arbitrage_run, stub_config, wait_while_running

from arbitrage.commands.cli import main

KEY = "sk-batch-test-1234567890"


@pytest.fixture
def server():
    srv = BatchServer()
    yield srv
    srv.close()


def batch_config(out, url, *, mode="batch", api=None, judge=False, **batch):
    config = stub_config(str(out), url, batch_size=2, windows=3)
    config["pool"]["n_prompts"] = 12
    config["reward"] = {"kind": "local", "language": {"mode": "off"}}
    if judge:  # the stub's judge, in the teachers' mode
        config["reward"].update(kind="judge", model="openai/judge", api_base=url)
        config["reward"].update(api_key_env="STUB_KEY", mode=mode)
    for part in [*config["teachers"], *([config["reward"]] if judge else [])]:
        part["mode"] = mode
        if api:
            part["batch_api"] = api
    config["batch"] = {"poll_s": 0.01, "max_poll_s": 0.05, "linger_s": 0.05, **batch}
    return config


def run(tmp_path, config, name="c.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return main(["run", str(path)])


def mixture(out):
    return (out / "mixture.jsonl").read_text().splitlines()


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_batch_run_writes_the_online_mixture(tmp_path, server, monkeypatch, api):
    monkeypatch.setenv("STUB_KEY", KEY)
    server.set_handler("judge", lambda m: "Score: 8" if "from alpha" in str(m) else "Score: 5")
    online = batch_config(tmp_path / "online", server.url, mode="online", judge=True)
    assert run(tmp_path, online, "o.yaml") == 0
    online_calls = len(server.requests)
    assert online_calls == 48 and not server.made  # 24 answers, 24 judgements
    assert run(tmp_path, batch_config(tmp_path / "batch", server.url, api=api, judge=True)) == 0
    assert len(server.requests) == online_calls * 2  # answered from the batches
    assert mixture(tmp_path / "batch") == mixture(tmp_path / "online")
    ids = [rid for _, ids in server.made for rid in ids]
    assert len(ids) == 48 and len(set(ids)) == 48  # each call in one batch, once
    # the first round (3 windows of 2 prompts) went out together: a job per teacher,
    # then its 12 answers in one job to the judge
    assert [len(ids) for _, ids in server.made[:3]] == [6, 6, 12]
    winners = {json.loads(x)["teacher"] for x in mixture(tmp_path / "batch")}
    assert winners == {"alpha"}  # the judge's batch scored them: alpha's 8 beats beta's 5
    assert set(server.paid.values()) == {1}
    report = json.loads((tmp_path / "batch" / "report.json").read_text())
    assert report["batch"]["jobs"] == len(server.made)
    assert report["batch"]["resubmitted"] == 0
    journal = (tmp_path / "batch" / "batches.jsonl").read_text()
    assert KEY not in journal and KEY not in json.dumps(report)
    assert server.keys == {KEY}  # the key went in the header, every time
    assert "`openai/alpha` (batch API)" in (tmp_path / "batch" / "README.md").read_text()
    assert report["engine"]["teachers"]["alpha"]["requests"] == 12


def sender(server, tmp_path, api="openai", prices=None, **settings):
    """A teacher's client over a batch send step, as ``engine_teachers`` builds it."""
    from arbitrage.calls.batch import BatchJournal, batch_sender
    from arbitrage.config import TeacherConfig, parse_config

    teacher = TeacherConfig(
        name="alpha",
        model="openai/alpha",
        api_base=server.url,
        api_key_env="STUB_KEY",
        mode="batch",
        batch_api=api,
        **(prices or {}),
    )
    config = parse_config(
        {
            "out": str(tmp_path),
            "teachers": [teacher.model_dump()],
            "batch": {"poll_s": 0.01, "max_poll_s": 0.02, "linger_s": 0.02, **settings},
        }
    )
    from arbitrage.calls.teachers import Teacher

    journal = BatchJournal(tmp_path / "batches.jsonl")
    return Teacher(config.teachers[0], batch=batch_sender(config.teachers[0], config, journal))


def ask(teacher, n):
    return asyncio.run(_ask(teacher, n))


async def _ask(teacher, n):
    try:
        return await asyncio.gather(
            *(
                teacher.acomplete([{"role": "user", "content": f"question {i}"}], prompt_id=str(i))
                for i in range(n)
            )
        )
    finally:
        await teacher.aclose()


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_an_expired_batch_resubmits_only_what_it_did_not_answer(tmp_path, server, monkeypatch, api):
    monkeypatch.setenv("STUB_KEY", KEY)
    server.plan[0] = "expired:3"
    gens = ask(sender(server, tmp_path, api), 5)
    assert [g.error for g in gens] == [""] * 5
    assert all(g.text.startswith("Answer from alpha: question") for g in gens)
    (_, ids0), (_, ids1) = server.made
    assert len(ids0) == 5 and len(ids1) == 2 and set(ids1) < set(ids0)
    assert set(server.paid.values()) == {1} and len(server.paid) == 5  # none paid twice


@pytest.mark.parametrize("plan", ["cancelled:1", "expired:0"])
def test_requests_no_batch_answers_fail_after_resubmits(tmp_path, server, monkeypatch, plan):
    monkeypatch.setenv("STUB_KEY", KEY)
    server.plan = {0: plan, 1: plan, 2: plan}
    gens = ask(sender(server, tmp_path, resubmits=1), 3)
    answered = [g for g in gens if not g.error]
    assert len(answered) == {"cancelled:1": 2, "expired:0": 0}[plan]  # K answered a batch
    assert len(server.made) == 2  # the first try and one resubmit
    for g in gens:
        if g.error:
            assert "no batch answered it" in g.error and "2 tries" in g.error


def test_a_failed_batch_fails_its_calls_with_the_reason(tmp_path, server, monkeypatch):
    monkeypatch.setenv("STUB_KEY", KEY)
    server.plan[0] = "failed"
    gens = ask(sender(server, tmp_path), 2)
    assert all("failed: validation failed" in g.error for g in gens)
    assert len(server.made) == 1 and not server.paid


# litellm's first call in a process imports a provider module that warns (pydantic)
@pytest.mark.filterwarnings("ignore:Item.*ReadOnly:UserWarning")
@pytest.mark.parametrize("on_deadline", ["online", "fail"])
def test_past_the_deadline_a_batch_is_cancelled(tmp_path, server, monkeypatch, on_deadline):
    monkeypatch.setenv("STUB_KEY", KEY)
    server.hold.set()
    teacher = sender(server, tmp_path, deadline_s=0.3, on_deadline=on_deadline)
    gens = ask(teacher, 2)
    ((batch_id, _),) = server.made
    assert server.batches[batch_id].cancelling
    if on_deadline == "online":
        assert [g.error for g in gens] == ["", ""] and len(server.requests) == 2
        assert teacher.stats.cost_usd == 0.0  # priced at the (unknown: 0) online price
    else:
        assert all("not ended within deadline_s (0.3)" in g.error for g in gens)
        assert not server.requests


def test_split_to_the_providers_limits(tmp_path, server, monkeypatch):
    monkeypatch.setenv("STUB_KEY", KEY)
    gens = ask(sender(server, tmp_path, max_requests=2), 5)
    assert not any(g.error for g in gens)
    assert sorted(len(ids) for _, ids in server.made) == [1, 2, 2]


def test_sigkill_with_batches_in_flight_resubmits_none(tmp_path, server, monkeypatch):

    monkeypatch.setenv("STUB_KEY", KEY)
    server.hold.set()  # the first round's batches stay in progress
    server.set_handler("judge", lambda m: "Score: 7")
    # the stub's judge, in batches too (not the bundled local judge, ~60 s on 2 cores)
    config = batch_config(tmp_path / "run", server.url, judge=True)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))

    def in_progress() -> bool:
        return len(server.made) == 2 and server.retrieves >= 4

    with arbitrage_run(tmp_path / "c.yaml", tmp_path) as proc:  # SIGKILLed at the block's end
        wait_while_running(proc, in_progress, 240)
        assert in_progress()
    assert not server.paid and not (tmp_path / "run" / "mixture.jsonl").exists()
    before = list(server.made)
    server.hold.clear()

    assert main(["run", str(tmp_path / "c.yaml")]) == 0
    assert server.made[:2] == before  # re-attached to both, submitted neither again
    ids = [rid for _, ids in server.made for rid in ids]
    assert len(ids) == len(set(ids)) == 48  # 24 answers, 24 judgements: none in two batches
    assert len(server.paid) == 48 and set(server.paid.values()) == {1}  # none paid twice
    assert len(mixture(tmp_path / "run")) == 12
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["batch"]["resubmitted"] == 0


def test_a_new_process_re_attaches_to_the_journal_s_batches(tmp_path, server, monkeypatch):
    monkeypatch.setenv("STUB_KEY", KEY)
    server.hold.set()

    async def interrupted():
        teacher = sender(server, tmp_path)
        calls = asyncio.ensure_future(_ask(teacher, 3))
        while server.retrieves < 2:
            await asyncio.sleep(0.01)
        calls.cancel()  # what a kill leaves: a submitted batch, nothing answered
        await asyncio.gather(calls, return_exceptions=True)
        await teacher.aclose()

    asyncio.run(interrupted())
    assert len(server.made) == 1 and not server.paid
    server.hold.clear()
    gens = ask(sender(server, tmp_path), 3)
    assert [g.error for g in gens] == [""] * 3
    assert len(server.made) == 1 and set(server.paid.values()) == {1}


def test_estimate_shows_online_and_batch_prices():
    from arbitrage.commands.estimate import estimate
    from arbitrage.config import parse_config

    config = parse_config(
        {
            "pool": {"n_prompts": 100},
            "teachers": [
                {"name": "mini", "model": "openai/gpt-4o-mini", "mode": "batch"},
                {
                    "name": "own",
                    "model": "openai/x",
                    "input_cost_per_mtok": 2.0,
                    "output_cost_per_mtok": 8.0,
                },
            ],
            "router": {"name": "reward"},
            "batch": {"discount": 0.4},
        }
    )
    mini, own = estimate(config)
    # litellm's price map has gpt-4o-mini's batch prices: half; an override: the discount
    assert mini["usd_batch"] == pytest.approx(mini["usd"] / 2)
    assert own["usd_batch"] == pytest.approx(own["usd"] * 0.4)
    assert (mini["usd_run"], own["usd_run"]) == (mini["usd_batch"], own["usd"])


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"teachers": [{"name": "a", "model": "local/smollm2-135m-instruct", "mode": "batch"}]},
            "mode: batch needs a provider's batch API",
        ),
        ({"batch": {"round_prompt": 5}}, "round_prompts"),
        ({"batch": {"on_deadline": "retry"}}, "on_deadline"),
        ({"batch": {"poll_s": 0}}, "poll_s"),
        (
            {"engine": "ray", "teachers": [{"name": "a", "model": "openai/a", "mode": "batch"}]},
            "engine: local",
        ),
    ],
)
def test_bad_batch_config_is_one_clear_line(tmp_path, capsys, change, message):
    config = {"out": str(tmp_path / "o"), "teachers": [{"name": "a", "model": "openai/a"}]}
    config.update(change)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_the_live_panel_shows_each_job_s_state(tmp_path):
    from rich.console import Console

    from arbitrage.calls.batch import BatchJournal
    from arbitrage.calls.teachers import Teacher
    from arbitrage.commands.live import TeacherPanel

    journal = BatchJournal(tmp_path / "batches.jsonl")
    journal.write("submit", "j1", teacher="alpha", ids=["a", "b"], ref="file-1")
    journal.write("created", "j1", batch="batch_abc")
    journal.jobs["j1"].status = "finalizing"
    panel = TeacherPanel()
    panel.attach([Teacher.from_model("alpha", "openai/alpha")], journal)
    console = Console(width=100, record=True)
    console.print(panel)
    text = console.export_text()
    assert "batch_abc" in text and "finalizing" in text
    again = BatchJournal(tmp_path / "batches.jsonl")  # what a rerun reads back
    assert again.where == {"a": "j1", "b": "j1"} and again.jobs["j1"].batch_id == "batch_abc"


@pytest.mark.parametrize("on_deadline", ["", "online"])
@pytest.mark.filterwarnings("ignore:Item.*ReadOnly:UserWarning")
def test_batch_calls_are_priced_and_reserved_at_batch_prices(
    tmp_path, server, monkeypatch, on_deadline
):
    from arbitrage.calls.teachers import Teacher

    monkeypatch.setenv("STUB_KEY", KEY)
    prices = {"input_cost_per_mtok": 2.0, "output_cost_per_mtok": 8.0}
    settings = {"discount": 0.5}
    if on_deadline:  # held past the deadline: online, at online prices
        server.hold.set()
        settings.update(deadline_s=0.2, on_deadline=on_deadline)
    teacher = sender(server, tmp_path, prices=prices, **settings)
    online = Teacher.from_model("alpha", "openai/alpha", **prices)
    messages = [{"role": "user", "content": "question 0"}]
    assert teacher.worst_case_usd(messages) == pytest.approx(online.worst_case_usd(messages) / 2)
    (gen,) = ask(teacher, 1)
    usd = (gen.usage.prompt_tokens * 2.0 + gen.usage.completion_tokens * 8.0) / 1e6
    assert gen.cost_usd == pytest.approx(usd if on_deadline else usd / 2) and usd > 0


def test_batch_mode_keeps_the_config_hash(tmp_path):
    from arbitrage.config import parse_config
    from arbitrage.rundir import config_hash

    online = batch_config(tmp_path, "http://127.0.0.1:1/v1", mode="online", judge=True)
    batch = batch_config(tmp_path, "http://127.0.0.1:1/v1", api="anthropic", judge=True)
    batch["batch"]["deadline_s"] = 60
    # the same answers either way: an online run resumes in batch mode and back
    assert config_hash(parse_config(online)) == config_hash(parse_config(batch))


def test_a_refused_key_stops_the_run_without_quoting_it(tmp_path, server, monkeypatch):
    from arbitrage.errors import CallRejected

    monkeypatch.setenv("STUB_KEY", KEY)
    server.refuse.add(KEY)
    with pytest.raises(CallRejected) as err:
        ask(sender(server, tmp_path), 2)
    assert "API key was refused" in str(err.value) and "HTTP 401" in str(err.value)
    assert KEY not in str(err.value) and not server.made


def test_a_rerun_asks_again_what_an_earlier_batch_failed(tmp_path, server, monkeypatch):
    monkeypatch.setenv("STUB_KEY", KEY)
    server.plan[0] = "failed"
    assert all(g.error for g in ask(sender(server, tmp_path), 2))
    gens = ask(sender(server, tmp_path), 2)  # a new process: as a rerun of online calls
    assert [g.error for g in gens] == ["", ""] and len(server.made) == 2
