"""The kserve platform over real HTTP (kubernetes_asyncio, a kubeconfig written by the test)
against the Kubernetes API double and its fake KServe controller: deploy, ready, delete; failures
with reasons while others go on; watch expiry (410 Gone) without a missed or doubled readiness;
nothing left after an interruption; clean-up of a dead run by label; a released platform (kept
instances) leaves its objects and no open session, and ``servingperf cleanup`` removes them."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from servingperf.errors import ConfigError, DeployError
from servingperf.model.kserve_spec import DeploymentMode, InferenceServiceTemplate, KServeSpec
from servingperf.model.specs import ModelSpec
from servingperf.platforms.base import Instance, InstanceRequest
from servingperf.platforms.kserve import KServePlatform, cleanup_stale
from servingperf.platforms.kserve_manifests import (
    MANAGED_SELECTOR,
    inference_service_manifest,
    namespace_manifest,
    run_labels,
    run_selector,
    serving_runtime_manifest,
    sidecar_manifest,
)
from servingperf.platforms.kserve_status import parse_time
from servingperf.platforms.kube_client import connect
from servingperf.platforms.kube_types import (
    INFERENCE_SERVICES,
    NAMESPACES,
    SERVING_RUNTIMES,
    SIDECARS,
)
from tests.fakes.kube_api import (
    INFERENCE_SERVICE,
    KINDS,
    NAMESPACE,
    SERVING_RUNTIME,
    SIDECAR,
    ApiStatus,
    FakeKServeController,
    FakeKubeApiServer,
)

RUNTIME = {
    "apiVersion": "serving.kserve.io/v1alpha1",
    "kind": "ServingRuntime",
    "metadata": {"name": "template"},
    "spec": {
        "supportedModelFormats": [{"name": "caikit", "autoSelect": True}],
        "containers": [{"name": "kserve-container", "image": "quay.io/example/runtime:1"}],
    },
}
TEMPLATE = {"model_format": {"name": "caikit"}, "storage_uri": "s3://models/flan-t5-small"}


def make_platform(server: FakeKubeApiServer, tmp_path: Path, **changes: Any) -> KServePlatform:
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    settings: dict[str, Any] = {
        "kubeconfig": str(kubeconfig),
        "namespace_prefix": "sp",
        "inference_service": TEMPLATE,
        "serving_runtime": {"name": "caikit-runtime", "inline": RUNTIME},
    }
    settings.update(changes)
    spec = KServeSpec.model_validate(settings)
    return KServePlatform(spec, "test-run-1", time.monotonic(), tmp_path)


def request(name: str, group: str) -> InstanceRequest:
    model = ModelSpec.model_validate({"name": name, "endpoint": {"url": "http://unused"}})
    return InstanceRequest(name=name, namespace=group, model=model)


async def until(predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def server_times(server: FakeKubeApiServer, instance: Instance) -> tuple[datetime, datetime]:
    obj = server.store.get(INFERENCE_SERVICE, instance.record.namespace, instance.request.name)
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    created_at = parse_time(obj["metadata"]["creationTimestamp"])
    ready_at = parse_time(ready["lastTransitionTime"])
    assert created_at is not None
    assert ready_at is not None
    return created_at, ready_at


def nothing_left(server: FakeKubeApiServer) -> bool:
    return all(server.store.count(kind, MANAGED_SELECTOR) == 0 for kind in KINDS)


async def test_deploy_ready_delete_with_the_api_server_clock(tmp_path: Path) -> None:
    async with FakeKubeApiServer(clock_offset_s=7200) as server:
        FakeKServeController(server, seed=3, delay_s=(0.3, 0.8))
        platform = make_platform(server, tmp_path, istio_sidecar=True)
        try:
            instances = [await platform.deploy(request(f"m{i}", "ns-a")) for i in range(3)]
            for instance in instances:
                await platform.wait_ready(instance, 30)
            assert server.store.count(SIDECAR, platform.selector) == 1
            assert server.store.count(SERVING_RUNTIME, platform.selector) == 1
            for instance in instances:
                record = instance.record
                assert (record.created_at, record.ready_at) == server_times(server, instance)
                assert record.created_at is not None
                # The API server's clock (2 h ahead here), not the harness's.
                assert record.created_at - datetime.now(UTC) > timedelta(hours=1.9)
                assert record.load_time_s is not None
                assert record.load_time_s >= 0
                assert record.t_created_s is not None
                assert record.t_ready_s is not None
                assert 0 < record.t_created_s < record.t_ready_s
                assert (record.clock_source, record.status) == ("platform", "ready")
                name = instance.request.name
                assert instance.url == f"http://{name}-sp-ns-a.example.com"
                assert instance.grpc_url == f"{name}-sp-ns-a.example.com:80"
                assert record.endpoint == instance.url
            await platform.delete(instances[0])
            assert instances[0].record.status == "deleted"
            assert instances[0].record.t_deleted_s is not None
            with pytest.raises(ApiStatus, match="not found"):
                server.store.get(INFERENCE_SERVICE, "sp-ns-a", "m0")
            await platform.delete(instances[0])  # idempotent
        finally:
            await platform.close()
        assert nothing_left(server)
        assert [i.record.status for i in platform.instances] == ["deleted"] * 3


async def test_failures_are_reported_with_their_reason_while_others_go_on(tmp_path: Path) -> None:
    async with FakeKubeApiServer() as server:
        FakeKServeController(
            server, delay_s=(0.1, 0.6), fail={"bad-load": "FailedToLoad", "bad-crash": "CrashLoop"}
        )
        platform = make_platform(server, tmp_path)
        try:
            names = ["ok-1", "bad-load", "ok-2", "bad-crash", "ok-3"]
            instances = await asyncio.gather(*(platform.deploy(request(n, "ns")) for n in names))
            started = time.monotonic()
            outcomes = await asyncio.gather(
                *(platform.wait_ready(i, 60) for i in instances), return_exceptions=True
            )
            assert time.monotonic() - started < 30  # failed at once, not at the 60 s timeout
        finally:
            await platform.close()
        by_name = {i.request.name: (i, o) for i, o in zip(instances, outcomes, strict=True)}
        for name in ("ok-1", "ok-2", "ok-3"):
            assert by_name[name][1] is None
            assert by_name[name][0].record.ready_at is not None
        load, load_error = by_name["bad-load"]
        assert isinstance(load_error, DeployError)
        assert load.record.failure_reason is not None
        assert load.record.failure_reason.startswith(
            "FailedToLoad (BlockedByFailedLoad): ModelLoadFailed: storage-initializer"
        )
        assert load.record.failure_reason in str(load_error)
        crash, crash_error = by_name["bad-crash"]
        assert isinstance(crash_error, DeployError)
        assert crash.record.failure_reason is not None
        assert "CrashLoopBackOff" in crash.record.failure_reason
        assert platform.tracker_counts.ready == 3
        assert platform.tracker_counts.failed == 2


@pytest.mark.parametrize(
    "how", ["error-event-in-stream", "error-event-on-reconnect", "http-410-on-reconnect"]
)
async def test_watch_expiry_misses_nothing_and_counts_nothing_twice(
    tmp_path: Path, how: str
) -> None:
    count = 24
    async with FakeKubeApiServer(gone_as_http=how.startswith("http")) as server:
        controller = FakeKServeController(server, seed=11, delay_s=(0.2, 4.0))
        platform = make_platform(server, tmp_path)
        try:
            instances = await asyncio.gather(
                *(platform.deploy(request(f"m{i:02d}", "ns")) for i in range(count))
            )
            await until(lambda: controller.counts["ready"] >= 4)
            if how == "error-event-in-stream":
                server.store.compact()
                assert server.store.drop_watches(error_410=True) == 1
            else:
                # The client is cut off while objects keep becoming ready, and the history it
                # would resume from is compacted before it gets back.
                server.watch_gate.clear()
                assert server.store.drop_watches() == 1
                before = controller.counts["ready"]
                await until(lambda: controller.counts["ready"] >= before + 4)
                server.store.compact()
                server.watch_gate.set()
            await asyncio.gather(*(platform.wait_ready(i, 60) for i in instances))
            for instance in instances:
                record = instance.record
                assert (record.created_at, record.ready_at) == server_times(server, instance)
        finally:
            await platform.close()
        stats = platform.watch_stats
        assert stats.gone >= 1
        assert stats.lists >= 2
        assert stats.duplicates >= 4  # objects ready before the cut were listed again, unchanged
        assert platform.tracker_counts.ready == count
        assert platform.tracker_counts.failed == 0
        assert server.store.counts["gone"] >= (0 if how == "error-event-in-stream" else 1)


async def test_one_watch_per_namespace_when_asked(tmp_path: Path) -> None:
    async with FakeKubeApiServer() as server:
        FakeKServeController(server, delay_s=(0.05, 0.3))
        platform = make_platform(server, tmp_path, watch_scope="namespace")
        try:
            instances = [
                await platform.deploy(request(f"m{i}", f"ns-{g}"))
                for g in range(3)
                for i in range(3)
            ]
            await asyncio.gather(*(platform.wait_ready(i, 30) for i in instances))
        finally:
            await platform.close()
        assert platform.watch_stats.lists == 3
        assert platform.tracker_counts.ready == 9


async def test_existing_namespaces_are_used_and_kept(tmp_path: Path) -> None:
    async with FakeKubeApiServer() as server:
        FakeKServeController(server, delay_s=(0.05, 0.3))
        for name in ("team-a", "team-b"):
            server.store.create(NAMESPACE, "", {"metadata": {"name": name}})
        platform = make_platform(
            server, tmp_path, namespace_prefix="", create_namespaces=False, watch_scope="namespace"
        )
        try:
            teams = ("team-a", "team-b")
            instances = [
                await platform.deploy(request(f"m{i}", t)) for t in teams for i in range(2)
            ]
            await asyncio.gather(*(platform.wait_ready(i, 30) for i in instances))
            assert server.store.count(SERVING_RUNTIME, platform.selector) == 2
        finally:
            await platform.close()
        assert nothing_left(server)
        assert server.store.count(NAMESPACE) == 2


async def test_an_interrupted_run_leaves_nothing(tmp_path: Path) -> None:
    async with FakeKubeApiServer() as server:
        FakeKServeController(server, delay_s=(20.0, 30.0))  # never ready during the test
        platform = make_platform(server, tmp_path, istio_sidecar=True)

        async def deploy_all() -> None:
            for group in range(4):
                await asyncio.gather(
                    *(platform.deploy(request(f"m{i}", f"ns-{group}")) for i in range(10))
                )

        task = asyncio.create_task(deploy_all())
        await until(lambda: server.store.count(INFERENCE_SERVICE) >= 15)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert server.store.count(NAMESPACE) >= 2
        await platform.close()
        assert nothing_left(server)
        assert server.store.count(NAMESPACE) == 0
        assert {i.record.status for i in platform.instances} == {"deleted"}


async def test_a_ready_timeout_fails_the_instance(tmp_path: Path) -> None:
    async with FakeKubeApiServer() as server:
        FakeKServeController(server, delay_s=(20.0, 30.0))
        platform = make_platform(server, tmp_path)
        try:
            instance = await platform.deploy(request("slow", "ns"))
            with pytest.raises(DeployError, match=r"not ready after 0\.5 s"):
                await platform.wait_ready(instance, 0.5)
            assert instance.record.status == "failed"
        finally:
            await platform.close()
        assert nothing_left(server)


async def test_bad_credentials_fail_the_first_deploy(tmp_path: Path) -> None:
    async with FakeKubeApiServer() as server:
        platform = make_platform(server, tmp_path)
        server.token = "another-token"
        try:
            with pytest.raises(DeployError, match="401 Unauthorized"):
                await platform.deploy(request("m", "ns"))
        finally:
            await platform.close()


async def test_cleanup_removes_a_dead_runs_leftovers_by_label(tmp_path: Path) -> None:
    async with FakeKubeApiServer() as server:
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
        api = await connect(
            kubeconfig=str(kubeconfig), context=None, in_cluster=False, request_timeout_s=10
        )
        template = InferenceServiceTemplate.model_validate(TEMPLATE)
        try:
            for run in ("dead-run", "live-run"):
                labels = run_labels(run, {})
                namespace = f"sp-{run}"
                await api.create(NAMESPACES, None, namespace_manifest(namespace, labels))
                await api.create(
                    SERVING_RUNTIMES,
                    namespace,
                    serving_runtime_manifest(RUNTIME, "rt", namespace, labels),
                )
                await api.create(SIDECARS, namespace, sidecar_manifest(namespace, labels, ["./*"]))
                body = inference_service_manifest(
                    "m", namespace, template, "rt", DeploymentMode.SERVERLESS, labels
                )
                await api.create(INFERENCE_SERVICES, namespace, body)
            removed = await cleanup_stale(api, run_selector("dead-run"))
            assert removed == [
                "InferenceService/sp-dead-run/m",
                "ServingRuntime/sp-dead-run/rt",
                "Sidecar/sp-dead-run/default",
                "Namespace/sp-dead-run",
            ]
            assert server.store.count(NAMESPACE) == 1
            assert server.store.count(INFERENCE_SERVICE, run_selector("live-run")) == 1
            with pytest.raises(ConfigError, match="selector"):
                await cleanup_stale(api, " ")
        finally:
            await api.close()


async def test_a_missing_kubeconfig_is_named(tmp_path: Path) -> None:
    spec = KServeSpec.model_validate(
        {"kubeconfig": str(tmp_path / "nope"), "inference_service": TEMPLATE}
    )
    platform = KServePlatform(spec, "r", time.monotonic(), tmp_path)
    with pytest.raises(DeployError, match=r"kubeconfig .* does not exist"):
        await platform.deploy(request("m", "ns"))
    await platform.close()


def platform_tasks() -> list[str]:
    """Pending tasks running the platform's own code (its watches)."""
    names = []
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        if not task.done() and code is not None and "servingperf/platforms" in code.co_filename:
            names.append(code.co_qualname)
    return names


def open_sessions() -> set[int]:
    gc.collect()
    return {
        id(o) for o in gc.get_objects() if isinstance(o, aiohttp.ClientSession) and not o.closed
    }


async def test_release_keeps_the_objects_and_closes_the_client_then_cleanup_removes_them(
    tmp_path: Path,
) -> None:
    loop = asyncio.get_running_loop()
    complaints: list[str] = []
    loop.set_exception_handler(lambda _, context: complaints.append(str(context.get("message"))))
    async with FakeKubeApiServer() as server:
        FakeKServeController(server, seed=2, delay_s=(0.05, 0.2))
        before = open_sessions()
        platform = make_platform(server, tmp_path, endpoint={"served_model": "isvc-name"})
        instances = [
            await platform.deploy(request(f"m{i}", group))
            for i, group in enumerate(["ns-a", "ns-a", "ns-b"])
        ]
        for instance in instances:
            await platform.wait_ready(instance, 30)
            name = instance.request.name
            assert (instance.model_id, instance.record.model) == (name, name)
        assert open_sessions() - before  # the API client's session (the check sees it)
        assert platform_tasks()  # and its watch

        await platform.release()
        assert open_sessions() - before == set()
        assert platform_tasks() == []  # no watch left running (the double's own may be)
        await platform.release()  # idempotent
        await platform.close()  # removes nothing after a release
        assert server.store.count(INFERENCE_SERVICE, platform.selector) == 3
        assert server.store.count(NAMESPACE, platform.selector) == 2
        assert {i.record.status for i in platform.instances} == {"ready"}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            del platform, instances
            gc.collect()
        assert [str(w.message) for w in caught] == []

        kubeconfig = tmp_path / "kubeconfig"
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "servingperf",
            "cleanup",
            "--kserve",
            "--run-id",
            "test-run-1",
            "--kubeconfig",
            str(kubeconfig),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
        assert process.returncode == 0, stderr.decode()
        assert "deleted InferenceService/sp-ns-b/m2" in stdout.decode()
        assert nothing_left(server)
    assert complaints == []  # e.g. aiohttp's "Unclosed client session"
