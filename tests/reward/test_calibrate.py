"""Per-language normalisation, length control and ensembles: arithmetic, state and resume."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import pytest

from arbitrage.errors import ConfigError
from arbitrage.records import Candidate, Generation, Outcome, Prompt
from reward.base import RewardModel, Score
from reward.calibrate import LanguageNormalised, LengthControl, Moments
from reward.ensemble import Panel, WeightedSum, ensemble


class Table(RewardModel):
    """Scores read from a dict (answer → value); ``None`` for answers it does not know."""

    name = "table"

    def __init__(self, values: dict[str, float]) -> None:
        self.values = values
        self.calls = 0

    async def ascore_batch(self, pairs: Sequence[tuple[Prompt, str]]) -> list[Score]:
        self.calls += 1
        return [Score(self.values.get(text), {"table": 1.0}) for _, text in pairs]


class Length(RewardModel):
    """A length-biased reward: a quality mark in the answer, plus 0.5 per log character."""

    name = "length"

    async def ascore_batch(self, pairs: Sequence[tuple[Prompt, str]]) -> list[Score]:
        return [
            Score(float(text.startswith("good")) + 0.5 * np.log1p(len(text))) for _, text in pairs
        ]


def _prompt(language: str, n: int = 0) -> Prompt:
    return Prompt(text=f"question {n}", language=language, task="qa")


def test_moments_match_numpy() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=50), rng.normal(size=50) * 3 + 1
    m = Moments()
    for xi, yi in zip(x, y, strict=True):
        m.add(float(yi), float(xi))
    assert m.n == 50
    assert m.mean_y == pytest.approx(y.mean())
    assert m.std_y == pytest.approx(y.std(ddof=1))
    assert m.slope == pytest.approx(np.polyfit(x, y, 1)[0])
    assert Moments().std_y == 0.0 and Moments().slope == 0.0


def test_normalisation_is_per_language() -> None:
    # English scores run high, Swahili low: after z-scoring each language's best is alike.
    values = {"en-a": 9.0, "en-b": 7.0, "en-c": 8.0, "sw-a": 2.0, "sw-b": 0.0, "sw-c": 1.0}
    reward = LanguageNormalised(Table(values))
    pairs = [(_prompt(k[:2]), k) for k in values]
    scores = reward.score_batch(pairs)
    z = {k: s.value for k, s in zip(values, scores, strict=True)}
    assert z["en-a"] == pytest.approx(1.0) and z["sw-a"] == pytest.approx(1.0)
    assert z["en-b"] == pytest.approx(-1.0) and z["sw-c"] == pytest.approx(0.0)
    assert scores[0].details == {"table": 1.0, "unnormalised": 9.0}


def test_a_single_score_is_only_centred_and_none_stays_none() -> None:
    reward = LanguageNormalised(Table({"x": 5.0}))
    assert reward.score_batch([(_prompt("fr"), "x"), (_prompt("fr"), "unknown")]) == [
        Score(0.0, {"table": 1.0, "unnormalised": 5.0}),
        Score(None, {"table": 1.0}),
    ]


def test_length_regression_removes_the_length_bias() -> None:
    rng = random.Random(0)
    texts = [
        ("good " if rng.random() < 0.5 else "bad ") + "x" * rng.randint(5, 2000) for _ in range(60)
    ]
    prompt = _prompt("en")
    raw = Length().score_batch([(prompt, t) for t in texts])
    controlled = LengthControl(Length(), min_samples=10).score_batch([(prompt, t) for t in texts])
    lengths = np.log1p([len(t) for t in texts])
    good = np.array([t.startswith("good") for t in texts])
    raw_v = np.array([s.value for s in raw])
    ctl_v = np.array([s.value for s in controlled])
    assert np.corrcoef(lengths, raw_v)[0, 1] > 0.6  # the raw reward mostly measures length
    assert abs(np.corrcoef(lengths, ctl_v)[0, 1]) < 0.2
    # What is left is quality: every good answer beats every bad one.
    assert ctl_v[good].min() > ctl_v[~good].max()
    assert controlled[0].details["before_length"] == raw[0].value


def test_length_regression_waits_for_samples_and_ignores_a_brevity_preference() -> None:
    prompt = _prompt("en")
    few = LengthControl(Length(), min_samples=20).score_batch([(prompt, "x" * n) for n in (5, 500)])
    assert [s.details["length_adjustment"] for s in few] == [0.0, 0.0]
    brief = Table({"x" * n: -float(n) for n in range(10, 400, 10)})
    got = LengthControl(brief, min_samples=5).score_batch(
        [(prompt, "x" * n) for n in range(10, 400, 10)]
    )
    assert all(s.details["length_adjustment"] == 0.0 for s in got)


def test_length_penalty_is_per_thousand_characters() -> None:
    prompt = _prompt("en")
    (score,) = LengthControl(Table({"y" * 2500: 1.0}), "penalty", per_1k_chars=0.2).score_batch(
        [(prompt, "y" * 2500)]
    )
    assert score.value == pytest.approx(0.5)
    assert score.details["length_adjustment"] == pytest.approx(-0.5)


def test_ensemble_weights_standardised_members() -> None:
    # The judge's scale is [0, 1], the classifier's in the tens: unweighted sums would be
    # the classifier alone. Standardised, the judge (weight 3) decides.
    judge = Table({"a": 1.0, "b": 0.0, "c": 0.5})
    rm = Table({"a": 10.0, "b": 30.0, "c": 20.0})
    reward = ensemble([("judge", judge, 3.0), ("rm", rm, 1.0)])
    prompt = _prompt("en")
    a, b, c = reward.score_batch([(prompt, "a"), (prompt, "b"), (prompt, "c")])
    assert a.value is not None and b.value is not None and c.value is not None
    assert a.value > c.value > b.value
    assert a.value == pytest.approx((3 * 1.0 + 1 * -1.0) / 4)
    assert a.details["judge"] == 1.0 and a.details["rm"] == 10.0
    assert a.details["judge.table"] == 1.0


def test_ensemble_without_normalisation_is_a_plain_weighted_mean() -> None:
    reward = ensemble(
        [("x", Table({"a": 1.0}), 1.0), ("y", Table({"a": 4.0}), 2.0)], normalise=False
    )
    assert reward.score(_prompt("en"), "a").value == pytest.approx(3.0)


def test_an_answer_a_member_could_not_score_is_unscored() -> None:
    reward = ensemble([("x", Table({"a": 1.0, "b": 2.0}), 1.0), ("y", Table({"a": 4.0}), 1.0)])
    a, b = reward.score_batch([(_prompt("en"), "a"), (_prompt("en"), "b")])
    assert a.value is not None
    assert b.value is None and b.details["x"] == 2.0 and "y" not in b.details


def test_a_failing_member_fails_the_ensemble_after_the_others_land() -> None:
    class Broken(RewardModel):
        async def ascore_batch(self, pairs: Sequence[tuple[Prompt, str]]) -> list[Score]:
            raise RuntimeError("judge down")

    ok = Table({"a": 1.0})
    with pytest.raises(RuntimeError, match="judge down"):
        Panel({"ok": ok, "broken": Broken()}).score(_prompt("en"), "a")
    assert ok.calls == 1


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Panel({"only": Table({})}), "at least two"),
        (lambda: WeightedSum(Table({}), {"x": 0.0}), "weights"),
        (lambda: ensemble([("x", Table({}), 1.0), ("x", Table({}), 1.0)]), "unique"),
        (lambda: LengthControl(Table({}), "cubic"), "mode"),  # type: ignore[arg-type]
        (lambda: LengthControl(Table({}), min_samples=1), "min_samples"),
    ],
)
def test_bad_settings_are_rejected(make: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make()  # type: ignore[operator]


def _outcomes(pairs: Sequence[tuple[Prompt, str]], scores: Sequence[Score]) -> list[Outcome]:
    outcomes = []
    for (prompt, text), score in zip(pairs, scores, strict=True):
        gen = Generation(prompt.id, "t", "m", text=text, finish_reason="stop")
        outcomes.append(Outcome(prompt, (Candidate(gen, score.value, score.details),), "t"))
    return outcomes


@pytest.mark.parametrize(
    "build",
    [
        lambda inner: LanguageNormalised(inner),
        lambda inner: LengthControl(inner, min_samples=3),
        lambda inner: ensemble([("a", inner, 1.0), ("b", Length(), 2.0)]),
        lambda inner: LanguageNormalised(
            LengthControl(ensemble([("a", inner, 1.0), ("b", Length(), 1.0)]), min_samples=3)
        ),
    ],
    ids=["normalised", "length", "ensemble", "all"],
)
def test_replay_resumes_exactly_where_an_uninterrupted_run_would_be(build: object) -> None:
    rng = random.Random(1)
    texts = [f"good {'x' * rng.randint(1, 300)}" for _ in range(30)]
    values = {t: rng.uniform(0, 10) for t in texts}
    pairs = [(_prompt(("en", "fr")[i % 2], i), t) for i, t in enumerate(texts)]
    first, second = pairs[:18], pairs[18:]

    straight = build(Table(values))  # type: ignore[operator]
    done = straight.score_batch(first)
    expected = straight.score_batch(second)

    resumed = build(Table(values))  # type: ignore[operator]
    resumed.replay(_outcomes(first, done))
    assert resumed.score_batch(second) == expected


def test_a_resumed_run_scores_as_an_uninterrupted_one(stub_server, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Arbitrage.arun(done=...) hands the finished outcomes to the reward's replay."""
    from arbitrage.calls.teachers import Teacher
    from arbitrage.config import TeacherConfig
    from arbitrage.pipeline import Arbitrage
    from routers import get_router

    monkeypatch.setenv("STUB_KEY", "sk-test")
    for name in ("alpha", "beta"):
        stub_server.set_handler(
            name, lambda m, n=name: f"{n} says " + "word " * (len(m[-1]["content"]) % 37)
        )

    class Words(RewardModel):
        async def ascore_batch(self, pairs: Sequence[tuple[Prompt, str]]) -> list[Score]:
            return [
                Score(len(text.split()) + (3.0 if "alpha" in text else 0.0)) for _, text in pairs
            ]

    def engine() -> Arbitrage:
        teachers = [
            Teacher(
                TeacherConfig(
                    name=n, model=f"openai/{n}", api_base=stub_server.url, api_key_env="STUB_KEY"
                )
            )
            for n in ("alpha", "beta")
        ]
        reward = LanguageNormalised(LengthControl(Words(), min_samples=3))
        return Arbitrage(teachers, reward, get_router("reward", ["alpha", "beta"]), batch_size=4)

    prompts = [
        Prompt(
            text=f"question number {i} " + "x" * (i * 7), language=("en", "fr")[i % 2], task="qa"
        )
        for i in range(12)
    ]
    straight = engine().run(prompts).outcomes
    first = engine().run(prompts[:8]).outcomes
    resumed = engine().run(prompts, done=first).outcomes

    def rewards(outcomes: Sequence[Outcome]) -> list[list[float | None]]:
        return [[c.reward for c in o.candidates] for o in outcomes]

    assert rewards(resumed) == rewards(straight)
    # Without the replay the last batch would be scored against empty statistics.
    fresh = engine().run(prompts[8:]).outcomes
    assert rewards(fresh) != rewards(straight[8:])
