"""The ``code`` reward: does the answer's code pass the prompt's tests?

The answer's code is its last fenced Python block (```` ```python ````, ```` ```py ```` or
an untagged fence), or the whole answer when it is Python. Each of the prompt's
``tests`` runs in its own sandbox (``reward.verifiers.sandbox``):

- a string is Python run after the code (``assert solve(2) == 4``): it passes when the
  script exits cleanly;
- ``{"stdin": "...", "stdout": "..."}`` runs the code as a program with that input: it
  passes when its output is the expected one (trailing spaces and blank lines aside).

Score = the fraction of tests passed. A test that times out, runs out of CPU or
memory, or crashes is a failed test whose reason is kept (``code_failure.<status>``
counts in the details); an answer without code scores 0. A prompt without tests
leaves its answers unscored.
"""

from __future__ import annotations

import ast
import asyncio
import re
import threading
from collections import Counter
from typing import Any, ClassVar

from arbitrage.records import Prompt
from reward.base import RewardModel, Score
from reward.verifiers.basis import TESTS, VERIFIED
from reward.verifiers.sandbox import Limits, Result, run_python

_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)```", re.DOTALL)


def extract_code(text: str) -> str | None:
    """The answer's code: its last Python (or untagged) fenced block, else the whole
    answer if it parses as Python, else ``None``."""
    tags = ("", "python", "py", "python3")
    blocks = [body for tag, body in _FENCE.findall(text) if tag.lower() in tags]
    if blocks:
        return blocks[-1]
    try:
        ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    return text if text.strip() else None


def check_test(test: Any) -> str | None:
    """Why ``test`` is not a test, or ``None`` when it is one."""
    if isinstance(test, str):
        return None if test.strip() else "a test is non-empty Python source"
    keys_ok = isinstance(test, dict) and set(test) <= {"stdin", "stdout"} and "stdout" in test
    if keys_ok and all(isinstance(v, str) for v in test.values()):
        return None
    return 'a test is Python source or {"stdin": "...", "stdout": "..."} (strings)'


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip().splitlines()]


def run_test(code: str, test: str | dict[str, str], limits: Limits) -> Result:
    """One test of ``code``; ``Result.ok`` when it passed."""
    if isinstance(test, str):
        return run_python(f"{code}\n\n{test}\n", limits=limits)
    got = run_python(code, stdin=test.get("stdin", ""), limits=limits)
    if got.ok and _lines(got.stdout) != _lines(test["stdout"]):
        return Result("wrong_output", "output differs", got.stdout, got.stderr)
    return got


class CodeVerifier(RewardModel):
    """Scores the share of the prompt's tests the answer's code passes.

    ``details``: ``code_passed``, ``code_tests``, ``basis_tests: 1``, ``verified``
    (1.0 when every test passed) and
    ``code_failure.<status>`` (how many tests ended that way: ``error``,
    ``wrong_output``, ``timeout``, ``cpu_limit``, ``memory_limit``, ``killed``,
    ``no_code``).

    Args:
        cpu_s, wall_s, memory_mb: Each test's limits (``sandbox.Limits``).
        max_parallel: Tests running at once.
    """

    name: ClassVar[str] = "code"

    def __init__(
        self, *, cpu_s: int = 5, wall_s: float = 10.0, memory_mb: int = 512, max_parallel: int = 2
    ) -> None:
        if cpu_s < 1 or wall_s <= 0 or memory_mb < 64 or max_parallel < 1:
            raise ValueError(
                "code limits: cpu_s >= 1, wall_s > 0, memory_mb >= 64, max_parallel >= 1"
            )
        self.limits = Limits(cpu_s=cpu_s, wall_s=wall_s, memory_mb=memory_mb)
        self.max_parallel = max_parallel
        # a thread semaphore: tests run in threads, whichever event loop awaits them
        self._slots = threading.BoundedSemaphore(max_parallel)

    async def ascore(self, prompt: Prompt, completion: str) -> Score:
        if not prompt.tests:
            return Score(None)
        code = extract_code(completion)
        details: dict[str, float] = {TESTS: 1.0, "code_tests": float(len(prompt.tests))}
        if code is None:
            return Score(
                0.0, {**details, "code_passed": 0.0, "code_failure.no_code": 1.0, VERIFIED: 0.0}
            )
        results = await asyncio.gather(*(self._run(code, t) for t in prompt.tests))
        failures = Counter(r.status for r in results if not r.ok)
        passed = sum(r.ok for r in results)
        details.update(code_passed=float(passed), verified=float(passed == len(prompt.tests)))
        details.update({f"code_failure.{k}": float(v) for k, v in failures.items()})
        return Score(passed / len(prompt.tests), details)

    async def _run(self, code: str, test: str | dict[str, str]) -> Result:
        return await asyncio.to_thread(self._run_now, code, test)

    def _run_now(self, code: str, test: str | dict[str, str]) -> Result:
        with self._slots:
            return run_test(code, test, self.limits)

    def describe(self) -> str:
        lim = self.limits
        limits = f"{lim.cpu_s} s CPU, {lim.wall_s:g} s wall, {lim.memory_mb} MiB"
        return f"code verifier (sandbox: {limits})"
