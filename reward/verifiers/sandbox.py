"""Run untrusted Python in a subprocess with limits (the ``code`` reward's sandbox).

What each run gets:

- a fresh temporary directory (outside the run directory) as its working directory
  and ``HOME``, deleted afterwards; the interpreter in isolated mode (``-I``: no
  ``PYTHON*`` variables, no user site, no script directory on ``sys.path``);
- an environment of ``PATH``, ``LANG`` and ``HOME`` only: no API key or any other
  variable of this process reaches it;
- ``RLIMIT_CPU`` (CPU seconds), ``RLIMIT_AS`` (address space), ``RLIMIT_FSIZE``
  (largest file written) and ``RLIMIT_NPROC`` (processes), and a wall-clock timeout
  after which its whole process group is killed;
- no network: when this process is root, the child gets its own empty network
  namespace (``unshare(CLONE_NEWNET)``: only a loopback interface that is down) and
  then runs as ``nobody`` (so ``RLIMIT_NPROC`` counts, and the run directory and
  other root-owned files cannot be written); otherwise a Python-level guard replaces
  ``socket.socket`` before the tested code runs (see ``isolation``);
- a Python-level guard that makes ``fork``, ``exec*``, ``posix_spawn`` and
  ``subprocess`` raise, so a fork bomb fails at its first fork.

What it does not protect against: code that reads world-readable files (as
``nobody`` it still can), a kernel exploit, and, without the network namespace,
code that reaches the network through ``ctypes`` or a C extension (the Python-level
guard is a speed bump, not a wall). It is a guard against accidents and sloppy or
runaway code from teachers, not a boundary for deliberately hostile code: for that,
run the verifier in a container or a VM.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass

_CLONE_NEWNET = 0x40000000
_NOBODY = 65534

#: Installed before the tested code (``python -I _guard.py``): process creation always,
#: sockets when the network namespace is not available.
_GUARD = """\
import os, posix, sys
def _blocked(*args, **kwargs):
    raise PermissionError("sandbox: creating processes is not allowed")
for _mod in (os, posix):
    for _name in ("fork", "forkpty", "vfork", "posix_spawn", "posix_spawnp", "system",
                  "execv", "execve", "execl", "execle", "execlp", "execvp", "execvpe",
                  "spawnv", "spawnve", "spawnl", "spawnle", "popen"):
        if hasattr(_mod, _name):
            setattr(_mod, _name, _blocked)
import subprocess
subprocess.Popen.__init__ = _blocked
if {block_sockets}:
    import socket
    class _NoSocket(socket.socket):
        def __init__(self, *args, **kwargs):
            raise PermissionError("sandbox: network access is not allowed")
    def _no_network(*args, **kwargs):
        raise PermissionError("sandbox: network access is not allowed")
    socket.socket = _NoSocket
    socket.create_connection = _no_network
    socket.socketpair = _no_network
del _mod, _name, _blocked
sys.argv = ["main.py"]
with open("main.py", encoding="utf-8") as _f:
    _code = compile(_f.read(), "main.py", "exec")
exec(_code, {{"__name__": "__main__", "__builtins__": __builtins__}})
"""


@dataclass(frozen=True)
class Limits:
    """A run's limits: CPU seconds, wall seconds, memory (MiB of address space), the
    largest file it may write (MiB), processes (as ``nobody``) and output kept (chars)."""

    cpu_s: int = 5
    wall_s: float = 10.0
    memory_mb: int = 512
    file_mb: int = 10
    processes: int = 32
    output_chars: int = 100_000


@dataclass(frozen=True)
class Result:
    """How a run ended: ``status`` is ``ok`` (exit 0), ``error`` (an exception or a
    non-zero exit: ``reason`` names it), ``timeout`` (wall clock), ``cpu_limit``,
    ``memory_limit`` or ``killed`` (another signal)."""

    status: str
    reason: str = ""
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _preexec(limits: Limits, isolate: bool) -> None:
    """In the child, before exec: own network namespace, limits, then ``nobody``."""
    os.setsid()
    if isolate and _libc().unshare(_CLONE_NEWNET) != 0:
        os._exit(121)
    mib = 1 << 20
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * mib,) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_mb * mib,) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if isolate:
        os.setgroups([])
        os.setgid(_NOBODY)
        os.setuid(_NOBODY)
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes,) * 2)


def _world_executable(path: str) -> bool:
    """``nobody`` can run ``path``: it and every directory above it are world-executable."""
    path = os.path.realpath(path)
    parts = [path]
    while parts[-1] not in ("/", ""):
        parts.append(os.path.dirname(parts[-1]))
    try:
        return all(os.stat(p).st_mode & 0o001 for p in parts)
    except OSError:
        return False


@functools.cache
def interpreter() -> str:
    """The Python that runs tested code: this one, or (when ``nobody`` cannot run this
    one, e.g. a pyenv under ``/root``) the system's ``python3``."""
    if os.name != "posix" or os.geteuid() != 0 or _world_executable(sys.executable):
        return sys.executable
    system = shutil.which("python3", path="/usr/bin:/bin:/usr/local/bin")
    return system if system and _world_executable(system) else ""


@functools.cache
def isolation() -> str:
    """``namespace`` (own network namespace, as ``nobody``) or ``python-guard`` (this
    process cannot create namespaces: sockets are blocked inside Python only)."""
    if os.name != "posix" or os.geteuid() != 0 or not interpreter():
        return "python-guard"
    try:
        code = subprocess.run(
            ["/bin/true"],
            preexec_fn=lambda: _preexec(Limits(), True),
            env={},
            timeout=10,
            check=False,
        ).returncode
    except (OSError, subprocess.SubprocessError):
        return "python-guard"
    return "namespace" if code == 0 else "python-guard"


def run_python(source: str, stdin: str = "", limits: Limits | None = None) -> Result:
    """Run ``source`` as a script under ``limits``; see the module docstring."""
    limits = limits or Limits()
    isolate = isolation() == "namespace"
    workdir = tempfile.mkdtemp(prefix="arbitrage-sandbox-")
    try:
        with open(os.path.join(workdir, "main.py"), "w", encoding="utf-8") as fh:
            fh.write(source)
        with open(os.path.join(workdir, "_guard.py"), "w", encoding="utf-8") as fh:
            fh.write(_GUARD.format(block_sockets=not isolate))
        if isolate:
            os.chown(workdir, _NOBODY, _NOBODY)
        return _run(workdir, stdin, limits, isolate)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run(workdir: str, stdin: str, limits: Limits, isolate: bool) -> Result:
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir}
    proc = subprocess.Popen(
        [interpreter() or sys.executable, "-I", "_guard.py"],
        cwd=workdir,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: _preexec(limits, isolate),
        close_fds=True,
    )
    try:
        out, err = proc.communicate(stdin.encode("utf-8"), timeout=limits.wall_s)
    except subprocess.TimeoutExpired:
        _kill(proc)
        proc.communicate()
        return Result("timeout", f"ran past {limits.wall_s:g} s")
    _kill(proc)  # anything it left running in the background
    stdout = out.decode("utf-8", "replace")[: limits.output_chars]
    stderr = err.decode("utf-8", "replace")[-limits.output_chars :]
    code = proc.returncode
    if code == 0:
        return Result("ok", "", stdout, stderr)
    if code in (-signal.SIGXCPU, -signal.SIGKILL) and "MemoryError" not in stderr:
        status = "cpu_limit" if code == -signal.SIGXCPU else "killed"
        return Result(status, f"{status} (signal {-code})", stdout, stderr)
    if "MemoryError" in stderr:
        return Result("memory_limit", "MemoryError", stdout, stderr)
    if code < 0:
        return Result("killed", f"signal {-code}", stdout, stderr)
    return Result("error", _last_error(stderr) or f"exit {code}", stdout, stderr)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # the whole group: children too


def _last_error(stderr: str) -> str:
    """The exception line of a traceback (``ZeroDivisionError: division by zero``)."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""
