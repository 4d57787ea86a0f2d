"""Every error data-arbitrage raises on purpose.

    ArbitrageError
    ├── ConfigError        bad config key or value (names the key)
    ├── DataError          persona / prompt source missing or malformed
    ├── TeacherError       a teacher call failed (teacher, prompt id, status)
    │   ├── TeacherUnavailable  the teacher's circuit breaker is open
    │   └── CallRejected   no call of this model can succeed: its key refused (401/403),
    │                      no such model (404) or provider; the run stops at once
    ├── RewardError        a reward model could not score
    ├── RoutingError       a router returned an unusable assignment
    ├── ModelNotAvailable  a local model's weights or backend are not installed
    ├── BudgetExceeded     the run would cross its budget
    ├── NoTeacherAvailable every teacher's circuit breaker is open
    ├── ClusterError       Ray could not be reached, or a worker died past its restarts
    ├── RunLocked          another process is writing the run directory (pid, host, since)
    └── DiskFull           a write found no space left (ENOSPC): a rerun with space resumes

The CLI prints ``str(error)`` of any of these as one line and exits non-zero.
"""

from __future__ import annotations

import errno
import os

#: ``OSError.errno`` values that mean "no room to write": the disk, or the user's quota.
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


class ArbitrageError(Exception):
    """Base class for errors raised by data-arbitrage."""


class ConfigError(ArbitrageError):
    """A config key or value is invalid."""


class DataError(ArbitrageError):
    """Input data (personas, prompts, a run directory) is missing or malformed."""


class TeacherError(ArbitrageError):
    """A teacher call failed.

    Attributes:
        teacher: Teacher name.
        prompt_id: Prompt the call was for, if known.
        status_code: HTTP status of the failure, if there was one.
    """

    def __init__(
        self,
        message: str,
        *,
        teacher: str,
        prompt_id: str | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.teacher = teacher
        self.prompt_id = prompt_id
        self.status_code = status_code


class TeacherUnavailable(TeacherError):
    """The teacher's circuit breaker is open: it takes no calls until its cooldown ends."""


class CallRejected(TeacherError):
    """A call failed in a way no retry or other prompt will fix: the provider refused
    the API key (401, 403), knows no such model (404), or litellm knows no such
    provider. The run stops at once instead of paying for a dataset of failures; the
    message names the caller and what was wrong, never the key."""


class RewardError(ArbitrageError):
    """A reward model failed to score a batch."""


class RoutingError(ArbitrageError):
    """A router produced an assignment the pipeline cannot carry out."""


class ModelNotAvailable(ArbitrageError):
    """A bundled local model or its backend is not installed."""


class BudgetExceeded(ArbitrageError):
    """Carrying on would spend more than the configured budget."""


class NoTeacherAvailable(ArbitrageError):
    """Every teacher's circuit breaker is open: the run stops, keeping what is done."""


class ClusterError(ArbitrageError):
    """``engine: ray``: the cluster could not be reached, or a worker died for good."""


class RunLocked(ArbitrageError):
    """Another process holds the run directory's lock (``arbitrage.run_lock``).

    Attributes:
        path: The run directory.
        pid: The holder's process id, if its lock file says.
        host: The holder's host name, if its lock file says.
        since: When the holder took the lock (UTC), if its lock file says.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str,
        pid: int | None = None,
        host: str | None = None,
        since: str | None = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.pid = pid
        self.host = host
        self.since = since


class DiskFull(ArbitrageError):
    """A write found no space left on its disk (``NO_SPACE``). Every row and call
    written before it is kept, so a rerun of the same command with space resumes.

    Attributes:
        path: The file that could not be written.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(
            f"{path}: the disk is full (no space left on device); what was written before "
            "is kept - free some space and rerun the same command to resume"
        )
        self.path = str(path)
