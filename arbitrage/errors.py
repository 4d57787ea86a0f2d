"""Every error data-arbitrage raises on purpose.

    ArbitrageError
    ├── ConfigError        bad config key or value (names the key)
    ├── DataError          persona / prompt source missing or malformed
    ├── TeacherError       a teacher call failed (teacher, prompt id, status)
    │   └── TeacherUnavailable  the teacher's circuit breaker is open
    ├── RewardError        a reward model could not score
    ├── RoutingError       a router returned an unusable assignment
    ├── ModelNotAvailable  a local model's weights or backend are not installed
    ├── BudgetExceeded     the run would cross its budget
    ├── NoTeacherAvailable every teacher's circuit breaker is open
    ├── ClusterError       Ray could not be reached, or a worker died past its restarts
    └── RunLocked          another process is writing the run directory (pid, host, since)

The CLI prints ``str(error)`` of any of these as one line and exits non-zero.
"""

from __future__ import annotations


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
