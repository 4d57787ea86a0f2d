"""The records that cross boundaries: personas, prompts, generations, scored outcomes.

Each record is a frozen dataclass with ``to_dict``/``from_dict``; the JSONL files a
run writes (``prompts.jsonl``, ``outcomes.jsonl``) hold exactly these dicts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from arbitrage.errors import DataError

T = TypeVar("T", bound="_Record")
R = TypeVar("R")
_TAIL_CHUNK = 1 << 16  # bytes read at a time, from the end, to find a file's last line


class _Record:
    def to_dict(self) -> dict[str, Any]:
        """The record as plain data (a nested record by its own ``to_dict``); containers
        are new, values shared. ``dataclasses.asdict`` deep-copies every value: 5x slower
        on an outcome, and written once a prompt."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        names = _field_names(cls)  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})


@functools.cache
def _field_names(cls: type) -> frozenset[str]:
    # once a class: a run's outputs parse every outcome in each of their passes
    return frozenset(f.name for f in dataclasses.fields(cls))


def _plain(value: Any) -> Any:
    if isinstance(value, _Record):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


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
    the same id in every run. The verifiers' fields (``reward.verifiers``) are
    optional: ``reference`` (the right final answer), ``tests`` (code tests: Python
    source, or ``{"stdin": ..., "stdout": ...}``) and ``constraints`` (IFEval-style
    checks, ``{"kind": ..., ...params}``); a row leaves out the ones it lacks.
    """

    text: str
    language: str
    task: str
    persona: str = ""
    id: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    reference: str | None = None
    tests: list[Any] = field(default_factory=list)
    constraints: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(
                self, "id", content_id(self.text, self.language, self.task, self.persona)
            )

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        for key in ("reference", "tests", "constraints"):  # rows without them stay as they were
            if data[key] is None or data[key] == []:
                del data[key]
        return data

    def messages(self) -> list[dict[str, str]]:
        """The chat messages sent to a teacher: on a later turn of a conversation, the
        conversation so far (``meta["history"]``, ``arbitrage.prompts.conversation``) first."""
        return [*self.meta.get("history", ()), {"role": "user", "content": self.text}]

    def instruction(self) -> str:
        """What a reward reads as the instruction: the text, or on a later turn of a
        conversation the conversation so far and then the text (answers are scored in
        context)."""
        history = self.meta.get("history")
        if not history:
            return self.text
        said = "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in history)
        return (
            f"(The conversation so far)\n{said}\n\n"
            f"(The user's new message: the answer replies to it)\nUser: {self.text}"
        )


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
    #: Which of the teacher's ``samples`` this is (0 for the first, or the only one).
    sample: int = 0

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
    def sample(self) -> int:
        """Which of its teacher's samples this answer is (``Generation.sample``)."""
        return self.generation.sample

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
class Fusion(_Record):
    """A fuser's one answer written from a prompt's top candidates (``fusion`` config).

    ``sources``: the candidates it was given, best first (``teacher``, ``sample``,
    ``reward``); ``best_reward``: the best candidate's reward; ``kept``: whether the
    fused answer is the prompt's answer (it beat ``best_reward``, or ``keep: always``).
    """

    candidate: Candidate
    sources: tuple[dict[str, Any], ...] = ()
    best_reward: float | None = None
    kept: bool = False

    @property
    def gain(self) -> float | None:
        """The fused answer's reward minus the best candidate's (``None``: unscored)."""
        if not self.candidate.scored or self.best_reward is None:
            return None
        return float(self.candidate.reward) - self.best_reward  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fusion:
        return cls(
            candidate=Candidate.from_dict(data["candidate"]),
            sources=tuple(data.get("sources", ())),
            best_reward=data.get("best_reward"),
            kept=bool(data.get("kept", False)),
        )


@dataclass(frozen=True)
class Outcome(_Record):
    """Everything known about one prompt after routing, generation and scoring.

    ``winner`` is the teacher of the highest-reward candidate (ties go to the
    teacher listed first in the run's config, then to the lower sample), or ``None``
    if no candidate was scorable. ``routed_by`` names the router decision (e.g.
    ``warmup``, ``explore``, ``exploit``). ``fusion``: the fuser's answer, when the
    run fuses (it is never one of ``candidates``: routers learn about teachers).
    """

    prompt: Prompt
    candidates: tuple[Candidate, ...]
    winner: str | None = None
    routed_by: str = ""
    fusion: Fusion | None = None

    @property
    def best(self) -> Candidate | None:
        """The prompt's answer: the kept fused answer, else the winner's best sample."""
        if self.fusion is not None and self.fusion.kept:
            return self.fusion.candidate
        best = best_of(self.candidates, self.winner)
        return best or next((c for c in self.candidates if c.teacher == self.winner), None)

    def per_teacher(self) -> Outcome:
        """This outcome with each teacher's best sample only (what routers learn from: a
        teacher's reward for a prompt is the best of its samples) and no fusion."""
        if self.fusion is None and len({c.teacher for c in self.candidates}) == len(
            self.candidates
        ):
            return self
        teachers = dict.fromkeys(c.teacher for c in self.candidates)
        cands = []
        for teacher in teachers:
            best = best_of(self.candidates, teacher)
            cands.append(best or next(c for c in self.candidates if c.teacher == teacher))
        return Outcome(self.prompt, tuple(cands), self.winner, self.routed_by)

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
            fusion=Fusion.from_dict(data["fusion"]) if data.get("fusion") else None,
        )


def best_of(candidates: tuple[Candidate, ...], teacher: str | None) -> Candidate | None:
    """``teacher``'s best scored candidate (ties: the lower sample), else ``None``."""
    scored = [c for c in candidates if c.teacher == teacher and c.scored]
    if not scored:
        return None
    return max(scored, key=lambda c: (c.reward, -c.sample))


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


def read_jsonl(
    path: str | Path, parse: Callable[[Any], R], what: str, *, start: int = 0, offset: int = 0
) -> Iterator[R]:
    """The rows of a JSONL file a run writes, each through ``parse``, a line at a time
    (the file is never held in memory at once); blank lines are skipped, and so are the
    first ``start`` rows, unread (neither decoded nor checked). ``offset``: the byte the
    rows start at (a row's start: the end of a line); errors then count lines from there.

    Each line is read as bytes and decoded on its own, so one bad line is that line's
    problem, not the file's. A torn last line (no newline at its end, and not UTF-8 or
    not JSON: a kill or a full disk mid-write, maybe inside a multibyte character) is
    dropped. Any other bad line is an error.

    Raises:
        DataError: ``"<path>:<line>: corrupt <what> row (<reason>)"``.
    """
    where = f" (from byte {offset})" if offset else ""
    for n, _, data in scan_jsonl(path, what, start=start, offset=offset):
        try:
            yield parse(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(f"{path}:{n}{where}: corrupt {what} row ({_reason(exc)})") from None


def scan_jsonl(
    path: str | Path, what: str, *, start: int = 0, offset: int = 0
) -> Generator[tuple[int, int, Any], None, None]:
    """``read_jsonl``'s rows as decoded JSON (from byte ``offset``), each with its line
    number and the byte offset its line starts at (``read_jsonl_row`` reads it again
    from there)."""
    path = Path(path)
    where = f" (from byte {offset})" if offset else ""
    with path.open("rb") as fh:
        fh.seek(offset)
        for n, raw in enumerate(fh, 1):
            at, offset = offset, offset + len(raw)
            if not raw.strip():
                continue
            if start > 0:
                start -= 1
                continue
            try:
                data = _decode(raw)
            except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError
                if not raw.endswith(b"\n"):  # only the last line can end without one
                    return
                raise DataError(f"{path}:{n}{where}: corrupt {what} row ({_reason(exc)})") from None
            yield n, at, data


def read_jsonl_row(fh: BinaryIO, offset: int, parse: Callable[[Any], R], what: str) -> R:
    """The row of an open JSONL file (``"rb"``) whose line starts at byte ``offset``
    (``scan_jsonl``), through ``parse``; the file is left just past that line.

    Raises:
        DataError: ``"<path>: corrupt <what> row at byte <offset> (<reason>)"``.
    """
    if fh.tell() != offset:
        fh.seek(offset)
    raw = fh.readline()
    try:
        return parse(_decode(raw))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataError(
            f"{fh.name}: corrupt {what} row at byte {offset} ({_reason(exc)})"
        ) from None


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[BinaryIO]:
    """A file to write that replaces ``path`` at once: written aside (``<name>.tmp``),
    fsynced, then renamed over it. A kill leaves the old file or the new one, never part
    of either; a failure (a full disk) leaves no temporary file behind."""
    tmp = path.with_name(f"{path.name}.tmp")
    try:
        with tmp.open("wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


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
