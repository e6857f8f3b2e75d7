"""The many-model scenario end to end on the local platform (real emulator processes): a 2 x 3 run,
and a run where one instance crashes while starting and another never becomes ready (the
emulator's injected start faults ``fail`` and ``never-ready``, given to those two instances only)."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from servingperf.analysis.loadtimes import summarize_deployments
from servingperf.config import parse_scenario
from servingperf.errors import ConfigError
from servingperf.load.sinks import LoadCounters, NullProgress
from servingperf.model.specs import EmulatorSpec, FaultSpec, ModelSpec
from servingperf.platforms.base import Instance, InstanceRequest
from servingperf.platforms.local import LocalPlatform
from servingperf.platforms.reaper import STATE_ENV, find_servers
from servingperf.results.record_writer import ParquetRecordWriter
from servingperf.results.rundir import RunDir, RunInfo
from servingperf.scenarios.context import RunContext
from servingperf.scenarios.many_model import (
    PHASE_DEPLOY,
    PHASE_DRIVER,
    PHASE_NAMESPACE,
    DeployCounters,
    plan_namespaces,
    run_many_model,
)
from servingperf.scenarios.runner import RunOptions, run_scenario
from servingperf.telemetry.session import ServerMetrics

pytestmark = pytest.mark.slow

SCENARIO = """\
name: many-test
kind: many-model
platform: {kind: local, ready_timeout_s: 30}
models:
  - name: m
    emulator: {profile: flan-t5-small, load_time_s: 0.3}
many_model:
  namespaces: 2
  instances_per_namespace: 3
  queries: 3
  validation_output_tokens: 4
  namespace_stagger_s: 0.5
dataset: {source: synthetic, synthetic_input_tokens: 16, prompts: 4, seed: 1, output_tokens: 64}
"""


def test_names_are_dns_labels_that_sort_in_creation_order() -> None:
    spec = parse_scenario(SCENARIO, "many.yaml")
    plans = plan_namespaces(spec.many, spec.models[0])
    assert [p.name for p in plans] == ["ns-01", "ns-02"]
    assert plans[1].instances == ("m-02-01", "m-02-02", "m-02-03")
    wide = spec.many.model_copy(update={"namespaces": 100, "instances_per_namespace": 1000})
    assert plan_namespaces(wide, spec.models[0])[99].instances[-1] == "m-100-1000"
    too_long = spec.models[0].model_copy(update={"name": "x" * 60})
    with pytest.raises(ConfigError, match="shorten the model name"):
        plan_namespaces(spec.many, too_long)


class CountingProgress(NullProgress):
    """Also a DeployProgressSink: keeps the last deployment counts it was shown."""

    def __init__(self) -> None:
        self.last: DeployCounters | None = None
        self.labels: list[str] = []

    def tick(self, counters: LoadCounters, elapsed_s: float) -> None:
        self.labels.append(counters.instance)

    def deployments_changed(self, counters: DeployCounters, elapsed_s: float) -> None:
        self.last = counters


async def test_two_namespaces_of_three_deployed_validated_and_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv(STATE_ENV, str(state))
    spec = parse_scenario(SCENARIO, "many.yaml")
    options = RunOptions(base_dir=tmp_path, runs_dir=tmp_path, out=tmp_path / "run", report=False)
    progress = CountingProgress()
    outcome = await run_scenario(spec, options, progress, asyncio.Event())
    assert outcome.info.status == "complete"

    deployments = outcome.run_dir.read_deployments().to_pylist()
    assert sorted(d["instance"] for d in deployments) == [
        f"m-{n:02d}-{i:02d}" for n in (1, 2) for i in (1, 2, 3)
    ]
    for d in deployments:
        assert d["ready_at"] is not None
        assert d["status"] == "deleted"
        assert (d["validations_ok"], d["validations_failed"]) == (6, 0)  # 3 queries x 2 rounds
        assert d["t_ready_s"] <= d["t_first_validated_s"] <= d["t_deleted_s"]
    for namespace in ("ns-01", "ns-02"):
        members = sorted(
            (d for d in deployments if d["namespace"] == namespace), key=lambda d: d["instance"]
        )
        for before, after in itertools.pairwise(members):
            assert after["t_created_s"] >= before["t_first_validated_s"]  # one after the other

    records = outcome.run_dir.read_records().to_pylist()
    assert len(records) == 36
    assert all(r["status"] == "ok" and r["output_tokens"] == 4 for r in records)
    by_phase = {p: [r for r in records if r["phase"] == p] for p in (PHASE_DEPLOY, PHASE_NAMESPACE)}
    assert len(by_phase[PHASE_DEPLOY]) == len(by_phase[PHASE_NAMESPACE]) == 18

    windows = [w for w in outcome.info.phases if w.phase == PHASE_DRIVER]
    assert [w.instance for w in windows] == ["ns-01", "ns-02"]
    assert windows[1].start_s >= windows[0].start_s + 0.5  # the stagger
    summary = summarize_deployments(outcome.run_dir.read_deployments(), outcome.info.phases)
    assert summary["counts"]["ready"] == 6
    assert summary["validation"]["queries_ok"] == 36

    assert progress.last is not None
    assert (progress.last.ready, progress.last.failed, progress.last.deleted) == (6, 0, 6)
    assert any(label.startswith("6/6 ready") for label in progress.labels)
    assert find_servers(state.resolve()) == []


class FaultyPlatform:
    """The local platform, with chosen instances deployed from a broken model spec."""

    name = "local"

    def __init__(self, inner: LocalPlatform, faults: dict[str, ModelSpec]) -> None:
        self.inner = inner
        self.faults = faults

    @property
    def instances(self) -> list[Instance]:
        return self.inner.instances

    async def deploy(self, request: InstanceRequest) -> Instance:
        if request.name in self.faults:
            request = replace(request, model=self.faults[request.name])
        return await self.inner.deploy(request)

    async def wait_ready(self, instance: Instance, timeout_s: float) -> None:
        await self.inner.wait_ready(instance, timeout_s)

    async def delete(self, instance: Instance) -> None:
        await self.inner.delete(instance)

    async def close(self) -> None:
        await self.inner.close()


async def test_failed_instances_are_reported_and_the_others_go_on(tmp_path: Path) -> None:
    text = SCENARIO.replace("ready_timeout_s: 30", "ready_timeout_s: 4")
    spec = parse_scenario(text, "many.yaml")
    template = spec.models[0]

    def broken(emulator: EmulatorSpec) -> ModelSpec:
        return template.model_copy(update={"emulator": emulator})

    t0 = time.monotonic()
    state = tmp_path / "state"
    local = LocalPlatform(tmp_path / "instances", t0, state_dir=state)
    platform = FaultyPlatform(
        local,
        {
            "m-01-02": broken(
                EmulatorSpec(
                    profile="flan-t5-small", load_time_s=0.3, faults=FaultSpec(start="fail")
                )
            ),
            "m-02-01": broken(
                EmulatorSpec(
                    profile="flan-t5-small", load_time_s=0.3, faults=FaultSpec(start="never-ready")
                )
            ),
        },
    )
    run_dir = RunDir(tmp_path / "run")
    run_dir.create()
    info = RunInfo(
        run_id="t",
        scenario=spec.name,
        kind=spec.kind.value,
        started_at=datetime.now(UTC).isoformat(),
        t0_monotonic=t0,
        labels={},
        config={},
        environment={},
    )
    records = ParquetRecordWriter(run_dir.records_dir)
    metrics = ServerMetrics(spec.metrics, run_dir.metrics_dir, t0)  # never started: inert
    context = RunContext(
        spec,
        tmp_path,
        run_dir,
        info,
        t0,
        platform,
        records,
        NullProgress(),
        asyncio.Event(),
        metrics,
    )
    try:
        await run_many_model(context)
    finally:
        await platform.close()
        records.close()

    deployments = {d["instance"]: d for d in run_dir.read_deployments().to_pylist()}
    assert len(deployments) == 6
    crashed, stuck = deployments["m-01-02"], deployments["m-02-01"]
    assert crashed["status"] == "failed"
    assert "exited with code 3 while starting" in crashed["failure_reason"]
    assert stuck["status"] == "failed"
    assert stuck["failure_reason"].startswith("not ready after 4 s (last log lines: ")
    for failed in (crashed, stuck):
        assert failed["ready_at"] is None
        assert failed["validations_ok"] == failed["validations_failed"] == 0
    others = [d for name, d in deployments.items() if name not in ("m-01-02", "m-02-01")]
    assert len(others) == 4
    for d in others:  # including m-01-03 and m-02-02, deployed after a failure
        assert d["ready_at"] is not None
        assert d["validations_ok"] == 6
    summary = summarize_deployments(run_dir.read_deployments())
    assert summary["counts"]["failed"] == 2
    assert summary["failure_reasons"] == {
        "server exited with code 3 while starting": 1,
        "not ready after 4 s": 1,
    }
    assert {r["instance"] for r in run_dir.read_records().to_pylist()} == {
        d["instance"] for d in others
    }
    assert find_servers(state.resolve()) == []
