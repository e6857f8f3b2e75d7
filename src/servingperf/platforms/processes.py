"""Server processes that lead their own process group: start them, watch them, stop all of them.

Terms. A *server* is a child started in a new session (``start_new_session``), so it leads a
process group whose id is its pid, and everything it forks (a serving engine's engine-core and
worker processes) stays in that group unless it makes a session of its own. Its standard input
is ``/dev/null``, its output goes to a log file, and it inherits no descriptor of ours but those
(``close_fds``), so it holds no lock or pipe of the harness. *Stopping* a server: SIGTERM to the
group, SIGKILL to the group after a grace period, then one more SIGKILL to sweep what the leader
left behind in it, and only then reap the leader. Until it is reaped, an exited leader is a
zombie that keeps its pid, so the group id cannot be recycled under us; that is why exits are
watched with ``waitid(WNOWAIT)`` and never with ``wait``.

The *child set-up* runs between fork and exec: it arms the parent-death signal first
(``PR_SET_PDEATHSIG``, so a server dies with the harness that started it, even one killed during
the server's start-up), then applies limits. Used by the local platform for emulator and real
engine processes alike, and by the tests' real-engine fixture.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

STOP_GRACE_S = 5.0
KILL_WAIT_S = 5.0
_EXIT_POLL_S = 0.05
_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


def child_setup(
    parent_pid: int,
    *,
    memory_bytes: int | None = None,
    cpus: set[int] | None = None,
    nice: int = 0,
) -> Callable[[], None]:
    """The function run in the child between fork and exec: death signal first, then limits.

    Everything it needs is resolved here, in the parent, so the child only makes system calls.
    """
    prctl = _load_prctl()

    def setup() -> None:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
            if os.getppid() != parent_pid:  # the harness died before the signal was armed
                os.kill(os.getpid(), signal.SIGKILL)
        if memory_bytes is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        if cpus is not None:
            os.sched_setaffinity(0, cpus)
        if nice:
            os.nice(nice)

    return setup


def spawn(
    argv: Sequence[str],
    log_path: Path,
    env: Mapping[str, str],
    setup: Callable[[], None] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a server (see the module docstring), its output appended to ``log_path``.

    OSError or SubprocessError when it cannot be started (no such program, not executable).
    """
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=dict(env),
            start_new_session=True,
            close_fds=True,
            preexec_fn=setup or child_setup(os.getpid()),
        )


def exit_code(process: subprocess.Popen[bytes]) -> int | None:
    """The exit code (negative: killed by that signal) if the process has exited, else None;
    the process is left unreaped (``WNOWAIT``) so its process group stays ours to signal."""
    if process.returncode is not None:
        return process.returncode
    try:
        info = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:  # reaped elsewhere: let Popen find out what it can
        return process.poll()
    if info is None:
        return None
    if info.si_code == os.CLD_EXITED:
        return info.si_status
    return -info.si_status


async def wait_exit(process: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """True once the process has exited (left unreaped), False after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while exit_code(process) is None:
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(_EXIT_POLL_S)
    return True


def signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def group_members(pgid: int) -> list[int]:
    """Pids of the live (not zombie) processes of a process group, from ``/proc``."""
    members: list[int] = []
    with contextlib.suppress(OSError):
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
            except OSError:
                continue
            if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
                members.append(int(entry.name))
    return members


async def stop_group(
    process: subprocess.Popen[bytes],
    grace_s: float = STOP_GRACE_S,
    kill_wait_s: float = KILL_WAIT_S,
) -> None:
    """Stop a server and everything in its group (see the module docstring); idempotent."""
    if process.returncode is not None:
        return
    if exit_code(process) is None:
        signal_group(process.pid, signal.SIGTERM)
        if not await wait_exit(process, grace_s):
            signal_group(process.pid, signal.SIGKILL)
            await wait_exit(process, kill_wait_s)
    # The leader has exited but is not reaped yet, so its group id is still ours: sweep anything
    # it left in the group (children that outlive their parent), then reap it.
    signal_group(process.pid, signal.SIGKILL)
    # A killed process lingers in /proc for a moment (longer on a loaded machine): return only
    # once the group is empty, so that "stopped" means no process of it is left (bounded).
    for _ in range(max(1, int(kill_wait_s / 0.02))):
        if not group_members(process.pid):
            break
        await asyncio.sleep(0.02)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=kill_wait_s if exit_code(process) is not None else 0)


def log_tail(path: Path, lines: int = 3) -> str:
    """The last ``lines`` non-empty lines of a log, joined by `` | `` (one line for a message)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))  # a long log: only its end is read
            content = handle.read().decode(errors="replace").splitlines()
    except OSError:
        return "no server log"
    kept = [line.strip() for line in content if line.strip()]
    return " | ".join(kept[-lines:]) or "empty server log"
