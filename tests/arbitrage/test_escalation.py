"""Escalation: a router asks for a second opinion once the first answers are scored.

Teachers and judges are served by the stub server on 127.0.0.1 (litellm's real code
path); each teacher's answer states the reward it should get ("reward=7"), so every
expected winner, score and generation count is known in advance.
"""

import json
import re
import threading
import time
import zlib
from pathlib import Path

import pytest
import yaml
from stub_server import Reply, arbitrage_run, stub_config, wait_while_running

from arbitrage.calls.teachers import Teacher
from arbitrage.commands.cli import main
from arbitrage.commands.evaluate import replay
from arbitrage.pipeline import Arbitrage
from arbitrage.records import Outcome, Prompt
from reward.base import RewardModel, Score
from routers import ROUTERS, get_router
from routers.base import Route, Router

NAMES = ("a", "b", "c")
#: The reward (1-10) each teacher's answer to "question i" states.
STATED = {
    "a": (9, 2, 8, 3, 2, 7, 4, 6),
    "b": (5, 8, 1, 9, 1, 2, 6, 3),
    "c": (1, 3, 2, 4, 5, 1, 9, 2),
}
LOW = [1, 3, 4, 6]  # a's answer states less than 5: below SecondOpinion's threshold
PROMPTS = [Prompt(text=f"question {i}", language="en", task="open_qa") for i in range(8)]


def index(text: str) -> int:
    return int(re.search(r"question (\d+)", text).group(1))


def stated(answer: str) -> int:
    return int(re.search(r"reward=(\d+)", answer).group(1))


def teacher_answer(name: str):
    def answer(messages):
        i = index(messages[-1]["content"])
        return f"{name} on question {i}: reward={STATED[name][i]}"

    return answer


def judge(messages):
    """A pointwise judge that gives the score the answer states."""
    return f"Score: {stated(messages[-1]['content'].split('[Answer]')[1])}"


def pairwise(messages):
    """A pairwise judge that prefers the answer stating the higher reward, in either order."""
    text = messages[-1]["content"]
    a = stated(text.split("[Answer A]")[1].split("[End of answer A]")[0])
    b = stated(text.split("[Answer B]")[1].split("[End of answer B]")[0])
    return "Verdict: A" if a > b else "Verdict: B" if b > a else "Verdict: tie"


class Stated(RewardModel):
    """Scores an answer by the reward it states, over 10."""

    name = "stated"

    async def ascore(self, prompt, completion):
        return Score(stated(completion) / 10)


class SecondOpinion(Router):
    """Every prompt to ``a``; ``b`` as well where a's answer scored below ``threshold``."""

    name = "second-opinion"

    def __init__(self, teachers, *, seed=0, threshold=0.5):
        super().__init__(teachers, seed=seed)
        self.threshold = threshold
        self.updates: list[Outcome] = []

    def route(self, prompts):
        return [Route(["a"], "first") for _ in prompts]

    def wants_b(self, outcome: Outcome) -> bool:
        first = next((c for c in outcome.candidates if c.teacher == "a"), None)
        return first is None or first.reward is None or first.reward < self.threshold

    def escalate(self, outcomes):
        # asks for b again every round: the base class drops a teacher that answered
        return [Route(["b"] if self.wants_b(o) else []) for o in outcomes]

    def update(self, outcomes):
        self.updates.extend(outcomes)


class OddOnes(SecondOpinion):
    """A second opinion on the odd-numbered questions, whatever the first answer scored."""

    name = "odd-ones"

    def wants_b(self, outcome: Outcome) -> bool:
        return index(outcome.prompt.text) % 2 == 1


@pytest.fixture
def stub(stub_server, monkeypatch):
    monkeypatch.setenv("STUB_KEY", "sk-escalation-test")
    for name in NAMES:
        stub_server.set_handler(name, teacher_answer(name))
    stub_server.set_handler("judge", judge)
    stub_server.set_handler("pw", pairwise)
    return stub_server


def teachers(url: str) -> list[Teacher]:
    return [
        Teacher.from_model(n, f"openai/{n}", api_base=url, api_key_env="STUB_KEY", retries=0)
        for n in NAMES
    ]


def asked(stub, name: str) -> list[str]:
    """The prompts ``name`` was asked, as the stub saw them."""
    return [r["messages"][-1]["content"] for r in stub.requests if r["model"] == name]


def expected_reward(i: int) -> int:
    return max(STATED["a"][i], STATED["b"][i]) if i in LOW else STATED["a"][i]


# --- the pipeline and the offline replay ---------------------------------------------


def test_only_low_scoring_prompts_get_a_second_opinion_and_the_better_answer_wins(stub):
    router = SecondOpinion(NAMES)
    result = Arbitrage(teachers(stub.url), Stated(), router, batch_size=3).run(PROMPTS)
    for i, outcome in enumerate(result.outcomes):
        got = ["a", "b"] if i in LOW else ["a"]
        assert [c.teacher for c in outcome.candidates] == got
        assert outcome.routed_by == ("first+escalate" if i in LOW else "first")
        best = max(got, key=lambda t: STATED[t][i])  # question 4: a (2) beats b (1)
        assert outcome.winner == best
        assert outcome.best.reward == pytest.approx(STATED[best][i] / 10)
    assert len(asked(stub, "a")) == 8
    # b was asked once per low prompt, though the router asked for it in both rounds
    assert sorted(index(p) for p in asked(stub, "b")) == LOW
    assert asked(stub, "c") == []
    # the router learnt from each prompt once, from its final (merged) outcome
    assert router.updates == result.outcomes


def test_offline_replay_gives_the_live_runs_generations_and_reward(stub):
    live = Arbitrage(teachers(stub.url), Stated(), SecondOpinion(NAMES), batch_size=3).run(PROMPTS)
    every = get_router("reward", NAMES)
    full = Arbitrage(teachers(stub.url), Stated(), every, batch_size=3).run(PROMPTS)
    assert all(o.n_generations == 3 for o in full.outcomes)

    offline = SecondOpinion(NAMES)
    rep = replay(offline, full.outcomes, batch_size=3)

    def decisions(outcomes):
        return [
            (o.prompt.id, [c.teacher for c in o.candidates], o.winner, o.routed_by)
            for o in outcomes
        ]

    assert decisions(offline.updates) == decisions(live.outcomes)
    live_generations = sum(o.n_generations for o in live.outcomes) / len(PROMPTS)
    live_reward = sum(o.best.reward for o in live.outcomes) / len(PROMPTS)
    assert rep.generations_per_prompt == pytest.approx(live_generations)
    assert live_generations == (8 + len(LOW)) / 8
    assert rep.mean_reward == pytest.approx(live_reward)
    assert live_reward == pytest.approx(sum(expected_reward(i) for i in range(8)) / 80)


# --- the bandit and content routers through the CLI ----------------------------------

BASE = {"fr": {"ALPHA": 8, "BETA": 4, "GAMMA": 6}, "en": {"ALPHA": 4, "BETA": 8, "GAMMA": 6}}


def cell_judge(messages):
    """Alpha is best in French, beta in English; one prompt in three is hard for the
    favourite (it gets 2), so a second opinion sometimes pays."""
    text = messages[-1]["content"]
    lang = re.search(r"The user's language: (\w+)", text).group(1)
    instruction = text.split("[Instruction]")[1].split("[Answer]")[0]
    teacher = text.split("[Answer]")[1].split()[0]
    score = BASE[lang][teacher]
    if score == 8 and zlib.crc32(instruction.encode()) % 3 == 0:
        score = 2
    return f"Score: {score}"


def cli_stub(stub, delay_s: float = 0.0):
    for name in ("alpha", "beta", "gamma"):

        def answer(messages, name=name):
            if delay_s:
                time.sleep(delay_s)
            return f"{name.upper()} answers: " + messages[-1]["content"][:30]

        stub.set_handler(name, answer)
    stub.set_handler("judge", cell_judge)


def write(tmp_path: Path, config: dict, name: str = "run") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def read(run: Path, name: str = "outcomes.jsonl") -> list[dict]:
    return [json.loads(line) for line in (run / name).read_text().splitlines()]


def assert_within_budget(gens: list[int], budget: float, batch: int) -> None:
    """At every batch boundary, and over the whole run, at most one generation over."""
    for k in range(batch, len(gens) + 1, batch):
        assert sum(gens[:k]) <= budget * k + 1, (k, gens)
    assert sum(gens) <= budget * len(gens) + 1


@pytest.mark.parametrize(
    ("router", "budget"), [("bandit", 1.5), ("bandit", 1.25), ("content", 1.5)]
)
def test_cascade_routers_escalate_within_their_budget(tmp_path, stub, router, budget):
    cli_stub(stub)
    config = stub_config(
        str(tmp_path / "run"),
        stub.url,
        ("alpha", "beta", "gamma"),
        batch_size=4,
        router={"name": router, "params": {"max_generations_per_prompt": budget}},
    )
    assert main(["run", str(write(tmp_path, config))]) == 0
    outcomes = read(tmp_path / "run")
    gens = [len(o["candidates"]) for o in outcomes]
    assert len(gens) == 24
    assert_within_budget(gens, budget, 4)
    assert sum(gens) > 24  # the budget was spent on second opinions, not ignored
    escalated = [o for o in outcomes if o["routed_by"].endswith("+escalate")]
    assert escalated and all(len(o["candidates"]) > 1 for o in escalated)
    teacher_calls = [r for r in stub.requests if r["model"] != "judge"]
    assert len(teacher_calls) == sum(gens)  # no call was made that the outcomes do not show
    state = json.loads((tmp_path / "run" / "report.json").read_text())["router"]["state"]
    assert state["routed"] == 24 and state["generations"] == sum(gens)


@pytest.mark.parametrize("router", ["bandit", "content"])
def test_a_budget_of_one_generation_never_escalates(tmp_path, stub, router):
    cli_stub(stub)
    config = stub_config(
        str(tmp_path / "run"),
        stub.url,
        ("alpha", "beta", "gamma"),
        batch_size=4,
        router={"name": router, "params": {"max_generations_per_prompt": 1.0}},
    )
    assert main(["run", str(write(tmp_path, config))]) == 0
    outcomes = read(tmp_path / "run")
    assert len(outcomes) == 24
    assert all(len(o["candidates"]) == 1 for o in outcomes)
    assert not any(o["routed_by"].endswith("+escalate") for o in outcomes)
    assert len([r for r in stub.requests if r["model"] != "judge"]) == 24


class Gate:
    """Lets ``open_for`` teacher requests through, then holds every reply until ``release``."""

    def __init__(self, open_for: int) -> None:
        self.open_for = open_for
        self.release = threading.Event()
        self.seen = 0
        self._lock = threading.Lock()

    def handler(self, name: str):
        def answer(messages):
            with self._lock:
                self.seen += 1
                held = self.seen > self.open_for
            if held:
                self.release.wait(60)
            return f"{name.upper()} answers: " + messages[-1]["content"][:30]

        return answer


def test_a_killed_bandit_run_resumes_without_asking_again_and_within_budget(tmp_path, stub):
    # Batches of 4 at 1.5 generations per prompt: two batches take 12 teacher calls; the
    # third is held mid-flight, and the run is killed with 8 outcomes on disk.
    gate = Gate(open_for=14)
    for name in ("alpha", "beta"):
        stub.set_handler(name, gate.handler(name))
    stub.set_handler("judge", cell_judge)
    config = stub_config(
        str(tmp_path / "run"),
        stub.url,
        batch_size=4,
        cache={"enabled": False},  # every call the rerun makes reaches the stub
        router={"name": "bandit", "params": {"max_generations_per_prompt": 1.5}},
        windows=1,  # one batch in flight: what "the third is held" above means
    )
    path = write(tmp_path, config)
    run = tmp_path / "run"
    out = run / "outcomes.jsonl"
    try:
        with arbitrage_run(path, tmp_path) as proc:  # SIGKILLed at the block's end
            wait_while_running(proc, lambda: out.exists() and out.read_text().count("\n") >= 8, 60)
    finally:
        gate.release.set()
    first = read(run)
    assert len(first) == 8  # two batches finished; the third was in flight
    finished = {o["prompt"]["text"] for o in first}

    stub.reset()
    cli_stub(stub)
    assert main(["run", str(path)]) == 0
    rerun = {r["messages"][-1]["content"] for r in stub.requests if r["model"] != "judge"}
    pool = {p["text"] for p in read(run, "prompts.jsonl")}
    assert not rerun & finished  # a finished prompt is never requested again
    assert rerun == pool - finished

    outcomes = read(run)
    assert len(outcomes) == 24 and len({o["prompt"]["id"] for o in outcomes}) == 24
    assert outcomes[:8] == first
    gens = [len(o["candidates"]) for o in outcomes]
    assert_within_budget(gens, 1.5, 4)
    assert sum(gens[8:]) > 16  # the resumed run still escalates
    # the router relearnt the finished prompts' spending: routed and generations span the run
    state = json.loads((run / "report.json").read_text())["router"]["state"]
    assert state["routed"] == 24 and state["generations"] == sum(gens)


# --- a teacher that is down, a reward that compares answers --------------------------


def prompts_file(tmp_path: Path) -> str:
    path = tmp_path / "prompts.jsonl"
    rows = [{"text": p.text, "language": p.language, "task": p.task} for p in PROMPTS]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def test_a_teacher_that_is_down_when_asked_for_a_second_opinion_leaves_the_first(
    tmp_path, stub, monkeypatch, capsys
):
    monkeypatch.setitem(ROUTERS, "second-opinion", SecondOpinion)
    stub.set_handler("b", lambda m: Reply("overloaded", status=500))
    config = stub_config(
        str(tmp_path / "run"),
        stub.url,
        ("a", "b"),
        batch_size=1,  # one prompt at a time: the circuit opens after exactly two calls
        windows=1,
        pool={"prompts": prompts_file(tmp_path)},
        breaker={"failures": 2, "cooldown_s": 600},
        router={"name": "second-opinion", "params": {"threshold": 0.5}},
    )
    config["teachers"] = [dict(t, retries=0) for t in config["teachers"]]
    assert main(["run", str(write(tmp_path, config))]) == 0
    assert "Traceback" not in capsys.readouterr().err

    outcomes = {index(o["prompt"]["text"]): o for o in read(tmp_path / "run")}
    assert sorted(outcomes) == list(range(8))
    # the first two low prompts met a 500 and opened b's circuit; the others never asked b
    assert sorted(index(p) for p in asked(stub, "b")) == LOW[:2]
    for i, outcome in outcomes.items():
        assert outcome["winner"] == "a"
        cands = outcome["candidates"]
        best = next(c for c in cands if c["generation"]["teacher"] == "a")
        assert best["generation"]["text"] == f"a on question {i}: reward={STATED['a'][i]}"
        if i in LOW[:2]:
            assert [c["generation"]["teacher"] for c in cands] == ["a", "b"]
            assert cands[1]["generation"]["error"] and cands[1]["reward"] is None
            assert outcome["routed_by"] == "first+escalate"
        else:
            assert [c["generation"]["teacher"] for c in cands] == ["a"]
            assert outcome["routed_by"] == "first"
    rows = read(tmp_path / "run", "mixture.jsonl")
    assert len(rows) == 8 and {r["teacher"] for r in rows} == {"a"}


@pytest.mark.parametrize(
    "extra",
    [
        {"language": {"mode": "off"}},
        {},  # the default language gate wraps the pairwise judge
        {"language": {"mode": "off"}, "length": {"mode": "penalty", "per_1k_chars": 0.0}},
    ],
    ids=["bare", "language-gate", "length-control"],
)
def test_a_pairwise_reward_rescores_an_escalated_prompts_answers_together(
    tmp_path, stub, monkeypatch, extra
):
    monkeypatch.setitem(ROUTERS, "odd-ones", OddOnes)
    reward = {"kind": "pairwise", "model": "openai/pw", "api_base": stub.url}
    config = stub_config(
        str(tmp_path / "run"),
        stub.url,
        ("a", "b"),
        batch_size=3,
        pool={"prompts": prompts_file(tmp_path)},
        reward={**reward, "api_key_env": "STUB_KEY", **extra},
        router={"name": "odd-ones"},
    )
    assert main(["run", str(write(tmp_path, config))]) == 0
    odd = [i for i in range(8) if i % 2]
    for outcome in read(tmp_path / "run"):
        i = index(outcome["prompt"]["text"])
        cands = {c["generation"]["teacher"]: c for c in outcome["candidates"]}
        if i not in odd:
            assert list(cands) == ["a"] and cands["a"]["reward"] == 0.5
            continue
        assert list(cands) == ["a", "b"] and outcome["routed_by"].endswith("+escalate")
        # both answers were judged against each other: a's lone 0.5 was replaced
        assert {c["reward_details"]["pairwise_comparisons"] for c in cands.values()} == {1.0}
        assert cands["a"]["reward"] + cands["b"]["reward"] == pytest.approx(1.0)
        better = "a" if STATED["a"][i] > STATED["b"][i] else "b"
        assert cands[better]["reward"] == 1.0
        assert outcome["winner"] == better == max(cands, key=lambda t: cands[t]["reward"])
    # one comparison, asked in both orders, per escalated prompt; none for a lone answer
    assert len(asked(stub, "pw")) == 2 * len(odd)
