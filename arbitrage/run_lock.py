"""One writer per run directory: an exclusive ``flock`` on ``RUN_DIR/.lock``.

Every command that writes a run directory (``arbitrage run`` on either engine,
``retry-failed``) holds the lock from start to exit; a second one refuses at once
with ``RunLocked``. The kernel drops a ``flock`` when its holder dies, so a lock
file left by a killed process never blocks a resume: its JSON (pid, host, since)
only says who holds the lock now.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import datetime, timezone
from pathlib import Path

from arbitrage.errors import RunLocked

LOCK_NAME = ".lock"

# Directories this task already holds: retry-failed takes the lock, then resumes the run
# through arun_config, which takes it again. A second run in another task of the same
# process is not in its context, so it opens the file again and is refused like any other.
_HELD: ContextVar[frozenset[Path]] = ContextVar("arbitrage_run_locks", default=frozenset())


@contextlib.contextmanager
def hold_run_dir(path: str | Path) -> Iterator[None]:
    """Hold ``path``'s lock for the block (creating ``path`` if needed), or raise
    ``RunLocked`` naming the holder. Re-entrant within one task."""
    import fcntl

    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    key = directory.resolve()
    held = _HELD.get()
    if key in held:
        yield
        return
    lock_file = directory / LOCK_NAME
    # os.open's descriptor is not inherited, so no child (a Ray raylet) outlives us holding it.
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _locked(directory, lock_file) from None
        since = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": since}
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(holder) + "\n").encode())
        token = _HELD.set(held | {key})
        try:
            yield
        finally:
            _HELD.reset(token)
            os.ftruncate(fd, 0)  # before unlocking: the next holder writes its own
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _locked(directory: Path, lock_file: Path) -> RunLocked:
    try:
        holder = json.loads(lock_file.read_text(encoding="utf-8"))
        pid, host, since = int(holder["pid"]), str(holder["host"]), str(holder["since"])
    except (OSError, ValueError, KeyError, TypeError):  # the holder has not written it yet
        return RunLocked(
            f"{directory} is in use by another arbitrage run; wait for it or stop it",
            path=str(directory),
        )
    return RunLocked(
        f"{directory} is in use by pid {pid} on {host} since {since} "
        "(another arbitrage run); wait for it or stop it",
        path=str(directory),
        pid=pid,
        host=host,
        since=since,
    )
