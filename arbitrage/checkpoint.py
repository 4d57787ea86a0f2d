"""Resume in constant time: what a rerun would relearn from ``outcomes.jsonl``, saved as
the run goes.

A resumed run must give its router and its reward's running statistics (per-language
normalisation, length control, an ensemble's weights) the state that the finished
prompts taught them. Read from ``outcomes.jsonl`` alone, that takes a pass over every
finished prompt, so the time to the first new call grows with the run. Instead the run
keeps a *shadow*: a copy of the router and of the reward's adjusting steps that learns
exactly what a rerun would replay (the outcomes as they are appended, in order, nothing
in flight), and every ``INTERVAL_S`` seconds, and when the loop ends however it ends,
``checkpoint.pkl`` is replaced (written aside, fsynced, renamed) with that state and
the byte offset of ``outcomes.jsonl`` it has learned up to. A rerun restores it and
replays only the outcomes after that offset (at most ``INTERVAL_S`` seconds of the run,
or the outcomes a kill left unsaved); the prompts before ``position`` in the pool are
skipped unread.

A checkpoint is an optimisation, never the record: the outcomes are. It is used only
if it fits the file it describes (at least ``offset`` bytes, the same bytes just before
``offset``; a run directory copied or moved keeps it); ``RunDir.rewrite_outcomes``
(``retry-failed``) deletes it first; and a run whose router or reward cannot be copied
(an object that does not pickle, a reward model that relearns state itself) writes
none: it resumes by a full replay, as before. The file is read with an unpickler that
builds only the classes of this run's router and reward steps, numpy arrays and plain
containers, never code named by the file.
"""

from __future__ import annotations

import contextlib
import io
import logging
import pickle
import time
from collections import defaultdict, deque
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arbitrage.pipeline import relearn
from arbitrage.records import Outcome, replacing
from reward.base import RewardModel
from routers.base import Router

log = logging.getLogger(__name__)

NAME = "checkpoint.pkl"
VERSION = 2  # bumped when a router's or reward's saved state changes shape
INTERVAL_S = 30.0
_OURS = {"arbitrage", "routers", "reward"}  # packages whose classes a checkpoint may hold
_TAIL = 4096  # bytes before ``offset`` that must match: the file is the one learned from
_PLAIN = {
    "builtins": {
        "bool", "bytearray", "bytes", "complex", "dict", "float", "frozenset", "int",
        "list", "object", "range", "set", "slice", "str", "tuple",
    },
    "collections": {"Counter", "OrderedDict", "defaultdict", "deque"},
    "copyreg": {"_reconstructor"},
    "random": {"Random"},
    "_codecs": {"encode"},
}  # fmt: skip
_NUMPY = {
    "numpy": {"dtype", "ndarray"},
    **{f"numpy.{core}.multiarray": {"_reconstruct", "scalar"} for core in ("core", "_core")},
    **{f"numpy.{core}.numeric": {"_frombuffer"} for core in ("core", "_core")},
}


@dataclass
class Checkpoint:
    """What ``checkpoint.pkl`` holds: the learned state and where in the run it is from."""

    offset: int  # bytes of outcomes.jsonl learned from
    tail: bytes  # the ``_TAIL`` bytes before ``offset``
    position: int  # prompts of the pool before the first not committed
    ahead: frozenset[str]  # ids finished further on in the pool (normally none)
    finished: int  # prompts finished, for the progress bar
    kept: int  # of them with a winner
    pool: (
        tuple[int, int, str, int] | None
    )  # prompts.jsonl (size, mtime_ns), what it holds, its size
    router: bytes
    reward: bytes
    version: int = VERSION


class _Pickler(pickle.Pickler):
    def __init__(self, fh: io.BytesIO, leaves: Sequence[object]) -> None:
        super().__init__(fh, protocol=pickle.HIGHEST_PROTOCOL)
        self._leaves = {id(leaf): i for i, leaf in enumerate(leaves)}

    def persistent_id(self, obj: Any) -> int | None:
        return self._leaves.get(id(obj))


class _Unpickler(pickle.Unpickler):
    def __init__(self, fh: io.BytesIO, leaves: Sequence[object], modules: Collection[str]):
        super().__init__(fh)
        self._leaves = leaves
        self._modules = modules

    def persistent_load(self, pid: Any) -> Any:
        return self._leaves[pid]

    def find_class(self, module: str, name: str) -> Any:
        if name in _PLAIN.get(module, ()) or name in _NUMPY.get(module, ()):
            return super().find_class(module, name)
        if module in self._modules:
            found = super().find_class(module, name)
            if isinstance(found, type):  # a class of this run's state, never a function
                return found
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a checkpoint")


def _dumps(obj: object, leaves: Sequence[object] = ()) -> bytes:
    fh = io.BytesIO()
    _Pickler(fh, leaves).dump(obj)
    return fh.getvalue()


def _loads(data: bytes, modules: Collection[str], leaves: Sequence[object] = ()) -> Any:
    return _Unpickler(io.BytesIO(data), leaves, modules).load()


def _graph(obj: object, leaves: Sequence[object]) -> set[str]:
    """The modules of the objects a copy of ``obj`` builds (its classes and theirs, and the
    modules of their base classes, whose helpers it may come to hold as it learns)."""
    seen: set[int] = {id(leaf) for leaf in leaves}
    modules: set[str] = set()
    stack = [obj]
    while stack:
        item = stack.pop()
        if id(item) in seen or isinstance(item, (str, bytes, int, float, bool, type(None))):
            continue
        seen.add(id(item))
        cls = item if isinstance(item, type) else type(item)
        if item is obj:
            modules.add(cls.__module__)
        modules.update(c.__module__ for c in cls.__mro__ if c.__module__.split(".")[0] in _OURS)
        if isinstance(item, type):
            continue
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
            if isinstance(item, defaultdict):
                stack.append(item.default_factory)
        elif isinstance(item, (list, tuple, set, frozenset, deque)):
            stack.extend(item)
        if hasattr(item, "__dict__"):
            stack.extend(vars(item).values())
        for slots in (getattr(c, "__slots__", ()) for c in cls.__mro__):
            names = (slots,) if isinstance(slots, str) else slots
            stack.extend(getattr(item, name) for name in names if hasattr(item, name))
    return modules


@dataclass
class Shadow:
    """A copy of the router and of the reward's adjusting steps that learns each appended
    window, as a rerun would replay it; ``None`` from ``shadow_of`` where they cannot be
    copied."""

    router: Router
    reward: RewardModel
    leaves: list[RewardModel]
    last: float = field(default_factory=time.monotonic)
    fresh: bool = False  # learned something since the last save

    def learn(self, outcomes: Sequence[Outcome]) -> None:
        """What a rerun would replay of these outcomes (``pipeline.relearn``)."""
        relearn(self.router, self.reward, outcomes)
        self.fresh = self.fresh or bool(outcomes)

    def due(self) -> bool:
        return self.fresh and time.monotonic() - self.last >= INTERVAL_S

    def snapshot(self) -> tuple[bytes, bytes]:
        return _dumps(self.router), _dumps(self.reward, self.leaves)


def shadow_of(router: Router, reward: RewardModel) -> Shadow | None:
    """A copy of ``router`` and of ``reward``'s steps as they are now (sharing the reward's
    call-making parts, which must learn nothing on replay), or ``None`` if they cannot be
    copied."""
    leaves = reward.parts()
    if any(type(leaf).replay is not RewardModel.replay for leaf in leaves):
        return None  # a part that relearns itself would learn twice
    modules = _modules(router, reward)
    try:
        copy_router = _loads(_dumps(router), modules)
        copy_reward = _loads(_dumps(reward, leaves), modules, leaves)
    except Exception as exc:
        log.info("no resume checkpoint for this run: %s: %s", type(exc).__name__, exc)
        return None
    return Shadow(copy_router, copy_reward, leaves)


def _modules(router: Router, reward: RewardModel) -> frozenset[str]:
    return frozenset(_graph(router, ()) | _graph(reward, reward.parts()))


def _tail(path: Path, offset: int) -> bytes:
    with path.open("rb") as fh:
        fh.seek(max(0, offset - _TAIL))
        return fh.read(min(offset, _TAIL))


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def save(
    run: Path,
    shadow: Shadow,
    *,
    offset: int,
    position: int,
    ahead: Iterable[str],
    finished: int,
    kept: int,
    pool: tuple[str, int] | None,
) -> None:
    """Replace ``checkpoint.pkl`` with the shadow's state: what it learned from the first
    ``offset`` bytes of ``outcomes.jsonl`` (the end of the last window appended whole).
    A failure (a full disk) loses only the checkpoint: the next rerun replays more."""
    outcomes, prompts = run / "outcomes.jsonl", run / "prompts.jsonl"
    router, reward = shadow.snapshot()
    point = Checkpoint(
        offset=offset,
        tail=_tail(outcomes, offset),
        position=position,
        ahead=frozenset(ahead),
        finished=finished,
        kept=kept,
        pool=(*_stat(prompts), *pool) if pool is not None else None,
        router=router,
        reward=reward,
    )
    try:
        with replacing(run / NAME) as fh:
            fh.write(_dumps(point))
    except OSError as exc:
        log.warning("resume checkpoint not saved (%s); a rerun replays outcomes.jsonl", exc)
    shadow.last = time.monotonic()
    shadow.fresh = False


def load(run: Path) -> Checkpoint | None:
    """The run's checkpoint, if there is one that fits its ``outcomes.jsonl``; else
    ``None`` (the run replays every outcome)."""
    path, outcomes = run / NAME, run / "outcomes.jsonl"
    if not path.exists() or not outcomes.exists():
        return None
    try:
        point = _loads(path.read_bytes(), {__name__})
        if not isinstance(point, Checkpoint) or point.version != VERSION:
            return None
        if outcomes.stat().st_size < point.offset:
            return None
        if _tail(outcomes, point.offset) != point.tail:
            return None
    except Exception as exc:
        log.info("resume checkpoint ignored: %s: %s", type(exc).__name__, exc)
        return None
    return point


def pool_cached(run: Path, point: Checkpoint | None) -> tuple[str, int] | None:
    """What the pool holds and its size as the checkpoint saw them, if ``prompts.jsonl`` has not
    changed since (a ``target_rows`` round appends to it)."""
    if point is None or point.pool is None:
        return None
    size, mtime, line, total = point.pool
    with contextlib.suppress(OSError):
        if _stat(run / "prompts.jsonl") == (size, mtime):
            return line, total
    return None


def restore(point: Checkpoint, router: Router, reward: RewardModel) -> RewardModel | None:
    """Put the checkpoint's state into ``router``; the reward to run with (the
    checkpoint's steps over this run's call-making parts). ``None`` if the checkpoint does
    not fit them (the run then replays every outcome)."""
    modules = _modules(router, reward)
    try:
        learned = _loads(point.router, modules)
        steps = _loads(point.reward, modules, reward.parts())
    except Exception as exc:
        log.info("resume checkpoint ignored: %s: %s", type(exc).__name__, exc)
        return None
    if type(learned) is not type(router) or type(steps) is not type(reward):
        return None
    vars(router).update(vars(learned))
    return steps


def drop(run: Path) -> None:
    """Delete the checkpoint (before ``outcomes.jsonl`` is rewritten)."""
    (run / NAME).unlink(missing_ok=True)
