"""Replay a fully scored run under any router: quality, cost and regret without new calls.

A run routed with ``reward`` (every teacher answered every prompt, every answer
scored) holds the answer to "what if we had routed differently?". ``replay``
feeds its prompts to a router in order, reveals only the answers of the teachers
the router chose, keeps the best of those, and lets the router learn from them.

Metrics per router: mean reward (an unusable answer counts 0), win rate against
the best single teacher (ties count half), regret against the oracle (best of
all teachers per prompt), generations per prompt and cost. ``apgr`` generalises
RouteLLM's APGR to N teachers: the area under the quality-vs-generations curve
between 1 and N generations per prompt, with quality scaled so that the best
single teacher is 0 and the oracle is 1.
"""

from __future__ import annotations

import itertools
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from arbitrage import schedule
from arbitrage.errors import DataError
from arbitrage.records import Outcome, pick_winner
from arbitrage.run_outcomes import subset
from routers.base import Router, escalated


@dataclass(frozen=True)
class Replay:
    """One router's replay over a scored run."""

    router: str
    mean_reward: float
    win_rate_vs_best_single: float
    regret: float
    generations_per_prompt: float
    cost_usd: float
    prompts: int


def _value(outcome: Outcome, teachers: Sequence[str], samples: int | None = None) -> float:
    """The best reward among ``teachers``' answers (their first ``samples`` samples,
    default all); 0 when none is usable."""
    chosen = tuple(
        c
        for c in outcome.candidates
        if c.teacher in teachers and (samples is None or c.sample < samples)
    )
    best = max((float(c.reward) for c in chosen if c.scored), default=None)  # type: ignore[arg-type]
    return 0.0 if best is None else best


def fully_scored(outcomes: Sequence[Outcome], teachers: Sequence[str]) -> list[Outcome]:
    """The outcomes in which every teacher answered (errors excluded); raises if none."""
    full = [
        o
        for o in outcomes
        if {c.teacher for c in o.candidates if not c.generation.failed} >= set(teachers)
    ]
    if not full:
        raise DataError(
            "no prompt was answered by every teacher: replay needs a run routed with 'reward'"
        )
    return full


def _reveal(full: Outcome, teachers: Sequence[str], reason: str, order: list[str]) -> Outcome:
    """The chosen teachers' answers (every sample of each), in the order chosen."""
    cands = tuple(c for t in dict.fromkeys(teachers) for c in full.candidates if c.teacher == t)
    return Outcome(full.prompt, cands, pick_winner(cands, order), reason)


def replay(
    router: Router,
    outcomes: Sequence[Outcome],
    *,
    batch_size: int = 16,
    windows: int = 1,
    name: str | None = None,
) -> Replay:
    """Route ``outcomes``' prompts with ``router``, revealing only the chosen answers.

    In a run's order (``arbitrage.schedule``): windows of ``batch_size`` prompts,
    ``windows`` of them in flight, each routed, escalated round after round and learned
    from exactly when a run of the same settings does it."""
    teachers = router.teachers
    best_single = max(teachers, key=lambda t: sum(_value(o, [t]) for o in outcomes))
    batches = [outcomes[i : i + batch_size] for i in range(0, len(outcomes), batch_size)]
    rounds = len(teachers) - 1 if router.escalates() else 0
    seen: dict[int, list[Outcome]] = {}
    pending: dict[int, tuple[int, list[list[str]]]] = {}  # window -> (round, whom to ask)
    total = wins = regret = cost = 0.0
    generations = 0
    for event in schedule.events(windows, rounds):
        k = event.window
        if k >= len(batches):
            if event.kind == "commit":
                break
            continue
        if event.kind == "route":
            prompts = [o.prompt for o in batches[k]]
            routes = router.check(router.route(prompts), prompts)
            seen[k] = [
                _reveal(o, r.teachers, r.reason, teachers)
                for o, r in zip(batches[k], routes, strict=True)
            ]
        elif event.kind == "settle":
            if event.round > 0:
                if pending.get(k, (None,))[0] != event.round:
                    continue  # nothing was asked in this round
                ask_of = pending.pop(k)[1]
                seen[k] = [
                    _reveal(
                        full,
                        [c.teacher for c in s.candidates] + ask,
                        escalated(s.routed_by),
                        teachers,
                    )
                    if ask
                    else s
                    for full, s, ask in zip(batches[k], seen[k], ask_of, strict=True)
                ]
            if event.round < rounds:
                wanted = router.escalate_checked([s.per_teacher() for s in seen[k]])
                if any(wanted):
                    pending[k] = (event.round + 1, wanted)
        else:
            shown_all = seen.pop(k)
            for outcome, shown in zip(batches[k], shown_all, strict=True):
                chosen = [c.teacher for c in shown.candidates]
                value = _value(outcome, chosen)
                single = _value(outcome, [best_single])
                total += value
                wins += 1.0 if value > single else 0.5 if value == single else 0.0
                regret += _value(outcome, teachers) - value
                generations += len(shown.candidates)
                cost += sum(c.generation.cost_usd for c in shown.candidates)
            router.update([s.per_teacher() for s in shown_all])
    n = len(outcomes)
    return Replay(
        router=name or router.name,
        mean_reward=total / n,
        win_rate_vs_best_single=wins / n,
        regret=regret / n,
        generations_per_prompt=generations / n,
        cost_usd=cost,
        prompts=n,
    )


def apgr(curve: Sequence[tuple[float, float]], best_single: float, oracle: float, n: int) -> float:
    """Area under the scaled quality-vs-generations curve on [1, n] (0 = best single, 1 = oracle).

    ``curve`` is (generations per prompt, mean reward) points; between points the
    curve is linear, outside them it is flat at the nearest point.
    """
    if oracle <= best_single or n <= 1:
        return 1.0
    points = sorted(curve)
    grid = [1.0 + (n - 1.0) * i / 200 for i in range(201)]

    def at(x: float) -> float:
        if x <= points[0][0]:
            return points[0][1]
        for (x0, y0), (x1, y1) in itertools.pairwise(points):
            if x0 <= x <= x1:
                return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
        return points[-1][1]

    scaled = [min(1.0, max(0.0, (at(x) - best_single) / (oracle - best_single))) for x in grid]
    area = sum((a + b) / 2 for a, b in itertools.pairwise(scaled)) / (len(grid) - 1)
    return area


def baselines(outcomes: Sequence[Outcome], teachers: Sequence[str]) -> dict[str, float]:
    """Mean reward of each single teacher (the best of its samples, where it gave
    several) and of the oracle."""
    n = len(outcomes)
    values = {t: sum(_value(o, [t]) for o in outcomes) / n for t in teachers}
    values["oracle"] = sum(_value(o, teachers) for o in outcomes) / n
    return values


def samples_of(outcomes: Sequence[Outcome]) -> int:
    """The most samples any teacher gave one prompt in ``outcomes`` (1: no ``samples``)."""
    return max((c.sample + 1 for o in outcomes for c in o.candidates), default=1)


def sample_baselines(outcomes: Sequence[Outcome], teachers: Sequence[str]) -> dict[str, Any]:
    """The "best single teacher × k samples" baseline (Self-MoA's recipe): the mean,
    over prompts, of the best of one teacher's first k samples, for the teacher best at
    it, at k = 1 and at the most samples the outcomes hold. The teacher is chosen in
    hindsight, as the best single teacher is. Keys: ``best single × 1 sample`` and, when
    the outcomes hold more, ``best single × k samples``, each with ``<key> teacher``."""
    if not outcomes:
        raise DataError("no outcomes to compare with")
    n = len(outcomes)
    out: dict[str, Any] = {}
    for k in dict.fromkeys([1, samples_of(outcomes)]):
        label = f"best single × {k} sample{'s' if k > 1 else ''}"
        values = {t: sum(_value(o, [t], k) for o in outcomes) / n for t in teachers}
        best = max(teachers, key=lambda t: values[t])
        out[label] = values[best]
        out[f"{label} teacher"] = best
    return out


def samples_summary(outcomes: Sequence[Outcome], teachers: Sequence[str]) -> dict[str, Any]:
    """``report.json`` ``samples``: the run's result beside "best single teacher × k
    samples", on the prompts where every teacher gave every sample (the baseline needs
    them all; a run routed with ``reward`` has every prompt). ``arbitraged``: the mean
    reward of each prompt's answer (the kept fused answer, else the best candidate)."""
    k = samples_of(outcomes)
    # found again at each pass: a run's outcomes are read from disk (RunOutcomes), not held
    full = subset(
        outcomes,
        array(
            "q",
            (
                i
                for i, o in enumerate(outcomes)
                if all(
                    sum(1 for c in o.candidates if c.teacher == t and not c.generation.failed)
                    >= samples_in(o, t)
                    for t in teachers
                )
                and {c.teacher for c in o.candidates} >= set(teachers)
            ),
        ),
    )
    out: dict[str, Any] = {"samples": k, "prompts": len(full)}
    if not full:
        out["note"] = "no prompt was answered by every teacher: route with 'reward' for this"
        return out
    out.update(sample_baselines(full, teachers))
    out["arbitraged"] = sum(
        float(o.best.reward or 0.0) if o.best is not None else 0.0 for o in full
    ) / len(full)
    return out


def samples_in(outcome: Outcome, teacher: str) -> int:
    """How many samples ``teacher`` was asked for on ``outcome`` (its highest index + 1)."""
    return max((c.sample + 1 for c in outcome.candidates if c.teacher == teacher), default=0)


def quality_cost_curve(
    make_router: Callable[[float], Router], outcomes: Sequence[Outcome], budgets: Sequence[float]
) -> list[Replay]:
    """Replays of a budgeted router at each budget (for the quality-vs-cost plot)."""
    return [replay(make_router(b), outcomes, name=f"budget {b:g}") for b in budgets]


def hindsight(outcomes: Sequence[Outcome], teachers: Sequence[str]) -> dict[str, float]:
    """Baselines chosen after seeing every reward (upper bounds for a fixed policy):
    the best teacher per task (1 generation) and the best pair of teachers (2)."""
    if not outcomes:
        raise DataError("no outcomes to compare with")
    by_task: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        by_task.setdefault(outcome.prompt.task, []).append(outcome)
    per_task = sum(
        max(sum(_value(o, [t]) for o in group) for t in teachers) for group in by_task.values()
    )
    n = len(outcomes)
    result = {"best per task (hindsight)": per_task / n}
    if len(teachers) > 1:
        pair = max(
            sum(_value(o, list(p)) for o in outcomes) for p in itertools.combinations(teachers, 2)
        )
        result["best pair (hindsight)"] = pair / n
    return result


def gap_closed(value: float, best_single: float, oracle: float) -> float:
    """G = (value - best single) / (oracle - best single): the share of the gap closed."""
    return (value - best_single) / (oracle - best_single) if oracle > best_single else 0.0


def cascade_ceiling(outcomes: Sequence[Outcome], teachers: Sequence[str], budget: float) -> float:
    """Mean reward of the best fixed cascade at ``budget`` generations per prompt, chosen in
    hindsight: the best single teacher answers every prompt, and its best partner (the
    other half of the best pair) answers the ``budget - 1`` share of prompts where that
    gains the most. A router that picks its second teacher by prompt can beat it; one that
    has to guess which prompts to escalate rarely reaches it."""
    if not outcomes:
        raise DataError("no outcomes to compare with")
    best = max(teachers, key=lambda t: sum(_value(o, [t]) for o in outcomes))
    others = [t for t in teachers if t != best]
    if not others:
        return sum(_value(o, [best]) for o in outcomes) / len(outcomes)
    partner = max(others, key=lambda t: sum(_value(o, [best, t]) for o in outcomes))
    first = [_value(o, [best]) for o in outcomes]
    gains = sorted(
        (_value(o, [best, partner]) - f for o, f in zip(outcomes, first, strict=True)),
        reverse=True,
    )
    k = round(min(1.0, max(0.0, budget - 1.0)) * len(outcomes))
    return (sum(first) + sum(gains[:k])) / len(outcomes)
