"""The order in which a run's windows are routed, settled and committed.

A run takes its prompts in windows of ``batch_size`` and keeps ``windows`` (R) of them
in flight. What a router or a reward with running statistics decides depends on what
it has seen, so the loop takes every decision in one fixed order, whatever the
latencies: the same config gives the same mixture on any engine, and the offline
replay (``arbitrage.commands.evaluate.replay``) follows the same order.

Time is cut into slots s = 0, 1, 2, ... With ``rounds`` escalation rounds (a router
that never escalates has none) and a spacing ``D = R // (rounds + 1)``, slot s holds,
in this order:

    settle(s - r·D, r)   for r = 0 .. rounds: round r's answers of that window get
                         their final scores; then the router says whom to ask in
                         round r + 1 (the calls go out at once, in the background)
    commit(s - rounds·D)  the window's outcomes: the router learns, they are handed on
    route(... + R)        the window R after it is routed (its first calls go out)

So a window's first answers have R - rounds·D slots to come in and each escalation
round D slots; with R = 1 each window is routed, settled and committed before the next.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Event:
    """One step: ``route``, ``settle`` (with its ``round``) or ``commit`` of ``window``."""

    kind: Literal["route", "settle", "commit"]
    window: int
    round: int = 0


def spacing(windows: int, rounds: int) -> int:
    """D: the slots between a window's rounds."""
    return windows // (rounds + 1)


def events(windows: int, rounds: int) -> Iterator[Event]:
    """The run's steps in order, without end: the caller stops once every window it has
    is committed, and skips steps of windows it does not have (``window`` < 0, or past
    the last one)."""
    if windows < 1 or rounds < 0:
        raise ValueError(f"windows must be >= 1 and rounds >= 0 (got {windows}, {rounds})")
    gap = spacing(windows, rounds)
    for k in range(windows):
        yield Event("route", k)
    s = 0
    while True:
        for r in range(rounds + 1):
            if s - r * gap >= 0:
                yield Event("settle", s - r * gap, r)
        done = s - rounds * gap
        if done >= 0:
            yield Event("commit", done)
            yield Event("route", done + windows)
        s += 1
