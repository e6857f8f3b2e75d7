"""The local platform with real emulator processes, and the reaper with real processes.

Every test uses its own state directory, so the reaper only ever sees the processes the test made.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from servingperf.errors import ConfigError, DeployError
from servingperf.model.specs import EmulatorSpec, ModelSpec
from servingperf.platforms.base import Instance, InstanceRequest
from servingperf.platforms.local import LocalLimits, LocalPlatform
from servingperf.platforms.reaper import (
    MARK_OWNER,
    MARK_RUN,
    MARK_STATE,
    find_servers,
    owner_marker,
    read_stat,
    reap_stale,
)

pytestmark = pytest.mark.slow


def model(load_time_s: float = 0.2, **overrides: float) -> ModelSpec:
    emulator = EmulatorSpec(profile="flan-t5-small", load_time_s=load_time_s, overrides=overrides)
    return ModelSpec(name="flan-t5-small", emulator=emulator)


def request(name: str, spec: ModelSpec | None = None, namespace: str = "ns-01") -> InstanceRequest:
    return InstanceRequest(name=name, namespace=namespace, model=spec or model())


def platform(tmp_path: Path, **kwargs: object) -> LocalPlatform:
    return LocalPlatform(
        tmp_path / "instances",
        time.monotonic(),
        state_dir=tmp_path / "state",
        **kwargs,  # type: ignore[arg-type]
    )


def alive(pid: int) -> bool:
    stat = read_stat(pid)
    return stat is not None and not stat.dead


def proc_file(pid: int, name: str) -> bytes:
    return (Path("/proc") / str(pid) / name).read_bytes()


def pid_of(instance: Instance) -> int:
    process = getattr(instance.handle, "process", None)
    assert isinstance(process, subprocess.Popen)
    return process.pid


async def test_deploy_ready_marked_and_deleted(tmp_path: Path) -> None:
    local = platform(tmp_path)
    try:
        instance = await local.deploy(request("a"))
        pid = pid_of(instance)
        assert instance.record.status == "created"
        assert instance.record.created_at is not None
        await local.wait_ready(instance, 30)
        assert instance.record.status == "ready"
        assert instance.url is not None
        assert instance.url.startswith("http://127.0.0.1:")
        load = instance.record.load_time_s
        assert load is not None
        assert load >= 0.2  # the emulator's load time, counted from the spawn
        environ = proc_file(pid, "environ").split(b"\0")
        assert f"{MARK_RUN}={local.run_id}".encode() in environ
        assert f"{MARK_STATE}={local.state_dir}".encode() in environ
        assert f"{MARK_OWNER}={owner_marker()}".encode() in environ
        assert (local.run_state_dir / f"{pid}.json").is_file()
        assert [s.pid for s in find_servers(local.state_dir)] == [pid]
        assert read_stat(pid) is not None
        assert read_stat(pid).pgrp == pid  # type: ignore[union-attr]  # leads its own group

        await local.delete(instance)
        assert not alive(pid)
        assert instance.record.status == "deleted"
        assert instance.record.t_deleted_s is not None
        assert not (local.run_state_dir / f"{pid}.json").exists()
        await local.delete(instance)  # idempotent
    finally:
        await local.close()
    assert not local.run_state_dir.exists()  # the run's state folder goes with the last server


async def test_crash_while_starting_is_a_failure_with_its_reason(tmp_path: Path) -> None:
    local = platform(tmp_path)
    try:
        instance = await local.deploy(request("broken", model(no_such_parameter=1.0)))
        with pytest.raises(DeployError, match="exited with code 2 while starting"):
            await local.wait_ready(instance, 30)
        assert instance.record.status == "failed"
        reason = instance.record.failure_reason or ""
        assert "no_such_parameter" in reason  # the server log's last lines say why
        await local.delete(instance)
        assert instance.record.status == "failed"  # deleting does not hide the failure
    finally:
        await local.close()
    assert find_servers(tmp_path / "state") == []


async def test_never_ready_times_out_and_is_removed(tmp_path: Path) -> None:
    local = platform(tmp_path)
    try:
        instance = await local.deploy(request("slow", model(load_time_s=120)))
        with pytest.raises(DeployError, match=r"not ready after 1\.5 s"):
            await local.wait_ready(instance, 1.5)
        assert instance.record.failure_reason.startswith("not ready after 1.5 s (last log lines: ")
        pid = pid_of(instance)
        assert alive(pid)  # still loading until deleted
        await local.delete(instance)
        assert not alive(pid)
    finally:
        await local.close()


async def test_deploy_concurrency_bounds_instances_loading_at_once(tmp_path: Path) -> None:
    local = platform(tmp_path, deploy_concurrency=1)
    try:
        first = await local.deploy(request("a", model(load_time_s=1.0)))
        second_task = asyncio.create_task(local.deploy(request("b", model(load_time_s=0.1))))
        await asyncio.sleep(0.5)
        assert not second_task.done()  # waits for the first to be ready
        await local.wait_ready(first, 30)
        second = await asyncio.wait_for(second_task, 10)
        await local.wait_ready(second, 30)
        assert first.record.t_ready_s is not None
        assert second.record.t_created_s is not None
        assert second.record.t_created_s >= first.record.t_ready_s
    finally:
        await local.close()


async def test_limits_are_applied_to_the_server(tmp_path: Path) -> None:
    cpu = min(os.sched_getaffinity(0))
    local = platform(tmp_path, limits=LocalLimits(memory_limit_mib=2048, cpus=(cpu,), nice=7))
    try:
        instance = await local.deploy(request("limited"))
        await local.wait_ready(instance, 30)
        pid = pid_of(instance)
        assert os.sched_getaffinity(pid) == {cpu}
        assert os.getpriority(os.PRIO_PROCESS, pid) == os.getpriority(os.PRIO_PROCESS, 0) + 7
        limits = proc_file(pid, "limits").decode().splitlines()
        address_space = next(line for line in limits if line.startswith("Max address space"))
        assert str(2048 * 1024 * 1024) in address_space
    finally:
        await local.close()


async def test_a_memory_limit_too_small_to_start_is_a_start_failure(tmp_path: Path) -> None:
    local = platform(tmp_path, limits=LocalLimits(memory_limit_mib=64))
    try:
        instance = await local.deploy(request("starved"))
        with pytest.raises(DeployError, match="while starting"):
            await local.wait_ready(instance, 30)
    finally:
        await local.close()


def test_unusable_limits_are_refused_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cpus"):
        platform(tmp_path, limits=LocalLimits(cpus=(10_000,)))
    with pytest.raises(ConfigError, match="memory_limit_mib"):
        platform(tmp_path, limits=LocalLimits(memory_limit_mib=1))


# --- the reaper --------------------------------------------------------------------------------


def spawn_marked(state_dir: Path, owner: str, run_id: str = "r1") -> subprocess.Popen[bytes]:
    """A stand-in server: ``sleep`` with the marker, leading its own process group."""
    env = {**os.environ, MARK_RUN: run_id, MARK_OWNER: owner, MARK_STATE: str(state_dir)}
    return subprocess.Popen(["sleep", "60"], env=env, start_new_session=True)


def wait_marked(state_dir: Path, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(find_servers(state_dir)) < count and time.monotonic() < deadline:
        time.sleep(0.02)  # until exec has replaced the forked environment


def test_reaper_stops_only_servers_whose_owner_is_dead(tmp_path: Path) -> None:
    state = (tmp_path / "state").resolve()
    own_pid, own_start = owner_marker().split(":")
    dead_owner = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_owner.wait()
    dead_marker = f"{dead_owner.pid}:{read_stat(os.getpid()).start_ticks}"  # type: ignore[union-attr]
    processes = {
        "orphan": spawn_marked(state, dead_marker),
        "recycled_pid": spawn_marked(
            state, f"{own_pid}:{int(own_start) + 1}"
        ),  # same pid, other start
        "unreadable_owner": spawn_marked(state, "garbage"),
        "live_owner": spawn_marked(state, owner_marker()),
        "other_state_dir": spawn_marked(tmp_path / "elsewhere", dead_marker),
    }
    unmarked = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        wait_marked(state, 4)
        (state / "r-dead").mkdir(parents=True)
        (state / "r-dead" / "owner.json").write_text(f'{{"owner": "{dead_marker}"}}')
        (state / "r-live").mkdir()
        (state / "r-live" / "owner.json").write_text(f'{{"owner": "{owner_marker()}"}}')

        report = reap_stale(state, grace_s=5)

        stopped = {p.pid for p in report.killed}
        assert stopped == {processes[k].pid for k in ("orphan", "recycled_pid", "unreadable_owner")}
        assert report.live_owned == 1
        for name, process in processes.items():
            process.poll() if name in ("live_owner", "other_state_dir") else process.wait(5)
        assert processes["live_owner"].poll() is None
        assert processes["other_state_dir"].poll() is None
        assert unmarked.poll() is None
        assert report.removed_state == [state / "r-dead"]
        assert (state / "r-live").is_dir()
        assert any("stopped 3 stale server(s) of run r1" in line for line in report.lines())
    finally:
        for process in (*processes.values(), unmarked):
            with_group_killed(process)


def with_group_killed(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


def test_reaper_uses_sigkill_on_a_server_ignoring_sigterm(tmp_path: Path) -> None:
    state = (tmp_path / "state").resolve()
    env = {**os.environ, MARK_RUN: "r2", MARK_OWNER: "1:1", MARK_STATE: str(state)}
    stubborn = subprocess.Popen(
        ["sh", "-c", "trap '' TERM; echo up; while :; do sleep 0.1; done"],
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
    )
    try:
        assert stubborn.stdout is not None
        assert stubborn.stdout.readline() == b"up\n"  # the trap is set
        report = reap_stale(state, grace_s=0.5)
        assert [p.pid for p in report.forced] == [stubborn.pid]
        assert stubborn.wait(5) == -signal.SIGKILL
        assert report.survivors == []
    finally:
        with_group_killed(stubborn)
        if stubborn.stdout is not None:
            stubborn.stdout.close()


async def test_first_deploy_reaps_what_a_dead_harness_left(tmp_path: Path) -> None:
    state = (tmp_path / "state").resolve()
    orphan = spawn_marked(state, "1:1")  # pid 1 never started at tick 1: a dead owner
    try:
        wait_marked(state, 1)
        local = platform(tmp_path)
        try:
            instance = await local.deploy(request("a"))
            assert local.reaped is not None
            assert [p.pid for p in local.reaped.killed] == [orphan.pid]
            assert orphan.wait(10) == -signal.SIGTERM
            await local.wait_ready(instance, 30)
        finally:
            await local.close()
    finally:
        with_group_killed(orphan)
