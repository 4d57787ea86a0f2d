"""The resume checkpoint (``arbitrage.checkpoint``): a rerun restores what the finished
prompts taught the router and the reward, and replays only what came after it."""

import asyncio
import json
import pickle

import pytest
import yaml
from fakes import FakeTeacher, TextReward
from stub_server import stub_config

from arbitrage import checkpoint
from arbitrage.commands.cli import main
from arbitrage.pipeline import Arbitrage
from arbitrage.records import Prompt, dumps
from arbitrage.rundir import RunDir
from reward.calibrate import LanguageNormalised, LengthControl
from routers import get_router

TEACHERS = ["a", "b", "c"]
PROMPTS = [
    Prompt(
        f"question {i} " + "word " * (i % 7), ["en", "fr"][i % 2], ["math", "open_qa"][i % 3 > 0]
    )
    for i in range(96)
]
PROBE = [Prompt(f"probe {i}", ["en", "fr"][i % 2], "math") for i in range(12)]


def _reward():
    return LanguageNormalised(LengthControl(TextReward(), "regress", min_samples=4))


def _windows(router, reward):
    engine = Arbitrage([FakeTeacher(t) for t in TEACHERS], reward, router, batch_size=8, windows=3)

    async def collect():
        return [w async for w in engine.astream(PROMPTS)]

    return asyncio.run(collect())


def _learned(router, reward):
    """What the router and the reward make of the probe prompts: routes and scores."""
    routes = [r.teachers for r in router.route(PROBE)]
    pairs = [(p, f"{t} {i % 10}.5 " + "x " * i) for i, p in enumerate(PROBE) for t in TEACHERS]
    scores = asyncio.run(reward.ascore_batch(pairs))
    return routes, [round(s.value, 9) for s in scores], router.state()


@pytest.mark.parametrize("name", ["learned", "bandit", "content", "random", "reward"])
def test_a_checkpoint_and_the_rest_replayed_learn_what_a_full_replay_learns(tmp_path, name):
    windows = _windows(get_router(name, TEACHERS, seed=3), _reward())
    outcomes = [o for w in windows for o in w]
    run = RunDir(tmp_path)
    (tmp_path / "prompts.jsonl").write_text("".join(dumps(p) + "\n" for p in PROMPTS))

    # A rerun without a checkpoint: every outcome replayed into fresh objects.
    full_router, full_reward = get_router(name, TEACHERS, seed=3), _reward()
    Arbitrage([FakeTeacher(t) for t in TEACHERS], full_reward, full_router).resume(outcomes)

    # The run: a shadow learns each window as it is appended; saved after window 5.
    shadow = checkpoint.shadow_of(get_router(name, TEACHERS, seed=3), _reward())
    assert shadow is not None
    for i, window in enumerate(windows):
        end = run.append_outcomes(window)
        shadow.learn(window)
        if i == 5:
            checkpoint.save(tmp_path, shadow, offset=end, position=48, ahead=(), finished=48, kept=48,
                            pool=("96 prompts", 96))  # fmt: skip
            saved_at = run.outcomes_path.stat().st_size
    # A rerun with it: the saved state, then only the outcomes after its offset.
    point = checkpoint.load(tmp_path)
    assert point is not None and point.offset == saved_at and point.position == 48
    router = get_router(name, TEACHERS, seed=3)
    reward = checkpoint.restore(point, router, _reward())
    assert reward is not None
    tail = list(run.iter_outcomes(point.offset))
    assert [o.prompt.id for o in tail] == [o.prompt.id for o in outcomes[48:]]
    Arbitrage([FakeTeacher(t) for t in TEACHERS], reward, router).resume(tail)

    assert _learned(router, reward) == _learned(full_router, full_reward)


def test_a_checkpoint_that_does_not_fit_its_outcomes_is_not_used(tmp_path):
    run = RunDir(tmp_path)
    (tmp_path / "prompts.jsonl").write_text("".join(dumps(p) + "\n" for p in PROMPTS))
    windows = _windows(get_router("learned", TEACHERS), _reward())
    shadow = checkpoint.shadow_of(get_router("learned", TEACHERS), _reward())
    for window in windows[:4]:
        end = run.append_outcomes(window)
        shadow.learn(window)
    checkpoint.save(
        tmp_path, shadow, offset=end, position=32, ahead=(), finished=32, kept=32, pool=None
    )
    assert checkpoint.load(tmp_path) is not None
    run.rewrite_outcomes(o for w in windows[:4] for o in w)  # what retry-failed does
    assert not (tmp_path / checkpoint.NAME).exists()
    checkpoint.save(
        tmp_path, shadow, offset=end, position=32, ahead=(), finished=32, kept=32, pool=None
    )
    data = bytearray(run.outcomes_path.read_bytes())  # the same size, other bytes
    data[-10] ^= 1
    run.outcomes_path.write_bytes(bytes(data))
    assert checkpoint.load(tmp_path) is None
    (tmp_path / checkpoint.NAME).write_bytes(b"not a pickle")
    assert checkpoint.load(tmp_path) is None


class _Boom:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned",))


def test_a_checkpoint_builds_no_object_it_does_not_expect(tmp_path, monkeypatch):
    """The file is data: an object naming a function (here ``os.system``) is refused."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outcomes.jsonl").write_text("")
    (tmp_path / checkpoint.NAME).write_bytes(pickle.dumps(_Boom()))
    assert checkpoint.load(tmp_path) is None
    router = get_router("learned", TEACHERS)
    point = checkpoint.Checkpoint(0, b"", 0, frozenset(), 0, 0, None, pickle.dumps(_Boom()),
                                  pickle.dumps(_Boom()))  # fmt: skip
    assert checkpoint.restore(point, router, _reward()) is None
    assert not (tmp_path / "pwned").exists()


def test_a_rerun_resumes_from_the_checkpoint_as_a_full_replay_would(
    tmp_path, stub_server, monkeypatch
):
    """A budget stop saves the checkpoint; the rerun reads only the outcomes after it
    (never every outcome) and ends with the outcomes of a rerun that replays them all."""
    monkeypatch.setenv("STUB_KEY", "sk-checkpoint")
    stub_server.set_handler("alpha", lambda m: "alpha: " + m[-1]["content"])
    stub_server.set_handler("beta", lambda m: "beta says " + m[-1]["content"] * 2)
    stub_server.set_handler("judge", lambda m: f"Score: {1 + len(m[-1]['content']) % 9}")

    def config(name, budget):
        data = stub_config(str(tmp_path / name), stub_server.url, batch_size=4, budget_usd=budget)
        data["router"] = {"name": "learned", "params": {"warmup": 4}}
        data["reward"]["normalise"] = "language"
        for t in data["teachers"]:
            t.update(max_tokens=100, input_cost_per_mtok=10.0, output_cost_per_mtok=30.0)
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data))
        return str(path)

    for name in ("fast", "full"):
        assert main(["run", config(name, 0.05)]) == 2  # stopped by the budget
        assert (tmp_path / name / checkpoint.NAME).exists()
    (tmp_path / "full" / checkpoint.NAME).unlink()
    assert main(["run", config("full", 10.0)]) == 0

    def no_full_read(self):
        raise AssertionError("every outcome was read back")

    monkeypatch.setattr(RunDir, "load_outcomes", no_full_read)
    saved: list[int] = []
    save = checkpoint.save
    monkeypatch.setattr(checkpoint, "INTERVAL_S", 0.0)  # a save after every window

    def counted(*args, **kwargs):
        saved.append(kwargs["offset"])
        save(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "save", counted)
    assert main(["run", config("fast", 10.0)]) == 0
    # a save after each window appended, each further on, the last at the file's end
    assert len(saved) >= 2 and saved == sorted(set(saved))
    assert saved[-1] == (tmp_path / "fast" / "outcomes.jsonl").stat().st_size

    def ids_and_winners(name):
        rows = (tmp_path / name / "outcomes.jsonl").read_text().splitlines()
        return [(json.loads(r)["prompt"]["id"], json.loads(r)["winner"]) for r in rows]

    assert len(ids_and_winners("fast")) == 24
    assert ids_and_winners("fast") == ids_and_winners("full")
    fast, full = (tmp_path / "fast" / "mixture.jsonl"), (tmp_path / "full" / "mixture.jsonl")
    assert fast.read_text() == full.read_text()
