"""The ``code`` verifier and its sandbox: tests pass or fail, and hostile code (an
infinite loop, a fork bomb, a huge allocation, reading the environment, opening a
socket, writing outside its directory) is contained and recorded as a failure."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from arbitrage.records import Prompt
from reward.verifiers.basis import basis, verdict
from reward.verifiers.code import CodeVerifier, extract_code
from reward.verifiers.sandbox import Limits, isolation, run_python

FAST = Limits(cpu_s=2, wall_s=4.0, memory_mb=256)

SOLUTION = """Here is my solution:

```python
def add(a, b):
    return a + b
```
"""


def _prompt(*tests: object) -> Prompt:
    return Prompt(text="Write add(a, b).", language="en", task="coding", tests=list(tests))


def test_the_last_python_block_is_the_code() -> None:
    text = "```python\nx = 1\n```\nthen\n```py\ny = 2\n```\n```bash\nls\n```"
    assert extract_code(text) == "y = 2\n"
    assert extract_code("def f():\n    return 1\n") is not None
    assert extract_code("Just prose, no code: it is done.") is None


def test_score_is_the_share_of_tests_passed() -> None:
    prompt = _prompt("assert add(1, 2) == 3", "assert add(2, 2) == 5", "assert add(0, 0) == 0")
    score = CodeVerifier(cpu_s=2, wall_s=4).score(prompt, SOLUTION)
    assert score.value == pytest.approx(2 / 3)
    assert score.details["code_passed"] == 2.0 and score.details["code_failure.error"] == 1.0
    assert basis(score.details) == "tests" and verdict(score.details) is False


def test_stdin_stdout_tests_compare_the_output() -> None:
    program = "```python\nn = int(input())\nprint(n * 2)\n```"
    prompt = _prompt({"stdin": "21\n", "stdout": "42\n"}, {"stdin": "1", "stdout": "3"})
    score = CodeVerifier().score(prompt, program)
    assert score.value == 0.5 and score.details["code_failure.wrong_output"] == 1.0


def test_an_answer_without_code_scores_zero_and_a_prompt_without_tests_is_unscored() -> None:
    assert CodeVerifier().score(_prompt("assert True"), "I would use a loop.").value == 0.0
    assert CodeVerifier().score(_prompt(), SOLUTION).value is None


def test_an_infinite_loop_is_stopped() -> None:
    started = time.monotonic()
    result = run_python("while True:\n    pass\n", limits=FAST)
    # the CPU limit, or on a busy machine the wall clock first
    assert result.status in ("cpu_limit", "timeout")
    assert time.monotonic() - started < FAST.wall_s + 3


def test_a_sleeping_program_hits_the_wall_clock() -> None:
    result = run_python("import time\ntime.sleep(60)\n", limits=Limits(wall_s=1.0))
    assert result.status == "timeout"


def test_a_fork_bomb_fails_at_its_first_fork() -> None:
    result = run_python("import os\nwhile True:\n    os.fork()\n", limits=FAST)
    assert result.status == "error" and "not allowed" in result.reason
    result = run_python("import subprocess\nsubprocess.run(['ls'])\n", limits=FAST)
    assert result.status == "error" and "not allowed" in result.reason


@pytest.mark.skipif(isolation() != "namespace", reason="needs root: RLIMIT_NPROC as nobody")
def test_a_fork_bomb_through_ctypes_hits_the_process_limit() -> None:
    source = (
        "import ctypes\nlibc = ctypes.CDLL(None)\n"
        "while True:\n    if libc.fork() < 0:\n        raise SystemExit('fork refused')\n"
    )
    result = run_python(source, limits=FAST)
    assert result.status == "error" and "fork refused" in result.reason


def test_a_huge_allocation_hits_the_memory_limit() -> None:
    result = run_python("x = bytearray(8 * 1024 ** 3)\n", limits=FAST)
    assert result.status == "memory_limit"


def test_the_environment_holds_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")
    result = run_python("import os\nprint(sorted(os.environ))\n", limits=FAST)
    assert result.ok and result.stdout.strip() == "['HOME', 'LANG', 'PATH']"
    leak = run_python("import os\nassert 'OPENAI_API_KEY' not in os.environ\n", limits=FAST)
    assert leak.ok


@pytest.fixture
def listener() -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True)
    thread.start()
    yield server.getsockname()[1]
    server.close()
    assert not accepted, "the sandboxed code reached a socket on this machine"


def test_a_socket_cannot_reach_this_machine(listener: int) -> None:
    source = f"import socket\nsocket.create_connection(('127.0.0.1', {listener}), timeout=2)\n"
    result = run_python(source, limits=FAST)
    assert result.status == "error"
    assert ("Network is unreachable" in result.reason) or ("not allowed" in result.reason)


def test_it_runs_in_a_fresh_directory_and_cannot_write_the_run_directory(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    source = f"import os\nprint(os.getcwd())\nopen({str(run_dir / 'x')!r}, 'w').write('x')\n"
    result = run_python(source, limits=FAST)
    assert not (run_dir / "x").exists() or isolation() != "namespace"
    assert result.stdout.strip() != os.getcwd()
    if isolation() == "namespace":
        assert result.status == "error" and "Permission denied" in result.reason


def test_hostile_answers_are_failed_tests_with_their_reason() -> None:
    prompt = _prompt("assert add(1, 2) == 3")
    verifier = CodeVerifier(cpu_s=1, wall_s=3, memory_mb=128)
    loop = "```python\ndef add(a, b):\n    while True:\n        pass\n```"
    bomb = "```python\nimport os\nos.fork()\ndef add(a, b):\n    return a + b\n```"
    hog = "```python\nx = bytearray(4 * 1024 ** 3)\ndef add(a, b):\n    return a + b\n```"
    scores = verifier.score_batch([(prompt, loop), (prompt, bomb), (prompt, hog)])
    assert [s.value for s in scores] == [0.0, 0.0, 0.0]
    assert {"code_failure.cpu_limit", "code_failure.timeout"} & set(scores[0].details)
    assert "code_failure.error" in scores[1].details
    assert "code_failure.memory_limit" in scores[2].details


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="code limits"):
        CodeVerifier(cpu_s=0)


def test_without_a_namespace_the_python_guard_blocks_sockets(
    listener: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import reward.verifiers.sandbox as sandbox

    monkeypatch.setattr(sandbox, "isolation", lambda: "python-guard")
    source = f"import socket\nsocket.create_connection(('127.0.0.1', {listener}), timeout=2)\n"
    result = run_python(source, limits=FAST)
    assert result.status == "error" and "network access is not allowed" in result.reason
    raw = run_python(f"import socket\nsocket.socket().connect(('127.0.0.1', {listener}))\n")
    assert raw.status == "error" and "not allowed" in raw.reason
