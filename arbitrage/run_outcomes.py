"""A run's final outcomes, read from ``outcomes.jsonl`` when they are used, never held.

``outcomes.jsonl`` holds every window a run committed, across reruns; ``retry-failed``
may append a prompt's outcome again. The run's result is one outcome per prompt, in
the order of the pool (then its follow-up turns), the last one written for each id:
``RunOutcomes`` is that sequence, from an index of byte offsets (8 bytes a prompt), and
each pass over it reads the file again. The outputs stage (``RunDir.write_outputs``)
makes its passes over it, so its memory does not grow with the run's outcomes.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import TypeVar, overload

from arbitrage.records import Outcome, read_jsonl_row, scan_jsonl

WHAT = "outcome"
T = TypeVar("T")


class RunOutcomes(Sequence[Outcome]):
    """The final outcome of each prompt ``prompt_ids()`` names that ``path`` holds one
    for, in that order (the last row written for an id): a sequence of ``Outcome`` that
    reads each one from the file when it is used (a pass reads the file once, in order).

    ``prompt_ids`` is called once, or twice where the file is not in its order. The file
    must not change while the sequence is used: rows appended after it was indexed are
    not part of it.
    """

    def __init__(self, path: str | Path, prompt_ids: Callable[[], Iterable[str]]) -> None:
        self.path = Path(path)
        self._offsets = _index(self.path, prompt_ids) if self.path.exists() else array("q")

    def __len__(self) -> int:
        return len(self._offsets)

    @overload
    def __getitem__(self, i: int) -> Outcome: ...
    @overload
    def __getitem__(self, i: slice) -> list[Outcome]: ...
    def __getitem__(self, i: int | slice) -> Outcome | list[Outcome]:
        if isinstance(i, slice):
            return list(self._read(self._offsets[i]))
        return next(self._read([self._offsets[i]]))

    def __iter__(self) -> Iterator[Outcome]:
        return self._read(self._offsets)

    def at(self, indices: Iterable[int]) -> Iterator[Outcome]:
        """The outcomes at ``indices``, in that order, from one open file."""
        return self._read(self._offsets[i] for i in indices)

    def _read(self, offsets: Iterable[int]) -> Iterator[Outcome]:
        with self.path.open("rb") as fh:
            for offset in offsets:
                yield read_jsonl_row(fh, offset, Outcome.from_dict, WHAT)


def _index(path: Path, prompt_ids: Callable[[], Iterable[str]]) -> array[int]:
    """The byte offset of the row of each prompt with one, in ``prompt_ids()`` order.

    The common case (each row a distinct prompt of a pool of distinct ids, the rows in
    pool order) is found reading both once, with no per-prompt dict: 16 bytes a prompt.
    Otherwise an id → offset dict is built, for as long as the index takes."""
    import numpy as np

    ids = iter(prompt_ids())
    hashes = array("q")  # of every pool id: distinct, or the dict decides
    offsets = array("q")
    with closing(scan_jsonl(path, WHAT)) as rows:
        for _, offset, data in rows:
            row_id = data["prompt"]["id"]
            for pid in ids:
                hashes.append(hash(pid))
                if pid == row_id:
                    break
            else:  # out of pool order, written twice, or not in the pool
                return _index_by_id(path, prompt_ids())
            offsets.append(offset)
    hashes.extend(hash(pid) for pid in ids)
    if np.unique(np.frombuffer(hashes, dtype=np.int64)).size != len(hashes):
        return _index_by_id(path, prompt_ids())  # a pool id twice (or a hash collision)
    return offsets


def _index_by_id(path: Path, prompt_ids: Iterable[str]) -> array[int]:
    last = {data["prompt"]["id"]: offset for _, offset, data in scan_jsonl(path, WHAT)}
    return array("q", (last[pid] for pid in prompt_ids if pid in last))


class OutcomeRows(Sequence[T]):
    """Rows made from outcomes when they are read, never held: ``make(outcomes[i])``
    for each of ``indices``, in that order (the mixture's rows, its preference pairs)."""

    def __init__(
        self, outcomes: Sequence[Outcome], indices: Sequence[int], make: Callable[[Outcome], T]
    ) -> None:
        self.outcomes, self.indices, self.make = outcomes, indices, make

    def __len__(self) -> int:
        return len(self.indices)

    @overload
    def __getitem__(self, i: int) -> T: ...
    @overload
    def __getitem__(self, i: slice) -> list[T]: ...
    def __getitem__(self, i: int | slice) -> T | list[T]:
        if isinstance(i, slice):
            return [self.make(self.outcomes[j]) for j in self.indices[i]]
        return self.make(self.outcomes[self.indices[i]])

    def __iter__(self) -> Iterator[T]:
        if isinstance(self.outcomes, RunOutcomes):
            return map(self.make, self.outcomes.at(self.indices))
        return (self.make(self.outcomes[i]) for i in self.indices)


def subset(outcomes: Sequence[Outcome], indices: Sequence[int]) -> OutcomeRows[Outcome]:
    """The outcomes at ``indices``, in that order, read when they are used."""
    return OutcomeRows(outcomes, indices, _itself)


def _itself(outcome: Outcome) -> Outcome:
    return outcome
