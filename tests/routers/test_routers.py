import pytest

from arbitrage.errors import ConfigError, RoutingError
from arbitrage.records import Candidate, Generation, Outcome, Prompt, pick_winner
from routers import Route, Router, get_router

TEACHERS = ["a", "b", "c"]


def prompt(lang: str, task: str = "math", i: int = 0) -> Prompt:
    return Prompt(text=f"q{i}", language=lang, task=task)


def outcome(p: Prompt, rewards: dict[str, float]) -> Outcome:
    cands = tuple(
        Candidate(Generation(prompt_id=p.id, teacher=t, model=t, text="x", finish_reason="stop"), r)
        for t, r in rewards.items()
    )
    return Outcome(p, cands, pick_winner(cands, TEACHERS))


def test_random_router_is_seeded_and_uses_all_teachers():
    prompts = [prompt("en", i=i) for i in range(60)]
    a = get_router("random", TEACHERS, seed=1).route(prompts)
    b = get_router("random", TEACHERS, seed=1).route(prompts)
    assert a == b
    assert {r.teachers[0] for r in a} == set(TEACHERS)
    assert all(len(r.teachers) == 1 for r in a)


def test_fixed_router_most_specific_key_wins():
    router = get_router(
        "fixed", TEACHERS, map={"sw": "b", "fr/coding": "c", "*/math": "a"}, default="c"
    )
    routes = router.route(
        [prompt("sw"), prompt("fr", "coding"), prompt("fr", "math"), prompt("de", "open_qa")]
    )
    assert [r.teachers for r in routes] == [["b"], ["c"], ["a"], ["c"]]


def test_fixed_router_rejects_unknown_teacher():
    with pytest.raises(ConfigError, match="unknown teacher 'z'"):
        get_router("fixed", TEACHERS, map={"sw": "z"})


def test_reward_router_sends_every_prompt_to_every_teacher():
    routes = get_router("reward", TEACHERS).route([prompt("en"), prompt("fr")])
    assert all(r.teachers == TEACHERS for r in routes)


def test_learned_router_learns_the_winner_per_language():
    router = get_router("learned", TEACHERS, warmup=30, explore=0.0)
    best = {"en": "a", "fr": "b", "sw": "c"}
    prompts = [prompt(lang, i=i) for i in range(10) for lang in best]
    routes = router.route(prompts)
    assert all(r.reason == "warmup" and r.teachers == TEACHERS for r in routes)
    router.update(
        [outcome(p, {t: float(t == best[p.language]) for t in TEACHERS}) for p in prompts]
    )
    later = router.route([prompt(lang, i=99) for lang in best])
    assert [r.teachers for r in later] == [["a"], ["b"], ["c"]]
    assert all(r.reason == "exploit" for r in later)
    rates = router.state()["win_rates"]["sw/math"]
    assert rates["c"] > 0.8 > rates["a"]


def test_learned_router_explores_with_a_comparison():
    router = get_router("learned", TEACHERS, warmup=0, explore=1.0, explore_teachers=2, seed=0)
    routes = router.route([prompt("en", i=i) for i in range(20)])
    assert all(r.reason == "explore" and len(set(r.teachers)) == 2 for r in routes)


def test_learned_router_ignores_single_answers_and_falls_back_to_language_level():
    router = get_router("learned", TEACHERS, warmup=0, explore=0.0)
    p = prompt("fr", "coding")
    router.update([outcome(p, {"c": 1.0})])  # one answer: nothing to compare
    assert router.state()["win_rates"] == {}
    router.update(
        [outcome(prompt("fr", "math", i), {"a": 0.1, "b": 0.9, "c": 0.2}) for i in range(8)]
    )
    # fr/coding was never compared: the French-wide preference for b applies
    assert router.route([p])[0].teachers == ["b"]


def test_learned_router_param_validation():
    with pytest.raises(ConfigError, match="explore must be in"):
        get_router("learned", TEACHERS, explore=2.0)


def test_check_rejects_bad_routes():
    router = get_router("reward", TEACHERS)
    with pytest.raises(RoutingError, match="unknown teacher 'zz'"):
        router.check([Route(["zz"])], [prompt("en")])
    with pytest.raises(RoutingError, match="returned 0 routes for 1 prompts"):
        router.check([], [prompt("en")])


def test_pick_winner_breaks_ties_by_config_order_and_skips_bad_answers():
    p = prompt("en")
    assert outcome(p, {"b": 0.5, "a": 0.5}).winner == "a"
    truncated = Candidate(
        Generation(prompt_id=p.id, teacher="a", model="a", text="x", finish_reason="length"), 0.9
    )
    ok = Candidate(
        Generation(prompt_id=p.id, teacher="b", model="b", text="y", finish_reason="stop"), 0.1
    )
    assert pick_winner((truncated, ok), TEACHERS) == "b"


def test_learned_router_counts_truncated_answers_as_losses_but_not_failed_calls():
    router = get_router("learned", TEACHERS, warmup=0, explore=0.0)
    p = prompt("en")

    def gen(teacher, **kw):
        return Generation(prompt_id=p.id, teacher=teacher, model=teacher, **kw)

    truncated = (
        Candidate(gen("a", text="long", finish_reason="length")),
        Candidate(gen("b", text="fine", finish_reason="stop"), 0.4),
    )
    failed = (
        Candidate(gen("c", error="RateLimitError")),
        Candidate(gen("b", text="fine", finish_reason="stop"), 0.4),
    )
    router.update([Outcome(p, truncated, "b"), Outcome(p, failed, "b")])
    compared = router.state()["comparisons"]["en/math"]
    assert {t: n for t, n in compared.items() if n} == {"a": 1, "b": 1}


def trained(name: str, **params) -> Router:
    """A router that has learned: on French, c wins 3 prompts in 4, b the others, a none."""
    router = get_router(name, TEACHERS, seed=0, **params)
    usual, upset = {"a": 0.1, "b": 0.5, "c": 0.9}, {"a": 0.1, "b": 0.9, "c": 0.5}
    router.update([outcome(prompt("fr", i=i), upset if i % 4 == 0 else usual) for i in range(40)])
    return router


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("random", {}),
        ("fixed", {"map": {"fr": "c"}}),
        ("reward", {}),
        ("learned", {"warmup": 0}),
        ("bandit", {"max_generations_per_prompt": 1.4}),
    ],
)
def test_no_router_routes_to_a_teacher_that_is_down(name, params):
    router = trained(name, **params)
    prompts = [prompt("fr", i=i) for i in range(100, 160)]
    routes = router.route_available(prompts, ["a", "b"])  # c's circuit is open
    assert len(routes) == len(prompts)
    assert all(r.teachers and set(r.teachers) <= {"a", "b"} for r in routes)


@pytest.mark.parametrize("name", ["learned", "bandit"])
def test_learning_routers_stand_in_with_their_next_best_teacher(name):
    router = trained(name, warmup=0, explore=0.0) if name == "learned" else trained(name)
    p = prompt("fr", i=999)
    assert router.rank(p) == ["c", "b", "a"]
    routes = router.route_available([p] * 20, ["a", "b"])
    assert {t for r in routes for t in r.teachers} == {"b"}  # the runner-up, not config order


def test_route_available_with_nobody_up_is_a_routing_error():
    with pytest.raises(RoutingError, match="no teacher is available"):
        get_router("random", TEACHERS).route_available([prompt("en")], [])


def test_route_available_still_rejects_unconfigured_teachers():
    class Rogue(Router):
        name = "rogue"

        def route(self, prompts):
            return [Route(["zz"], "rogue") for _ in prompts]

    with pytest.raises(RoutingError, match="unknown teacher 'zz'"):
        Rogue(TEACHERS).route_available([prompt("en")], TEACHERS)


def test_learned_router_with_fallback_asks_the_next_teacher_when_no_answer_can_win():
    plain = get_router("learned", TEACHERS, warmup=0, explore=0.0)
    assert not plain.escalates()
    router = get_router("learned", TEACHERS, warmup=0, explore=0.0, fallback=True)
    assert router.escalates()
    router.update([outcome(prompt("en", i=i), {"a": 0.2, "b": 0.9, "c": 0.5}) for i in range(4)])
    p = prompt("en", i=9)
    cut = Candidate(
        Generation(prompt_id=p.id, teacher="b", model="b", text="x", finish_reason="length")
    )
    unusable = Outcome(p, (cut,), None)
    won = outcome(prompt("en", i=10), {"b": 0.9})
    routes = router.escalate([unusable, won])
    assert [r.teachers for r in routes] == [["a"], []]  # next in rank after b (a, c tie: order)
    every = Outcome(p, (cut, *outcome(p, {"a": None, "c": None}).candidates), None)
    assert router.escalate([every])[0].teachers == []  # nobody left to ask
    assert plain.escalate([unusable])[0].teachers == []
