"""The streaming loop: windows in flight at once, a fixed schedule, commits in order."""

from __future__ import annotations

import random
import zlib

import pytest
from fakes import FakeTeacher, TextReward

from arbitrage.errors import BudgetExceeded
from arbitrage.pipeline import Arbitrage
from arbitrage.records import Outcome, Prompt
from reward.calibrate import LanguageNormalised
from routers import get_router

NAMES = ["a", "b", "c"]


def pool(n: int) -> list[Prompt]:
    return [
        Prompt(text=f"question {i}", language=("en", "fr")[i % 2], task=("qa", "math")[i % 3 == 0])
        for i in range(n)
    ]


def jitter(seed: int, name: str):  # type: ignore[no-untyped-def]
    """Latency per (teacher, prompt), heavy-tailed, different for every ``seed``."""

    def delay(prompt: Prompt) -> float:
        rng = random.Random(zlib.crc32(f"{seed}|{name}|{prompt.id}".encode()))
        return min(0.05, 0.002 * rng.lognormvariate(0, 1))

    return delay


def engine(router: str, windows: int, seed: int, **teacher: object) -> Arbitrage:
    teachers = [FakeTeacher(n, delay=jitter(seed, n), **teacher) for n in NAMES]  # type: ignore[arg-type]
    reward = LanguageNormalised(TextReward())  # running statistics: they must keep their order
    return Arbitrage(
        teachers, reward, get_router(router, NAMES, seed=0), batch_size=4, windows=windows
    )


def dump(outcomes: list[Outcome]) -> list[dict[str, object]]:
    return [o.to_dict() for o in outcomes]


@pytest.mark.parametrize("router", ["bandit", "content", "reward", "random"])
def test_the_same_config_gives_the_same_outcomes_whatever_the_latencies(router: str) -> None:
    first = engine(router, 6, seed=1).run(pool(60)).outcomes
    second = engine(router, 6, seed=2).run(pool(60)).outcomes
    assert dump(first) == dump(second)
    assert len(first) == 60


def test_windows_keep_the_teachers_busy_past_the_slowest_call() -> None:
    one = engine("reward", 1, seed=3)
    one.run(pool(48))
    many = engine("reward", 6, seed=3)
    many.run(pool(48))
    # one window at a time: a teacher answers at most the window's 4 prompts at once
    assert max(t.peak for t in one.teachers.values()) <= 4  # type: ignore[attr-defined]
    assert min(t.peak for t in many.teachers.values()) > 8  # type: ignore[attr-defined]


def test_windows_are_committed_in_pool_order() -> None:
    handed: list[str] = []
    prompts = pool(37)  # the last window is short
    result = engine("bandit", 5, seed=4).run(
        prompts, on_outcomes=lambda outs: handed.extend(o.prompt.id for o in outs)
    )
    assert handed == [p.id for p in prompts]
    assert [o.prompt.id for o in result.outcomes] == handed


def test_a_budget_stop_keeps_the_finished_windows_and_lets_calls_land() -> None:
    handed: list[Outcome] = []
    run = engine("reward", 4, seed=5, budget_after=22)
    with pytest.raises(BudgetExceeded):
        run.run(pool(60), on_outcomes=handed.extend)
    teachers = list(run.teachers.values())
    for teacher in teachers:
        assert sorted(teacher.landed) == sorted(teacher.calls)  # type: ignore[attr-defined]
    assert handed and len(handed) % 4 == 0
    assert [o.prompt.id for o in handed] == [p.id for p in pool(60)][: len(handed)]
    assert all(len(o.candidates) == 3 for o in handed)


def test_a_resume_skips_what_was_finished_and_relearns_it() -> None:
    prompts = pool(40)
    first = engine("bandit", 3, seed=6).run(prompts[:24]).outcomes
    again = engine("bandit", 3, seed=6)
    result = again.run(prompts, done=first)
    asked = {p for t in again.teachers.values() for p in t.calls}  # type: ignore[attr-defined]
    assert asked == {p.id for p in prompts[24:]}
    assert [o.prompt.id for o in result.outcomes] == [p.id for p in prompts]


def test_a_prompt_repeated_in_one_window_keeps_its_own_answers() -> None:
    p, q = pool(2)
    result = engine("reward", 2, seed=7).run([p, p, q, q])
    assert [len(o.candidates) for o in result.outcomes] == [3, 3, 3, 3]
    for outcome in result.outcomes:
        assert {c.teacher for c in outcome.candidates} == set(NAMES)
        assert all(c.generation.prompt_id == outcome.prompt.id for c in outcome.candidates)


@pytest.mark.parametrize("windows", [1, 4])
def test_the_offline_replay_follows_the_schedule_of_a_run(windows: int) -> None:
    from arbitrage.commands.evaluate import replay

    prompts = pool(48)

    def arbitrage(router: str) -> Arbitrage:
        teachers = [FakeTeacher(n, delay=jitter(8, n)) for n in NAMES]
        return Arbitrage(
            teachers, TextReward(), get_router(router, NAMES), batch_size=4, windows=windows
        )

    every = arbitrage("reward").run(prompts).outcomes
    run = arbitrage("bandit").run(prompts).outcomes
    offline = replay(get_router("bandit", NAMES), every, batch_size=4, windows=windows)
    asked = sum(len(o.candidates) for o in run)
    assert offline.generations_per_prompt == pytest.approx(asked / len(run))
    best = [max(c.reward for c in o.candidates if c.reward is not None) for o in run]
    assert offline.mean_reward == pytest.approx(sum(best) / len(run))
    assert asked > len(run)  # it escalated: the schedule of decisions was exercised


def test_a_call_cancelled_before_it_starts_leaves_no_coroutine_unawaited() -> None:
    # A stopping run cancels its rounds; a round cancelled at once (before its first
    # step) must still leave every call it was handed started or closed, or Python
    # warns "coroutine ... was never awaited" at garbage collection (issue 12 review).
    import asyncio
    import gc
    import warnings

    loop_under_test = engine("random", windows=2, seed=0)

    async def call(k: int) -> int:
        return k

    async def main() -> None:
        # what _gather does: the tracked calls as gather's children, then the round is
        # cancelled before any child has had a step
        round_ = asyncio.gather(*[loop_under_test._track(call(k)) for k in range(3)])
        round_.cancel()
        await asyncio.gather(round_, return_exceptions=True)
        await asyncio.sleep(0)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(main())
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)], [
        str(w.message) for w in caught
    ]
