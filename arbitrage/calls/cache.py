"""Durable call cache: every returned call (teacher, writer, judge), stored the moment it
returns.

A call is keyed by a content hash of what decides its answer: model, ``api_base``,
messages and generation parameters (seed included). The API key, the timeout and
the transport retry count are not part of the key, and the key is never stored.
Rows hold the ``Generation`` as JSON (no pickle). Failed calls are never stored,
so a rerun retries them; empty and truncated answers are stored as what they are.

SQLite in WAL mode with one statement per transaction: a SIGKILL loses at most the
call being written, and a rerun of the same config asks no teacher again for
anything that already came back. A full disk is ``DiskFull`` and a file whose pages
are corrupt a ``DataError``, each one line that says what to do: the rows already
stored stay where they are.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from arbitrage.errors import ArbitrageError, DataError, DiskFull
from arbitrage.records import Generation

# Request keys that change how a call is sent, never what it answers.
_NOT_IN_KEY = frozenset({"api_key", "timeout", "max_retries", "num_retries"})
_SCHEMA = 1
_SQLITE_FULL = 13  # sqlite3.SQLITE_FULL from Python 3.11 on


def request_key(kwargs: dict[str, Any]) -> str:
    """The cache key of one completion request (``litellm.acompletion`` keyword arguments)."""
    data = {k: v for k, v in kwargs.items() if k not in _NOT_IN_KEY}
    text = json.dumps([_SCHEMA, data], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class CallCache:
    """A SQLite file of finished calls; safe to share between threads and tasks.

    Args:
        path: The SQLite file (created with its parent folder if missing).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.writes = 0
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # durable against a killed process
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, teacher TEXT, "
                "model TEXT, status TEXT, generation TEXT NOT NULL, created REAL)"
            )
        except sqlite3.DatabaseError as exc:
            if _full(exc):
                raise DiskFull(self.path) from None
            raise DataError(f"{self.path}: not a usable call cache ({exc})") from None

    def get(self, key: str) -> Generation | None:
        """The stored answer for ``key``, or ``None``."""
        with self._lock, self._failing():
            row = self._db.execute("SELECT generation FROM calls WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        try:
            gen = Generation.from_dict(json.loads(row[0]))
        except (ValueError, KeyError, TypeError) as exc:  # a row SQLite reads, but not ours
            raise self._error(sqlite3.DatabaseError(f"row {key[:12]}: {exc}")) from None
        self.hits += 1
        return gen

    def put(self, key: str, generation: Generation) -> None:
        """Store a returned call; a failed one (``status == "error"``) is not stored."""
        if generation.error:
            return
        record = json.dumps(generation.to_dict(), ensure_ascii=False, sort_keys=True)
        with self._lock, self._failing():
            self._db.execute(
                "INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?, ?, ?)",
                (key, generation.teacher, generation.model, generation.status, record, time.time()),
            )
            self.writes += 1

    def paid_usd(self) -> float:
        """USD already paid for the calls stored here (every row's ``cost_usd``, judges'
        included): what a rerun of the same calls will not pay again."""
        with self._lock, self._failing():
            try:
                (total,) = self._db.execute(
                    "SELECT SUM(json_extract(generation, '$.cost_usd')) FROM calls"
                ).fetchone()
            except sqlite3.OperationalError:  # an SQLite built without JSON functions
                rows = self._db.execute("SELECT generation FROM calls").fetchall()
                total = sum(float(json.loads(r[0]).get("cost_usd") or 0.0) for r in rows)
        return float(total or 0.0)

    def __len__(self) -> int:
        with self._lock, self._failing():
            return int(self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0])

    @contextlib.contextmanager
    def _failing(self) -> Iterator[None]:
        """SQLite's errors as what they mean for the run: the disk is full, or the file
        is corrupt (its header may be intact while its pages are not)."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from None

    def _error(self, exc: sqlite3.DatabaseError) -> ArbitrageError:
        if _full(exc):
            return DiskFull(self.path)
        return DataError(
            f"{self.path}: the call cache is corrupt ({exc}); move it aside and rerun the "
            "same command: finished prompts are kept, calls not among them are asked again"
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> CallCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _full(exc: sqlite3.DatabaseError) -> bool:
    """Whether SQLite failed for want of space (``SQLITE_FULL``)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:  # Python 3.10 keeps no code, only SQLite's message for it
        return str(exc) == "database or disk is full"
    return bool(code == _SQLITE_FULL)
