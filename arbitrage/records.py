"""The records that cross boundaries: personas, prompts, generations, scored outcomes.

Each record is a frozen dataclass with ``to_dict``/``from_dict``; the JSONL files a
run writes (``prompts.jsonl``, ``outcomes.jsonl``) hold exactly these dicts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from arbitrage.errors import DataError

T = TypeVar("T", bound="_Record")
R = TypeVar("R")
_TAIL_CHUNK = 1 << 16  # bytes read at a time, from the end, to find a file's last line


class _Record:
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload,no-any-return]

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})


def content_id(*parts: str, length: int = 16) -> str:
    """A stable id derived from content: the same parts always give the same id."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return digest[:length]


@dataclass(frozen=True)
class Persona(_Record):
    """A persona that seeds one or more prompts."""

    text: str
    id: str = ""
    source: str = "bundled"

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", content_id(self.text, length=12))


@dataclass(frozen=True)
class Prompt(_Record):
    """One instruction to be answered by a teacher.

    ``id`` is derived from (text, language, task, persona), so the same prompt gets
    the same id in every run.
    """

    text: str
    language: str
    task: str
    persona: str = ""
    id: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(
                self, "id", content_id(self.text, self.language, self.task, self.persona)
            )

    def messages(self) -> list[dict[str, str]]:
        """The chat messages sent to a teacher."""
        return [{"role": "user", "content": self.text}]


@dataclass(frozen=True)
class Usage(_Record):
    """Token counts of one call."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def from_response(cls, response: Any) -> Usage:
        """The counts of a litellm / OpenAI-style response (0 where it gives none)."""
        usage = getattr(response, "usage", None)
        return cls(
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        )


@dataclass(frozen=True)
class Generation(_Record):
    """One teacher's answer to one prompt, or the reason there is none.

    ``ok`` is true only for a non-empty, complete answer: truncated
    (``finish_reason == "length"``), empty and failed calls are kept as data but
    never treated as good completions.
    """

    prompt_id: str
    teacher: str
    model: str
    text: str = ""
    finish_reason: str = ""
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    latency_s: float = 0.0
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def failed(self) -> bool:
        """The call failed (``status == "error"``): it says nothing about the teacher's
        answers, and ``retry-failed`` asks again."""
        return bool(self.error)

    @property
    def status(self) -> str:
        """``ok``, ``error``, ``filtered`` (the provider's content filter cut it),
        ``empty`` or ``truncated``."""
        if self.error:
            return "error"
        if self.finish_reason == "content_filter":
            return "filtered"
        if not self.text.strip():
            return "empty"
        if self.finish_reason == "length":
            return "truncated"
        return "ok"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Generation:
        data = dict(data)
        if isinstance(data.get("usage"), dict):
            data["usage"] = Usage.from_dict(data["usage"])
        return super().from_dict(data)


@dataclass(frozen=True)
class Candidate(_Record):
    """A generation with its reward (``None`` when it was not scorable)."""

    generation: Generation
    reward: float | None = None
    reward_details: dict[str, float] = field(default_factory=dict)

    @property
    def teacher(self) -> str:
        return self.generation.teacher

    @property
    def scored(self) -> bool:
        """A complete answer (``Generation.ok``) with a reward: the only kind of candidate
        that can win, be compared with another or teach a router its reward."""
        return self.reward is not None and self.generation.ok

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidate:
        data = dict(data)
        data["generation"] = Generation.from_dict(data["generation"])
        return super().from_dict(data)


@dataclass(frozen=True)
class Outcome(_Record):
    """Everything known about one prompt after routing, generation and scoring.

    ``winner`` is the teacher of the highest-reward candidate (ties go to the
    teacher listed first in the run's config), or ``None`` if no candidate was
    scorable. ``routed_by`` names the router decision (e.g. ``warmup``,
    ``explore``, ``exploit``).
    """

    prompt: Prompt
    candidates: tuple[Candidate, ...]
    winner: str | None = None
    routed_by: str = ""

    @property
    def best(self) -> Candidate | None:
        for cand in self.candidates:
            if cand.teacher == self.winner:
                return cand
        return None

    @property
    def n_generations(self) -> int:
        return len(self.candidates)

    @property
    def has_failed_call(self) -> bool:
        """A candidate's call failed (``Generation.failed``)."""
        return any(c.generation.failed for c in self.candidates)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outcome:
        return cls(
            prompt=Prompt.from_dict(data["prompt"]),
            candidates=tuple(Candidate.from_dict(c) for c in data["candidates"]),
            winner=data.get("winner"),
            routed_by=data.get("routed_by", ""),
        )


def pick_winner(candidates: tuple[Candidate, ...], teacher_order: list[str]) -> str | None:
    """The teacher of the best scored candidate; ties broken by ``teacher_order``."""
    scored = [c for c in candidates if c.scored]
    if not scored:
        return None
    rank = {name: i for i, name in enumerate(teacher_order)}
    best = max(scored, key=lambda c: (c.reward, -rank.get(c.teacher, len(rank))))
    return best.teacher


def dumps(record: _Record) -> str:
    """One JSONL line for a record."""
    return json.dumps(record.to_dict(), ensure_ascii=False, sort_keys=True)


def read_jsonl(path: str | Path, parse: Callable[[Any], R], what: str) -> Iterator[R]:
    """The rows of a JSONL file a run writes, each through ``parse``, a line at a time
    (the file is never held in memory at once); blank lines are skipped.

    Each line is read as bytes and decoded on its own, so one bad line is that line's
    problem, not the file's. A torn last line (no newline at its end, and not UTF-8 or
    not JSON: a kill or a full disk mid-write, maybe inside a multibyte character) is
    dropped. Any other bad line is an error.

    Raises:
        DataError: ``"<path>:<line>: corrupt <what> row (<reason>)"``.
    """
    path = Path(path)
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                data = _decode(raw)
            except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError
                if not raw.endswith(b"\n"):  # only the last line can end without one
                    return
                raise DataError(f"{path}:{n}: corrupt {what} row ({_reason(exc)})") from None
            try:
                yield parse(data)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise DataError(f"{path}:{n}: corrupt {what} row ({_reason(exc)})") from None


def end_whole_line(path: str | Path) -> None:
    """Before rows are appended to a JSONL file, make it end with a whole line, as
    ``read_jsonl`` read it: a torn last line is cut off (the file truncated in place,
    every byte before it untouched) and a whole row that lacks only its newline gets
    one. Reads the file's tail only, however long the file."""
    with Path(path).open("rb+") as fh:
        start = _last_line_start(fh, fh.seek(0, os.SEEK_END))
        fh.seek(start)
        tail = fh.read()
        if not tail or tail.endswith(b"\n"):
            return
        try:
            _decode(tail)
        except ValueError:  # torn: read_jsonl drops it
            fh.truncate(start)
        else:  # read_jsonl reads it: keep it
            fh.write(b"\n")
        fh.flush()
        os.fsync(fh.fileno())


def _last_line_start(fh: BinaryIO, end: int) -> int:
    """The offset after the last newline before ``end`` (0 if there is none)."""
    pos = end
    while pos > 0:
        step = min(_TAIL_CHUNK, pos)
        fh.seek(pos - step)
        newline = fh.read(step).rfind(b"\n")
        if newline >= 0:
            return pos - step + newline + 1
        pos -= step
    return 0


def _decode(raw: bytes) -> Any:
    return json.loads(raw.decode("utf-8"))


def _reason(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 at byte {exc.start}"
    if isinstance(exc, KeyError):
        return f"no {exc}"
    return f"{type(exc).__name__}: {exc}"
