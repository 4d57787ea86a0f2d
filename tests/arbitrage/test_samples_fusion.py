"""Several samples per teacher and fusion, in the loop (in-process fakes: loop logic only;
the HTTP path is in test_samples_fusion_stub.py)."""

from __future__ import annotations

import pytest
from fakes import FakeTeacher, TextReward
from test_streaming import NAMES, dump, jitter, pool

from arbitrage.commands.evaluate import replay, sample_baselines
from arbitrage.fusion import Fuser, decide, fusion_messages, top_candidates
from arbitrage.pipeline import Arbitrage
from arbitrage.records import Candidate, Generation, Outcome, Prompt
from reward.calibrate import LanguageNormalised
from routers import get_router


def engine(
    router: str, windows: int, seed: int, *, samples: int = 3, fuse: str | None = None
) -> Arbitrage:
    teachers = [FakeTeacher(n, delay=jitter(seed, n), samples=samples) for n in NAMES]
    fuser = None
    if fuse is not None:
        fuser = Fuser(next(t for t in teachers if t.name == "b"), top_k=3, keep=fuse)  # type: ignore[arg-type]
    return Arbitrage(
        teachers,  # type: ignore[arg-type]
        LanguageNormalised(TextReward()),
        get_router(router, NAMES, seed=0),
        batch_size=4,
        windows=windows,
        fusion=fuser,
    )


@pytest.mark.parametrize("router", ["bandit", "content", "reward"])
@pytest.mark.parametrize("fuse", [None, "better"])
def test_samples_and_fusion_give_the_same_outcomes_whatever_the_latencies(
    router: str, fuse: str | None
) -> None:
    first = engine(router, 6, seed=1, fuse=fuse).run(pool(48)).outcomes
    second = engine(router, 6, seed=2, fuse=fuse).run(pool(48)).outcomes
    assert dump(first) == dump(second)
    assert len(first) == 48
    if fuse is not None:
        assert any(o.fusion is not None for o in first)


def test_each_teacher_gives_its_samples_and_the_best_sample_is_the_answer() -> None:
    outcomes = engine("reward", 2, seed=3).run(pool(12)).outcomes
    for outcome in outcomes:
        assert sorted((c.teacher, c.sample) for c in outcome.candidates) == [
            (t, i) for t in NAMES for i in range(3)
        ]
        texts = {c.generation.text for c in outcome.candidates}
        assert len(texts) == 9  # every sample is its own answer
        best = outcome.best
        assert best is not None
        assert best.reward == max(c.reward for c in outcome.candidates if c.reward is not None)
    # answers of later samples win too: the best of k, not always sample 0
    assert {o.best.sample for o in outcomes if o.best is not None} != {0}


def test_routers_learn_a_teachers_best_sample() -> None:
    outcome = engine("reward", 1, seed=4).run(pool(1)).outcomes[0]
    view = outcome.per_teacher()
    assert [c.teacher for c in view.candidates] == NAMES
    for cand in view.candidates:
        mine = [c.reward for c in outcome.candidates if c.teacher == cand.teacher]
        assert cand.reward == max(r for r in mine if r is not None)


def test_fusion_is_kept_only_when_it_beats_the_best_candidate() -> None:
    outcomes = engine("reward", 3, seed=5, fuse="better").run(pool(40)).outcomes
    fused = [o for o in outcomes if o.fusion is not None]
    assert len(fused) == 40  # every prompt had three teachers × three samples to fuse
    kept = [o for o in fused if o.fusion.kept]  # type: ignore[union-attr]
    lost = [o for o in fused if not o.fusion.kept]  # type: ignore[union-attr]
    assert kept and lost  # the fake fuser's quality is pseudo-random: both happen
    for outcome in kept:
        assert outcome.best is outcome.fusion.candidate  # type: ignore[union-attr]
        assert outcome.fusion.gain > 0  # type: ignore[union-attr]
        assert outcome.best.teacher == "b"  # type: ignore[union-attr]
    for outcome in lost:
        assert outcome.best is not None and outcome.best.generation.sample >= 0
        assert outcome.best in outcome.candidates
        assert outcome.fusion.gain <= 0  # type: ignore[union-attr]
    for outcome in fused:
        sources = outcome.fusion.sources  # type: ignore[union-attr]
        assert len(sources) == 3
        rewards = [s["reward"] for s in sources]
        assert rewards == sorted(rewards, reverse=True)
        assert rewards[0] == outcome.fusion.best_reward  # type: ignore[union-attr]
    # the row round-trips through outcomes.jsonl
    again = [Outcome.from_dict(o.to_dict()) for o in outcomes]
    assert dump(again) == dump(outcomes)


def test_keep_always_keeps_every_scored_fusion() -> None:
    outcomes = engine("reward", 2, seed=6, fuse="always").run(pool(12)).outcomes
    assert all(o.fusion is not None and o.fusion.kept for o in outcomes)
    assert all(o.best is o.fusion.candidate for o in outcomes)  # type: ignore[union-attr]


def test_a_prompt_with_one_answer_is_not_fused() -> None:
    outcomes = engine("random", 1, seed=7, samples=1, fuse="better").run(pool(8)).outcomes
    assert all(len(o.candidates) == 1 for o in outcomes)
    assert all(o.fusion is None for o in outcomes)


def test_the_offline_replay_reveals_every_sample_and_gives_the_k_sample_baseline() -> None:
    every = engine("reward", 1, seed=8).run(pool(24)).outcomes
    run = engine("bandit", 1, seed=8).run(pool(24)).outcomes
    offline = replay(get_router("bandit", NAMES, seed=0), every, batch_size=4)
    assert offline.generations_per_prompt == pytest.approx(
        sum(len(o.candidates) for o in run) / len(run)
    )
    base = sample_baselines(every, NAMES)
    one, three = base["best single × 1 sample"], base["best single × 3 samples"]
    assert three > one  # the best of three samples beats the first
    t = base["best single × 3 samples teacher"]
    by_hand = sum(
        max(c.reward for c in o.candidates if c.teacher == t)  # type: ignore[type-var]
        for o in every
    ) / len(every)
    assert three == pytest.approx(by_hand)


def _cand(teacher: str, reward: float | None, sample: int = 0, text: str = "x") -> Candidate:
    gen = Generation("p", teacher, f"m/{teacher}", text=text, finish_reason="stop", sample=sample)
    return Candidate(gen, reward)


def test_the_fusing_prompt_holds_the_question_and_the_drafts_best_first() -> None:
    prompt = Prompt(text="Combien font 2 + 2 ?", language="fr", task="math")
    cands = [_cand("a", 0.2, text="cinq"), _cand("b", 0.9, text="quatre"), _cand("c", None)]
    top = top_candidates(cands, ["a", "b", "c"], 3)
    assert [c.teacher for c in top] == ["b", "a"]  # unscored answers are never fused
    (message,) = fusion_messages(prompt, top)
    text = message["content"]
    assert message["role"] == "user"
    assert "Combien font 2 + 2 ?" in text
    assert text.index("Draft 1:\n<<<\nquatre") < text.index("Draft 2:\n<<<\ncinq")
    assert "2 draft answers" in text
    assert "language of the question" in text  # the fuser must answer in French
    assert "Do not\nmention the drafts" not in text and "Do not mention the drafts" in text


def test_decide_keeps_a_tie_as_the_source() -> None:
    sources = [_cand("a", 0.8), _cand("b", 0.5)]
    assert not decide(_cand("f", 0.8), sources, "better").kept
    assert decide(_cand("f", 0.81), sources, "better").kept
    assert decide(_cand("f", 0.1), sources, "always").kept
    assert not decide(_cand("f", None), sources, "always").kept  # unscored: never kept
    assert decide(_cand("f", 0.1), sources, "always").gain == pytest.approx(-0.7)


def test_a_budget_stop_during_fusion_keeps_the_committed_windows_and_lets_calls_land(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import gc

    from arbitrage.errors import BudgetExceeded

    teachers = [FakeTeacher(n, delay=jitter(9, n), samples=2, budget_after=30) for n in NAMES]
    run = Arbitrage(
        teachers,  # type: ignore[arg-type]
        TextReward(),
        get_router("reward", NAMES),
        batch_size=4,
        windows=3,
        fusion=Fuser(teachers[1], top_k=2),  # type: ignore[arg-type]
    )
    handed: list[Outcome] = []
    with pytest.raises(BudgetExceeded):
        run.run(pool(40), on_outcomes=handed.extend)
    for teacher in teachers:
        assert sorted(teacher.landed) == sorted(teacher.calls)
    assert handed and len(handed) % 4 == 0
    assert all(o.fusion is not None and len(o.candidates) == 6 for o in handed)
    gc.collect()  # a fusion nobody awaited would be reported now
    assert "never retrieved" not in caplog.text


def test_win_rates_count_a_teachers_samples_once() -> None:
    from arbitrage.outputs.report import win_cells

    outcomes = engine("reward", 1, seed=10).run(pool(8)).outcomes
    for language, per_teacher in win_cells(outcomes).items():
        prompts = sum(o.prompt.language == language for o in outcomes)
        assert sum(wins for wins, _ in per_teacher.values()) == prompts  # one winner each
        assert all(contested == prompts for _, contested in per_teacher.values())
