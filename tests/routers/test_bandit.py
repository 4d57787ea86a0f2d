"""The bandit router and the replay harness on the documented simulation."""

import pytest

from arbitrage.commands.evaluate import apgr, baselines, fully_scored, replay
from arbitrage.errors import ConfigError, DataError
from arbitrage.records import Candidate, Generation, Outcome, Prompt
from benchmarks.simulate import simulated_outcomes
from routers import get_router

TEACHERS = ["multi", "regional", "mono"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bandit_reaches_95_percent_of_oracle_at_1_4_generations(seed):
    pool = simulated_outcomes(600, seed=seed)
    base = baselines(pool, TEACHERS)
    bandit = replay(get_router("bandit", TEACHERS, seed=seed, max_generations_per_prompt=1.4), pool)
    rand = replay(get_router("random", TEACHERS, seed=seed), pool)
    assert bandit.generations_per_prompt <= 1.4
    assert bandit.mean_reward >= 0.95 * base["oracle"]
    assert bandit.mean_reward > rand.mean_reward
    assert bandit.mean_reward > max(base[t] for t in TEACHERS)
    assert bandit.win_rate_vs_best_single > 0.55


def test_budget_one_never_compares():
    pool = simulated_outcomes(200, seed=3)
    rep = replay(get_router("bandit", TEACHERS, max_generations_per_prompt=1.0), pool)
    assert rep.generations_per_prompt == 1.0


def test_bandit_learns_per_language_winner():
    router = get_router("bandit", ["a", "b"], max_generations_per_prompt=2.0, seed=0)

    def outcome(lang, rewards):
        p = Prompt(text=f"{lang}{len(rewards)}", language=lang, task="math")
        cands = tuple(
            Candidate(
                Generation(prompt_id=p.id, teacher=t, model=t, text="x", finish_reason="stop"), r
            )
            for t, r in rewards.items()
        )
        return Outcome(p, cands, max(rewards, key=rewards.get))

    router.update([outcome("fr", {"a": 0.9, "b": 0.2}) for _ in range(10)])
    router.update([outcome("sw", {"a": 0.1, "b": 0.8}) for _ in range(10)])
    picks = router.route(
        [Prompt(text="q", language="fr", task="math"), Prompt(text="q", language="sw", task="math")]
    )
    assert picks[0].teachers[0] == "a" and picks[1].teachers[0] == "b"


def test_bandit_params_validated():
    with pytest.raises(ConfigError, match="max_generations_per_prompt must be >= 1"):
        get_router("bandit", TEACHERS, max_generations_per_prompt=0.5)


def test_replay_of_reward_router_is_the_oracle():
    pool = simulated_outcomes(100, seed=4)
    rep = replay(get_router("reward", TEACHERS), pool)
    assert rep.mean_reward == pytest.approx(baselines(pool, TEACHERS)["oracle"])
    assert rep.regret == pytest.approx(0.0) and rep.generations_per_prompt == 3.0


def test_apgr_is_zero_for_best_single_and_one_for_oracle():
    assert apgr([(1.0, 0.5), (3.0, 0.5)], best_single=0.5, oracle=0.8, n=3) == pytest.approx(0.0)
    assert apgr([(1.0, 0.8), (3.0, 0.8)], best_single=0.5, oracle=0.8, n=3) == pytest.approx(1.0)
    half = apgr([(1.0, 0.5), (3.0, 0.8)], best_single=0.5, oracle=0.8, n=3)
    assert half == pytest.approx(0.5, abs=0.01)


def test_fully_scored_needs_every_teacher():
    p = Prompt(text="q", language="en", task="math")
    one = Outcome(
        p,
        (
            Candidate(
                Generation(
                    prompt_id=p.id, teacher="multi", model="m", text="x", finish_reason="stop"
                ),
                0.5,
            ),
        ),
    )
    with pytest.raises(DataError, match="routed with 'reward'"):
        fully_scored([one], TEACHERS)
