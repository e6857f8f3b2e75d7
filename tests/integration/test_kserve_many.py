"""The many-model scenario on the kserve platform, end to end against the Kubernetes API double.

What runs is the product's own path: ``servingperf run <scenario.yaml> --out DIR`` (the Typer app,
in this thread, on its own uvloop) on ``examples/kserve-many-model.yaml`` with only the
kubeconfig, the ingress address and the sizes changed. Beside it, in a second thread with its own
event loop, stands the "cluster": the API double (``FakeKubeApiServer``, its clock two hours
ahead so that API-server timestamps are told from the harness's), the fake KServe controller
moving each InferenceService to Ready after a seeded random delay (or to ``FailedToLoad``), and
``FakeIngress``: emulator front ends on 127.0.0.1 behind a Host-header router, which the
controller's status URLs (``http://<isvc>.<namespace>.example.com``) name. A validation query
reaches the emulator only if the harness sent it, through ``endpoint.ingress_url``, with the Host
of a Ready InferenceService: so the counts per route prove each instance was queried through its
own status URL. Each InferenceService serves the id a vLLM runtime gives it (its name, unless
its args pin another), and an id it does not serve is refused: so ok records prove the id too.

- the seed's 12 namespaces x 17 (204) instances, and 2,000, as the example has it
  (``served_model: isvc-name``): every one deployed, ready with platform timestamps, validated
  under its own name (records in the run directory, none failed), removed; the summary has the
  load-time figures and a computed saturation verdict; nothing labelled is left in the API;
  readiness came from one watch (a handful of GETs in all);
- a run where the controller fails two instances (``FailedToLoad``), with the other model-id
  and path settings (``served_model: scenario``, the runtime's served name pinned by ``args``;
  the API under ``/openai/v1`` as KServe's Hugging Face runtime serves it, ``endpoint.path``):
  they are recorded failed with KServe's reason, the others validated, the run completes.

The same test runs at 2,000 instances (100 x 20, one query per round: about 11 s here); its CPU
and memory are measured by ``benchmarks/bench_kserve_many_model.py``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from typer.testing import CliRunner

from servingperf.cli import app
from servingperf.platforms.kserve_manifests import MANAGED_SELECTOR
from tests.fakes.kube_api import KINDS, FakeIngress, FakeKServeController, FakeKubeApiServer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "kserve-many-model.yaml"
MODEL_ID = "flan-t5-small"
CLOCK_OFFSET_S = 7200.0
T = TypeVar("T")


@dataclass(slots=True)
class Cluster:
    """The API double, controller and ingress running in their own thread's event loop."""

    server: FakeKubeApiServer
    ingress: FakeIngress
    controller: FakeKServeController
    loop: asyncio.AbstractEventLoop

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def leftovers(self) -> dict[str, int]:
        """Objects with the run labels still in the API, per kind (read in the cluster's loop)."""

        async def count() -> dict[str, int]:
            return {k.kind: self.server.store.count(k, MANAGED_SELECTOR) for k in KINDS}

        return self.call(count())


@contextmanager
def cluster(
    tmp_path: Path, fail: Mapping[str, str] | None = None, path: str = ""
) -> Iterator[Cluster]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="cluster", daemon=True)
    thread.start()

    async def start() -> Cluster:
        server = FakeKubeApiServer(seed=5, clock_offset_s=CLOCK_OFFSET_S)
        ingress = FakeIngress(server, path=path)
        controller = FakeKServeController(
            server, seed=5, delay_s=(0.05, 0.6), fail=fail, url_for=ingress.url_for
        )
        await server.start()
        await ingress.start()
        return Cluster(server, ingress, controller, loop)

    try:
        world = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
        try:
            yield world
        finally:
            try:
                world.call(world.ingress.stop())
            finally:
                world.call(world.server.stop())
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def scenario_file(
    world: Cluster,
    folder: Path,
    namespaces: int,
    per_namespace: int,
    queries: int,
    **kserve_changes: Any,
) -> Path:
    """The example with the kubeconfig, the ingress address and the sizes of this test (and any
    ``platform.kserve`` changes: one level deep, merged)."""
    config = yaml.safe_load(EXAMPLE.read_text())
    kserve = config["platform"]["kserve"]
    for key, value in kserve_changes.items():
        kserve[key] = {**kserve[key], **value} if isinstance(value, dict) else value
    kserve["kubeconfig"] = str(world.server.write_kubeconfig(folder / "kubeconfig"))
    kserve["endpoint"]["ingress_url"] = world.ingress.url
    kserve["delete_wait_s"] = 30
    config["platform"]["ready_timeout_s"] = 60
    config["many_model"].update(
        namespaces=namespaces,
        instances_per_namespace=per_namespace,
        queries=queries,
        namespace_stagger_s=0,
        namespace_concurrency=namespaces,
    )
    path = folder / "scenario.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_cli(scenario: Path, out: Path) -> None:
    result = CliRunner().invoke(
        app, ["run", str(scenario), "--out", str(out), "--no-store", "--no-report"]
    )
    assert result.exit_code == 0, (result.output, result.exception)


def read_run(out: Path) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    from servingperf.results.rundir import RunDir

    run_dir = RunDir(out)
    return (
        run_dir.read_summary(),
        run_dir.read_deployments().to_pylist(),
        run_dir.read_records().to_pylist(),
    )


@pytest.mark.parametrize(
    ("namespaces", "per_namespace", "queries"),
    [pytest.param(12, 17, 3, id="seed-12x17"), pytest.param(100, 20, 1, id="2000")],
)
@pytest.mark.slow  # 12 s and 60 s here (the 2000: scraping every instance at its boundaries)
def test_many_model_through_the_cli(
    tmp_path: Path, namespaces: int, per_namespace: int, queries: int
) -> None:
    started = datetime.now(UTC)
    with cluster(tmp_path) as world:
        scenario = scenario_file(world, tmp_path, namespaces, per_namespace, queries)
        run_cli(scenario, tmp_path / "run")
        leftovers = world.leftovers()
        api_counts = dict(world.server.store.counts)
        routed = dict(world.ingress.requests)
        rejected = dict(world.ingress.rejected)
        served = {r.model for r in world.ingress.ground_truth}
    summary, deployments, records = read_run(tmp_path / "run")
    total = namespaces * per_namespace

    # Every instance deployed, ready on the API server's clock, validated, removed.
    assert len(deployments) == total
    assert len({d["namespace"] for d in deployments}) == namespaces
    width = max(2, len(str(namespaces)))
    assert {d["namespace"] for d in deployments} == {
        f"perf-ns-{n:0{width}d}" for n in range(1, namespaces + 1)
    }
    ahead = started + timedelta(seconds=CLOCK_OFFSET_S - 60)
    for d in deployments:
        assert d["status"] == "deleted" and d["failure_reason"] is None
        assert d["clock_source"] == "platform"
        assert d["created_at"] is not None and d["ready_at"] is not None
        assert d["created_at"] > ahead  # the server's clock, not the harness's
        assert d["ready_at"] >= d["created_at"]
        assert d["endpoint"] == f"http://{d['instance']}.{d['namespace']}.example.com"
        assert (d["validations_ok"], d["validations_failed"]) == (2 * queries, 0)

    # Each query went through its own instance's status URL (the Host), under its own name (the
    # id its runtime serves: another would have been refused).
    assert len(records) == total * 2 * queries
    assert all(r["status"] == "ok" and r["model"] == r["instance"] for r in records)
    assert {d["model"] for d in deployments} == {d["instance"] for d in deployments}
    assert routed == {(d["namespace"], d["instance"]): 2 * queries for d in deployments}
    assert rejected == {}
    assert served == {d["instance"] for d in deployments}

    figures = summary["deployments"]
    assert figures["clock_source"] == "platform"
    assert figures["counts"]["ready"] == total
    assert figures["counts"]["failed"] == 0
    assert figures["load_time_s"] is not None and figures["sentences"]
    assert figures["harness_load_time_s"] is not None
    assert figures["validation"]["queries_ok"] == total * 2 * queries
    assert figures["saturation"]["verdict"] in ("saturated", "not saturated")
    assert leftovers == {k.kind: 0 for k in KINDS}
    # Readiness from one cluster-wide watch, no polling: a handful of GETs (the list, the watch,
    # the clean-up's lists) whatever the number of instances; one create per object.
    assert api_counts["watches.opened"] == 1
    assert api_counts["http.GET"] < 10
    assert api_counts["http.POST"] == total + 2 * namespaces  # + Namespace and Sidecar each


def test_instances_failed_by_the_controller_are_recorded_with_the_reason(tmp_path: Path) -> None:
    failing = {"flan-t5-small-01-02": "FailedToLoad", "flan-t5-small-02-03": "FailedToLoad"}
    with cluster(tmp_path, fail=failing, path="/openai") as world:
        scenario = scenario_file(
            world,
            tmp_path,
            2,
            3,
            2,
            inference_service={"args": [f"--served-model-name={MODEL_ID}"]},
            endpoint={"served_model": "scenario", "path": "/openai/v1"},
        )
        run_cli(scenario, tmp_path / "run")
        leftovers = world.leftovers()
        routed = dict(world.ingress.requests)
        served = {r.model for r in world.ingress.ground_truth}
    summary, deployments, records = read_run(tmp_path / "run")

    by_name = {d["instance"]: d for d in deployments}
    assert sorted(by_name) == [f"flan-t5-small-{n:02d}-{i:02d}" for n in (1, 2) for i in (1, 2, 3)]
    for name, d in by_name.items():
        if name in failing:
            assert d["status"] == "failed" and d["ready_at"] is None
            assert "FailedToLoad" in d["failure_reason"] or "404" in d["failure_reason"]
            assert d["validations_ok"] == d["validations_failed"] == 0
            assert d["t_deleted_s"] is not None  # removed at once
        else:
            assert d["status"] == "deleted" and d["validations_ok"] == 4
            assert d["endpoint"] == f"http://{name}.{d['namespace']}.example.com/openai/v1"
    assert {(ns, name) for ns, name in routed} == {
        (d["namespace"], n) for n, d in by_name.items() if n not in failing
    }
    assert len(records) == 4 * 4
    assert all(r["status"] == "ok" and r["model"] == MODEL_ID for r in records)
    assert served == {MODEL_ID}  # the scenario's id, below the path, on every instance
    counts = summary["deployments"]["counts"]
    assert (counts["ready"], counts["failed"]) == (4, 2)
    assert summary["deployments"]["failure_reasons"]
    assert leftovers == {k.kind: 0 for k in KINDS}
