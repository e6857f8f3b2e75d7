"""Find and remove local-platform servers whose owning harness is dead.

Terms. The *owner* of a server is the harness process that started it, identified by its pid and
its start time (field 22 of ``/proc/PID/stat``, clock ticks since boot), so a recycled pid is never
taken for the owner. Every server the local platform starts carries a *marker* in its environment:

- ``SERVINGPERF_RUN_ID``: the platform's run token (one per :class:`LocalPlatform`);
- ``SERVINGPERF_OWNER``: ``<owner pid>:<owner start ticks>``;
- ``SERVINGPERF_STATE_DIR``: the *state directory* the platform used.

The kernel keeps a process's initial environment readable in ``/proc/PID/environ``, so the marker
proves a process is ours without trusting any file. A server is *stale* when it carries the marker
of the state directory being cleaned and its owner is no longer alive (gone, a zombie, or a
different process under the recycled pid). Only stale servers of the calling user are signalled:
SIGTERM to the server's process group (each server leads its own), then SIGKILL after a grace
period. Servers of live harnesses, including concurrent runs of other people on the same machine,
are never touched.

The state directory (``$SERVINGPERF_STATE_DIR``, else ``$XDG_RUNTIME_DIR/servingperf/local``, else
``~/.cache/servingperf/local``) holds one folder per run token with ``owner.json`` and one
``<pid>.json`` per running server: a human-readable list of what runs, removed as servers stop.
The reaper deletes the folders of dead owners; the authority on what to kill stays ``/proc``.

Normally nothing is left to reap: servers also die with their parent (``PR_SET_PDEATHSIG``) and
the platform stops them itself. The reaper covers what those miss: a harness killed in the instant
between spawning a server and the server arming its death signal under a subreaper, a server that
ignores or outlives SIGTERM, or servers started by hand with the marker.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

MARK_RUN = "SERVINGPERF_RUN_ID"
MARK_OWNER = "SERVINGPERF_OWNER"
MARK_STATE = "SERVINGPERF_STATE_DIR"
STATE_ENV = "SERVINGPERF_STATE_DIR"

_PROC = Path("/proc")
_POLL_S = 0.05
_UNOWNED_GRACE_S = 60.0


def default_state_dir() -> Path:
    """``$SERVINGPERF_STATE_DIR``, else ``$XDG_RUNTIME_DIR/servingperf/local``, else
    ``~/.cache/servingperf/local`` (not created here)."""
    explicit = os.environ.get(STATE_ENV)
    if explicit:
        return Path(explicit).expanduser().resolve()
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "servingperf" / "local"
    return Path.home() / ".cache" / "servingperf" / "local"


@dataclass(frozen=True, slots=True)
class ProcessStat:
    """The few fields of ``/proc/PID/stat`` we need."""

    pid: int
    state: str  # R, S, D, Z (zombie), X (dead), ...
    ppid: int
    pgrp: int
    start_ticks: int

    @property
    def dead(self) -> bool:
        return self.state in ("Z", "X")


def read_stat(pid: int) -> ProcessStat | None:
    """``/proc/PID/stat`` parsed, or None when the process is gone or unreadable."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # comm (field 2) is in parentheses and may itself contain ") "; split at the last one.
    fields = raw.rsplit(")", 1)[-1].split()
    try:
        return ProcessStat(
            pid=pid,
            state=fields[0],
            ppid=int(fields[1]),
            pgrp=int(fields[2]),
            start_ticks=int(fields[19]),
        )
    except (IndexError, ValueError):
        return None


def owner_marker(pid: int | None = None) -> str:
    """``<pid>:<start ticks>`` of ``pid`` (default: this process), as servers carry it."""
    own = os.getpid() if pid is None else pid
    stat = read_stat(own)
    if stat is None:
        raise ProcessLookupError(f"no process {own}")
    return f"{own}:{stat.start_ticks}"


def owner_alive(marker: str) -> bool:
    """True when the process named by an owner marker still runs (not a zombie, same start)."""
    pid_text, _, start_text = marker.partition(":")
    try:
        pid, start = int(pid_text), int(start_text)
    except ValueError:
        return False  # unreadable marker: no live owner can be proven
    stat = read_stat(pid)
    return stat is not None and not stat.dead and stat.start_ticks == start


def server_environment(run_id: str, state_dir: Path) -> dict[str, str]:
    """The marker variables a server must be started with (added to its environment)."""
    return {MARK_RUN: run_id, MARK_OWNER: owner_marker(), MARK_STATE: str(state_dir)}


@dataclass(frozen=True, slots=True)
class ServerProcess:
    """A running process that carries the local platform's marker."""

    pid: int
    start_ticks: int
    pgrp: int
    run_id: str
    owner: str
    state_dir: str

    @property
    def owner_pid(self) -> int | None:
        text = self.owner.partition(":")[0]
        return int(text) if text.isdigit() else None


def _marker_of(pid: int) -> dict[str, str] | None:
    try:
        raw = (_PROC / str(pid) / "environ").read_bytes()
    except OSError:  # gone, or not ours to read
        return None
    if MARK_RUN.encode() not in raw:
        return None
    found: dict[str, str] = {}
    for entry in raw.split(b"\0"):
        key, sep, value = entry.partition(b"=")
        if sep and key.decode(errors="replace") in (MARK_RUN, MARK_OWNER, MARK_STATE):
            found[key.decode()] = value.decode(errors="replace")
    return found if MARK_RUN in found else None


def _own_uid(pid: int) -> bool:
    try:
        return (_PROC / str(pid)).stat().st_uid == os.getuid()
    except OSError:
        return False


def _pids() -> Iterator[int]:
    try:
        entries = list(_PROC.iterdir())
    except OSError:
        return
    own = os.getpid()
    for entry in entries:
        if entry.name.isdigit() and int(entry.name) != own:
            yield int(entry.name)


def find_servers(state_dir: Path | None = None) -> list[ServerProcess]:
    """Every live process of this user carrying the marker (of ``state_dir`` when given)."""
    wanted = None if state_dir is None else str(state_dir.expanduser().resolve())
    servers: list[ServerProcess] = []
    for pid in _pids():
        marker = _marker_of(pid)
        if marker is None or not _own_uid(pid):
            continue
        if wanted is not None and marker.get(MARK_STATE) != wanted:
            continue
        stat = read_stat(pid)
        if stat is None or stat.dead:
            continue
        servers.append(
            ServerProcess(
                pid=pid,
                start_ticks=stat.start_ticks,
                pgrp=stat.pgrp,
                run_id=marker[MARK_RUN],
                owner=marker.get(MARK_OWNER, ""),
                state_dir=marker.get(MARK_STATE, ""),
            )
        )
    return servers


def _same_process(server: ServerProcess) -> bool:
    stat = read_stat(server.pid)
    return stat is not None and not stat.dead and stat.start_ticks == server.start_ticks


def _signal(server: ServerProcess, signum: int) -> None:
    """Signal the server's group when it leads one (as our servers do), else the process alone;
    only after checking it is still the same process (its pid may have been recycled)."""
    if not _same_process(server):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if server.pgrp == server.pid:
            os.killpg(server.pid, signum)
        else:
            os.kill(server.pid, signum)


@dataclass(slots=True)
class ReapReport:
    """What a clean-up found and did."""

    state_dir: Path
    killed: list[ServerProcess] = field(default_factory=list)  # stale servers signalled
    forced: list[ServerProcess] = field(default_factory=list)  # of those, needing SIGKILL
    survivors: list[ServerProcess] = field(default_factory=list)  # still there after SIGKILL
    live_owned: int = 0  # servers left alone because their harness is alive
    removed_state: list[Path] = field(default_factory=list)

    def lines(self) -> list[str]:
        """One line per fact, for ``servingperf cleanup`` and logs."""
        out = [f"state directory: {self.state_dir}"]
        by_run: dict[str, list[int]] = {}
        for server in self.killed:
            by_run.setdefault(server.run_id, []).append(server.pid)
        for run_id, pids in sorted(by_run.items()):
            out.append(f"stopped {len(pids)} stale server(s) of run {run_id}: pids {pids}")
        if self.forced:
            out.append(f"{len(self.forced)} needed SIGKILL")
        if self.survivors:
            out.append(f"could not stop pids {[s.pid for s in self.survivors]}")
        if self.live_owned:
            out.append(f"left {self.live_owned} server(s) of running harnesses alone")
        if self.removed_state:
            out.append(f"removed {len(self.removed_state)} stale state folder(s)")
        if len(out) == 1:
            out.append("nothing to clean up")
        return out


def _wait_gone(servers: list[ServerProcess], timeout_s: float) -> list[ServerProcess]:
    deadline = time.monotonic() + timeout_s
    left = [s for s in servers if _same_process(s)]
    while left and time.monotonic() < deadline:
        time.sleep(_POLL_S)
        left = [s for s in left if _same_process(s)]
    return left


def reap_stale(state_dir: Path | None = None, grace_s: float = 5.0) -> ReapReport:
    """Stop every server of ``state_dir`` (default: :func:`default_state_dir`) whose harness is
    dead, then remove the state folders of dead owners. Blocks at most about ``2 × grace_s``.

    Safe to call at any time, from any process: live harnesses and unmarked processes are never
    signalled.
    """
    directory = (state_dir or default_state_dir()).expanduser().resolve()
    report = ReapReport(state_dir=directory)
    stale: list[ServerProcess] = []
    for server in find_servers(directory):
        if owner_alive(server.owner):
            report.live_owned += 1
        else:
            stale.append(server)
    for server in stale:
        _signal(server, signal.SIGTERM)
    report.killed = stale
    left = _wait_gone(stale, grace_s)
    for server in left:
        _signal(server, signal.SIGKILL)
    report.forced = left
    report.survivors = _wait_gone(left, grace_s)
    report.removed_state = _remove_dead_state(directory)
    return report


def _remove_dead_state(directory: Path) -> list[Path]:
    removed: list[Path] = []
    try:
        folders = [p for p in directory.iterdir() if p.is_dir()]
    except OSError:
        return removed
    for folder in folders:
        owner = read_owner(folder)
        if owner is not None and owner_alive(owner):
            continue
        if owner is None and _younger_than(folder, _UNOWNED_GRACE_S):
            continue  # a platform may be between creating its folder and writing owner.json
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _younger_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime < seconds
    except OSError:
        return False


def read_owner(folder: Path) -> str | None:
    """The owner marker recorded in a run folder's ``owner.json``, None if absent or unreadable."""
    try:
        data = json.loads((folder / "owner.json").read_text())
    except (OSError, ValueError):
        return None
    owner = data.get("owner") if isinstance(data, dict) else None
    return owner if isinstance(owner, str) else None
