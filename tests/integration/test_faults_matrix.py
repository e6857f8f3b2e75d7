"""Issue 10's acceptance: every emulator fault against the whole harness.

Each case runs a scenario through ``run_scenario`` with the local platform (real emulator
processes on loopback, faults passed on their command line) and checks, from the run directory and
the emulators' ground truth:

- the run ends within its deadline plus a stated bound: load time + ramp-up + duration per model,
  plus ``RUN_BOUND_S`` per model for starting the server process and tearing it down; and each
  phase stops issuing on time and has cut what was in flight within ``PHASE_BOUND_S``;
- records equal requests issued: request ids are unique, and each user's sequence numbers run
  0..n-1 without a gap (every request the engine issued left a record);
- error counts equal the faults injected: every failed record's request carries an injected fault
  of the matching kind in the ground truth, and every injected failing fault is a failed (or, if
  in flight at the end, cut) record; after a crash, requests that never reached a live server are
  the only errors without a ground-truth line, and they are connection failures sent after it;
- nothing stays deployed: no emulator process of the run is left, and every deployment record
  says deleted (or failed).
"""

from __future__ import annotations

import asyncio
import collections
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from servingperf.config import parse_scenario
from servingperf.emulator.groundtruth import GroundTruthRecord
from servingperf.errors import DeployError, ExitCode, ServingPerfError, TargetError
from servingperf.load.sinks import NullProgress
from servingperf.scenarios.runner import RunOptions, run_scenario
from tests.support.ground_truth import load_ground_truth

pytestmark = pytest.mark.slow

RUN_BOUND_S = 12.0  # per model: spawn + import + ready probe, and SIGTERM teardown (grace 5 s)
PHASE_BOUND_S = 2.0  # a phase stops issuing on time and cuts what is in flight within this

# Which client error kind each injected fault must produce (None: the request still succeeds).
EXPECTED_KIND: dict[str, str | None] = {
    "http_500": "http_status",
    "http_503": "http_status",
    "http_429": "rate_limited",
    "latency_spike": None,
    "stall": "timeout",
    "disconnect": "protocol",
    "bad_json": "protocol",
    "bad_framing": "protocol",
    "crash": "protocol",
    "multi_token": None,
    "usage_mismatch": None,
    "reasoning_first": None,
    "empty_200": "protocol",
}
# The shape faults whose usage count a client counting one token per chunk cannot match.
MISMATCHED = frozenset({"multi_token", "usage_mismatch"})


@dataclass
class Case:
    name: str
    faults: str  # the YAML flow mapping of the first model's faults
    load: str = "users: 4, duration_s: 1.5, ramp_up_s: 0, request_timeout_s: 10"
    second_model: bool = False  # a healthy model after the faulty one: the run goes on
    expect_failure: type[ServingPerfError] | None = None
    failure_text: str = ""
    load_time_s: float = 0.0
    ready_timeout_s: float = 20.0
    stall_is_timeout: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


CASES = [
    Case("http-status", "{seed: 1, error_status: {500: 0.15, 503: 0.15, 429: 0.1}}"),
    Case("latency-spike", "{seed: 2, latency_spike_p: 0.3, latency_spike_s: 0.3}"),
    Case(
        "stall-timeout",
        "{seed: 3, stall_p: 0.3, stall_s: 30, stall_after_tokens: 2}",
        load="users: 4, duration_s: 2, ramp_up_s: 0, request_timeout_s: 0.5",
    ),
    Case(
        "stall-cut-at-end",
        "{stall_p: 1.0, stall_s: 60, stall_after_tokens: 3}",
        load="users: 6, duration_s: 1.5, ramp_up_s: 0, request_timeout_s: 60",
        stall_is_timeout=False,
    ),
    Case("disconnect", "{seed: 4, disconnect_p: 0.3, disconnect_after_tokens: 3}"),
    Case("malformed-chunks", "{seed: 5, bad_json_p: 0.2, bad_framing_p: 0.2}"),
    Case(
        "non-streamed",
        "{seed: 6, error_status: {503: 0.1}, disconnect_p: 0.1, bad_json_p: 0.1}",
        load="users: 4, duration_s: 1.5, ramp_up_s: 0, request_timeout_s: 10, stream: false",
    ),
    Case(
        "shapes",
        "{seed: 7, multi_token_p: 0.2, usage_mismatch_p: 0.2, reasoning_p: 0.2, empty_200_p: 0.2}",
    ),
    Case("crash-after-requests", "{crash_after_requests: 25}", second_model=True),
    Case("crash-after-seconds", "{crash_after_s: 0.7}"),
    Case("slow-start", "{}", load_time_s=1.0),
    Case(
        "failed-start",
        "{start: fail}",
        second_model=True,
        expect_failure=DeployError,
        failure_text="faulty: server exited with code 3 while starting",
    ),
    Case(
        "never-ready",
        "{start: never-ready}",
        second_model=True,
        expect_failure=DeployError,
        failure_text="faulty: not ready after 1.5 s",
        ready_timeout_s=1.5,
    ),
    Case(
        "breaker",
        "{error_status: {500: 0.6}}",
        load="users: 4, duration_s: 30, ramp_up_s: 0, request_timeout_s: 10,"
        " breaker: {max_error_rate: 0.3, min_requests: 20}",
        second_model=True,
        expect_failure=TargetError,
        failure_text="error breaker tripped on instance 'faulty' phase 'load'",
    ),
]


def scenario(case: Case) -> str:
    healthy = (
        "  - name: healthy\n"
        "    emulator: {profile: instant, load_time_s: 0, overrides: {decode_base_s: 0.004}}\n"
    )
    return (
        f"name: faults-{case.name}\n"
        f"platform: {{kind: local, ready_timeout_s: {case.ready_timeout_s}}}\n"
        "models:\n"
        "  - name: faulty\n"
        f"    emulator: {{profile: instant, load_time_s: {case.load_time_s},"
        f" overrides: {{decode_base_s: 0.004}}, faults: {case.faults}}}\n"
        + (healthy if case.second_model else "")
        + f"load: {{{case.load}, workers: 1}}\n"
        "dataset: {source: synthetic, synthetic_input_tokens: 16, prompts: 8, output_tokens: 12}\n"
    )


def emulators_of(path: Path) -> list[int]:
    """Pids of live processes whose command line mentions ``path`` (the run's emulators)."""
    needle = str(path).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in cmdline and b"emulator" in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def check_records_are_requests(rows: list[dict[str, Any]]) -> None:
    ids = [r["request_id"] for r in rows]
    assert len(ids) == len(set(ids)), "a request id was recorded twice"
    per_user: dict[tuple[str, str, int], list[int]] = collections.defaultdict(list)
    for r in rows:
        instance, phase, _worker, user, seq = r["request_id"].split(":")
        per_user[(instance, phase, int(user.removeprefix("u")))].append(int(seq))
    for key, seqs in per_user.items():
        assert sorted(seqs) == list(range(len(seqs))), f"requests of {key} lost: {sorted(seqs)}"


def check_errors_match_faults(
    rows: list[dict[str, Any]], truth: dict[str, GroundTruthRecord], case: Case, t0: float
) -> collections.Counter[str]:
    """The exact accounting of the module docstring; returns injected faults by label."""
    injected: collections.Counter[str] = collections.Counter()
    crash_at = min(
        (t.end for t in truth.values() if t.fault == "crash" and t.end is not None),
        default=None,
    )
    for r in rows:
        server = truth.get(r["request_id"])
        if server is None:
            if r["status"] == "cut" and crash_at is None:
                continue  # cut before the server read it
            assert crash_at is not None, f"no ground truth for {r['request_id']} ({r})"
            # Never reached a live server: only possible around and after the crash.
            assert r["status"] in ("error", "cut"), r
            if r["status"] == "error":
                assert r["error_kind"] in ("connect", "protocol"), r
                # Never sent (no connection): its time is when it was scheduled.
                issued = r["t_sent_s"] if r["t_sent_s"] is not None else r["t_scheduled_s"]
                assert issued + t0 >= crash_at - 0.5, r
            continue
        if server.fault is not None:
            injected[server.fault] += 1
        expected = EXPECTED_KIND.get(server.fault) if server.fault else None
        if server.fault == "stall" and not case.stall_is_timeout:
            expected = None  # longer than the timeout: cut at the end
        if r["status"] == "cut":
            continue  # in flight when the phase ended: not an error, whatever was injected
        if expected is None:
            assert r["status"] == "ok", (r, server)
            if r["streamed"]:  # a whole answer has one count: nothing to compare
                assert r["token_mismatch"] is (server.fault in MISMATCHED), (r, server)
        else:
            assert r["status"] == "error", (r, server)
            assert r["error_kind"] == expected, (r, server)
            assert r["error_message"], r
    return injected


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_fault_against_the_harness(tmp_path: Path, case: Case) -> None:
    spec = parse_scenario(scenario(case), f"{case.name}.yaml")
    run = tmp_path / "run"
    options = RunOptions(base_dir=tmp_path, runs_dir=tmp_path, out=run, report=False)
    started = time.monotonic()
    failure: ServingPerfError | None = None
    try:
        await run_scenario(spec, options, NullProgress(), asyncio.Event())
    except ServingPerfError as exc:
        failure = exc
    elapsed = time.monotonic() - started

    # Deadline: per model, load time + ramp-up + duration, plus the stated bound.
    models = len(spec.models)
    phase_s = spec.load.ramp_up_s + spec.load.duration_s
    deadline = models * (case.load_time_s + phase_s + RUN_BOUND_S)
    assert elapsed <= deadline, f"run took {elapsed:.1f} s, deadline {deadline:.1f} s"

    from servingperf.results.rundir import RunDir

    run_dir = RunDir(run)
    info = run_dir.read_info()
    if case.expect_failure is None:
        assert failure is None, failure
        assert info.status == "complete"
    else:
        assert isinstance(failure, case.expect_failure), failure
        assert failure.exit_code is ExitCode.TARGET_FAILURE
        assert info.status == "failed"
        assert case.failure_text in (info.status_reason or ""), info.status_reason
        assert case.failure_text in str(failure)

    for window in info.phases:
        assert window.measure_end_s is not None
        assert window.end_s is not None
        assert window.measure_end_s - window.start_s <= phase_s + PHASE_BOUND_S
        assert window.end_s - window.measure_end_s <= PHASE_BOUND_S

    rows = run_dir.read_records().to_pylist()
    truth = load_ground_truth(list(run.rglob("ground_truth.jsonl")))
    check_records_are_requests(rows)
    injected = check_errors_match_faults(rows, truth, case, info.t0_monotonic)
    errors = sum(1 for r in rows if r["status"] == "error")
    summary_errors = sum(
        entry["counts"]["error"] for entry in run_dir.read_summary()["instances"].values()
    )
    assert summary_errors <= errors  # the summary counts errors sent inside the window

    deployments = {d["instance"]: d for d in run_dir.read_deployments().to_pylist()}
    deployed = {"faulty"} if case.name == "breaker" else {m.name for m in spec.models}
    assert set(deployments) == deployed  # a tripped breaker stops the run: no next model
    for record in deployments.values():
        assert record["status"] in ("deleted", "failed"), record
        assert record["t_deleted_s"] is not None, record
    assert emulators_of(run) == [], "an emulator process outlived the run"

    faulty_rows = [r for r in rows if r["instance"] == "faulty"]
    if case.name in ("failed-start", "never-ready"):
        assert faulty_rows == []
        assert deployments["faulty"]["status"] == "failed"
        assert case.failure_text.removeprefix("faulty: ") in deployments["faulty"]["failure_reason"]
        assert any(r["status"] == "ok" for r in rows if r["instance"] == "healthy")
        return
    assert faulty_rows, "the faulty model got no load"
    if case.name == "breaker":
        assert info.phases[0].measure_end_s < phase_s / 2, "the breaker did not stop the phase"
        assert not any(r["instance"] == "healthy" for r in rows), "the run went on after a trip"
        # Every error is an injected 500; an injected 500 still in flight when the trip stopped
        # the phase is a cut record (seen in CI: 60 injected, 59 errors, 1 cut).
        cut_500 = sum(
            1
            for r in rows
            if r["status"] == "cut"
            and (server := truth.get(r["request_id"])) is not None
            and server.fault == "http_500"
        )
        assert injected["http_500"] - cut_500 == errors
        return
    if case.name == "slow-start":
        load_time = deployments["faulty"]["t_ready_s"] - deployments["faulty"]["t_created_s"]
        assert load_time >= case.load_time_s
        assert errors == 0
        return
    if case.name == "stall-cut-at-end":
        assert errors == 0
        assert {r["status"] for r in faulty_rows} == {"cut"}  # every request stalled and was cut
        assert injected["stall"] == len(faulty_rows)
        return
    if case.name == "shapes":
        assert errors == injected["empty_200"] > 0
        assert all(injected[label] > 0 for label in ("multi_token", "usage_mismatch"))
        return
    if case.name == "latency-spike":
        assert errors == 0
        assert injected["latency_spike"] > 0
        for r in faulty_rows:
            if truth[r["request_id"]].fault == "latency_spike" and r["status"] == "ok":
                assert r["t_first_token_s"] - r["t_sent_s"] >= 0.3
        return
    if case.name.startswith("crash"):
        assert injected["crash"] >= 1
        crashed = [r for r in faulty_rows if r["request_id"] in truth]
        failed_with_truth = [r for r in crashed if r["status"] == "error"]
        assert len(failed_with_truth) == sum(
            1 for r in crashed if truth[r["request_id"]].fault == "crash" and r["status"] != "cut"
        )
        assert any(r["error_kind"] == "connect" for r in faulty_rows)  # the server is gone
        if case.second_model:
            assert any(r["status"] == "ok" for r in rows if r["instance"] == "healthy")
        return
    # Per-request faults that fail the request: error count == injected faults not cut.
    failing = {label for label, kind in EXPECTED_KIND.items() if kind is not None}
    not_cut = sum(
        1
        for r in faulty_rows
        if r["status"] != "cut" and (truth[r["request_id"]].fault or "") in failing
    )
    assert errors == not_cut
    assert sum(injected[label] for label in failing) >= errors > 0
