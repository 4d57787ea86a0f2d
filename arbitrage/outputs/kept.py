"""What the mixture keeps of a row while it filters and balances: a ``RowMeta``, stored
by column (``Kept``: about 30 bytes a row), never the row's texts or its id."""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple, overload


class RowMeta(NamedTuple):
    """What the quotas, the counts and the card read of a row: its outcome's position
    in the outcomes the mixture was made from and a few short values."""

    position: int
    language: str
    task: str
    teacher: str
    reward: float
    basis: str
    fused: bool

    @classmethod
    def of(cls, position: int, row: dict[str, Any]) -> RowMeta:
        return cls(
            position,
            row["language"],
            row["task"],
            row["teacher"],
            row["reward"],
            str(row.get("basis", "model")),
            bool(row.get("fused_from")),
        )


_NAMES = ("language", "task", "teacher", "basis")  # few values, stored as codes


class Kept(Sequence[RowMeta]):
    """``RowMeta``s by column: a position, a reward, a flag and four small codes a row
    (a language, a task, a teacher and a basis are a few values shared by every row)."""

    def __init__(self, rows: Iterable[RowMeta] = ()) -> None:
        self.position = array("q")
        self.reward = array("d")
        self.fused = array("b")
        self._codes = {name: array("I") for name in _NAMES}
        self._values: list[str] = []
        self._code_of: dict[str, int] = {}
        for row in rows:
            self.append(row)

    def append(self, row: RowMeta) -> None:
        self.position.append(row.position)
        self.reward.append(row.reward)
        self.fused.append(row.fused)
        for name in _NAMES:
            value = getattr(row, name)
            code = self._code_of.setdefault(value, len(self._values))
            if code == len(self._values):
                self._values.append(value)
            self._codes[name].append(code)

    def __len__(self) -> int:
        return len(self.position)

    @overload
    def __getitem__(self, i: int) -> RowMeta: ...
    @overload
    def __getitem__(self, i: slice) -> Kept: ...
    def __getitem__(self, i: int | slice) -> RowMeta | Kept:
        if isinstance(i, slice):
            return self.select(range(len(self))[i])
        values, codes = self._values, self._codes
        return RowMeta(
            self.position[i],
            values[codes["language"][i]],
            values[codes["task"][i]],
            values[codes["teacher"][i]],
            self.reward[i],
            values[codes["basis"][i]],
            bool(self.fused[i]),
        )

    def __iter__(self) -> Iterator[RowMeta]:
        return (self[i] for i in range(len(self)))

    def column(self, name: str) -> list[str]:
        """One of ``language``, ``task``, ``teacher``, ``basis`` for every row."""
        values = self._values
        return [values[code] for code in self._codes[name]]

    def select(self, indices: Iterable[int]) -> Kept:
        """The rows at ``indices``, in that order."""
        out = Kept()
        out._values, out._code_of = self._values, self._code_of  # the codes stay valid
        for i in indices:
            out.position.append(self.position[i])
            out.reward.append(self.reward[i])
            out.fused.append(self.fused[i])
            for name in _NAMES:
                out._codes[name].append(self._codes[name][i])
        return out
