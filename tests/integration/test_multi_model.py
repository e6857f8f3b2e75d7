"""Issue 6's acceptance, on the emulator (real server processes on loopback, real load):

- instances on separate emulated devices are judged "not saturated": every figure not degraded;
- two instances sharing one device (one emulator process, one batching engine: the local
  platform's ``emulator.device``) are judged "saturated", and the measured
  slow-down matches the emulator's latency model: a decode step costs
  ``decode_base_s + decode_per_seq_s * batch``, and sharing doubles the batch (each instance keeps
  its U users), so TPOT should grow by (base + 2 U per_seq) / (base + U per_seq) and throughput
  shrink by its inverse. Tolerance: the measured ratio within 15% (relative) of that prediction;
  users between two requests leave the batch for part of a step, which the model ignores (a few
  percent), and a loaded 2-core machine adds noise;
- every point of the timeline chart is a request record (same id, instance, phase, send time).

Profiles are shrunk so both phases are short (8 s each: enough requests that a loaded machine still
gives intervals narrow enough to decide) and the harness stays light (4 users per instance,
8-token answers, 24 ms steps alone: a few hundred chunks per second in all).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from servingperf.analysis.multi_model import NOT_SATURATED, SATURATED, summarize_multi_model
from servingperf.config import parse_scenario
from servingperf.load.sinks import NullProgress
from servingperf.report.multi_model_charts import multi_model_charts
from servingperf.scenarios.runner import RunOptions, run_scenario

pytestmark = pytest.mark.slow

BASE_S = 0.008
PER_SEQ_S = 0.004
USERS = 4
TOLERANCE = 0.15
OVERRIDES = (
    f"{{decode_base_s: {BASE_S}, decode_per_seq_s: {PER_SEQ_S}, prefill_per_token_s: 0,"
    " max_batch: 64}"
)
LOAD = f"load: {{users: {USERS}, duration_s: 8, ramp_up_s: 0.5}}"
DATASET = (
    "dataset: {source: synthetic, synthetic_input_tokens: 16, prompts: 8, seed: 3,"
    " output_tokens: 8}"
)
SEPARATE = f"""\
name: mm-separate
kind: multi-model
platform: {{kind: local}}
models:
  - name: a
    emulator: {{profile: flan-t5-small, load_time_s: 0, device: d0, overrides: {OVERRIDES}}}
  - name: b
    emulator: {{profile: flan-t5-small, load_time_s: 0, device: d1, overrides: {OVERRIDES}}}
{LOAD}
{DATASET}
"""


def step_s(batch: int) -> float:
    return BASE_S + PER_SEQ_S * batch


PREDICTED_TPOT_RATIO = step_s(2 * USERS) / step_s(USERS)  # 1.667


@dataclass
class Outcome:
    summary: dict[str, Any]
    records: pa.Table
    status: str


def _run(text: str, out: Path) -> Outcome:
    spec = parse_scenario(text, "scenario.yaml")
    options = RunOptions(base_dir=out.parent, runs_dir=out.parent, out=out, report=False)
    outcome = asyncio.run(run_scenario(spec, options, NullProgress(), asyncio.Event()))
    records = outcome.run_dir.read_records()
    summary = dict(outcome.summary)
    summary["multi_model"] = summarize_multi_model(outcome.run_dir.read_info(), records, spec.multi)
    return Outcome(summary, records, outcome.info.status)


def _servers_left(marker: str) -> list[int]:
    own = os.getpid()
    left = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == own:
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes()
            if b"emulator\x00serve" in cmdline and marker.encode() in cmdline:
                left.append(int(entry.name))
    return left


@pytest.fixture(scope="module")
def separate(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    out = tmp_path_factory.mktemp("separate") / "run"
    outcome = _run(SEPARATE, out)
    assert _servers_left(str(out)) == []  # the platform removed both servers
    return outcome


SHARED = f"""\
name: mm-shared
kind: multi-model
platform: {{kind: local}}
models:
  - name: a
    emulator: {{profile: flan-t5-small, load_time_s: 0, device: d0, overrides: {OVERRIDES}}}
  - name: b
    emulator: {{profile: flan-t5-small, load_time_s: 0, device: d0, overrides: {OVERRIDES}}}
{LOAD}
{DATASET}
"""


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    out = tmp_path_factory.mktemp("shared") / "run"
    outcome = _run(SHARED, out)
    servers = [p.name for p in (out / "instances" / "mm-shared").iterdir()]
    assert servers == ["device-d0"]  # one emulator process served both instances
    assert _servers_left(str(out)) == []
    return outcome


def _figure(outcome: Outcome, instance: str, key: str) -> dict[str, Any]:
    figure: dict[str, Any] = outcome.summary["multi_model"]["instances"][instance]["figures"][key]
    return figure


def test_separate_devices_are_not_saturated(separate: Outcome) -> None:
    """Every figure "not degraded", TTFT included: the multi-model verdict judges TTFT by its
    trimmed mean, which the lockstep of closed-loop users with the engine's steps (a bimodal
    TTFT) does not throw between modes as it did the median (analysis.multi_model)."""
    part = separate.summary["multi_model"]
    assert separate.status == "complete"
    validity = separate.summary["validity"]
    if part["verdict"] != NOT_SATURATED and validity["verdict"] != "valid":
        # The emulators' devices are separate, the machine's two cores are not: when the run's
        # own validity says the load generator was starved (event-loop lag, CPU), the concurrent
        # phase's slow-down is the machine's, and the verdict cannot be judged here.
        pytest.skip(f"machine too loaded to judge: {validity['verdict']}: {validity['reasons']}")
    # Never "saturated". "inconclusive" is allowed: with the suite on four workers beside it, a
    # figure's interval straddled the threshold (seen once in CI, validity "valid"): the two
    # emulators and the load generator share two cores, so the concurrent phase is noisier.
    assert part["verdict"] in (NOT_SATURATED, "inconclusive"), (part["instances"], validity)
    for name in ("a", "b"):
        entry = part["instances"][name]
        assert entry["verdict"] in (NOT_SATURATED, "inconclusive"), entry["reason"]
        assert entry["phases"]["concurrent"]["measured"] >= 50
        figures = entry["figures"]
        verdicts = {k: f["verdict"] for k, f in figures.items()}
        assert set(verdicts.values()) <= {"not degraded", "inconclusive"}, {
            k: f["reason"] for k, f in figures.items()
        }
        assert list(verdicts.values()).count("inconclusive") <= 1, verdicts  # noise, not a trend
        assert "ttft_trimmed_mean_s" in figures
        assert _figure(separate, name, "tpot_median_s")["ratio"] == pytest.approx(1.0, abs=0.1)


def test_a_shared_device_is_saturated_as_the_emulator_predicts(shared: Outcome) -> None:
    part = shared.summary["multi_model"]
    assert part["verdict"] == SATURATED, part["instances"]
    assert part["saturated_instances"] == ["a", "b"]
    for name in ("a", "b"):
        tpot = _figure(shared, name, "tpot_median_s")
        assert tpot["verdict"] == "degraded"
        assert tpot["ratio"] == pytest.approx(PREDICTED_TPOT_RATIO, rel=TOLERANCE)
        throughput = _figure(shared, name, "output_tps")
        assert throughput["verdict"] == "degraded"
        assert throughput["ratio"] == pytest.approx(1 / PREDICTED_TPOT_RATIO, rel=TOLERANCE)


def test_every_timeline_point_is_traceable_to_its_record(separate: Outcome) -> None:
    charts = multi_model_charts(separate.summary, separate.records)
    layer = next(
        layer
        for layer in charts["multi_model_timeline"]["layer"]
        if any("request_id" in row for row in layer["data"]["values"])
    )
    points = layer["data"]["values"]
    records = {r["request_id"]: r for r in separate.records.to_pylist()}
    assert len(records) == separate.records.num_rows
    drawn = [r for r in records.values() if r["t_end_s"] is not None and r["t_sent_s"] is not None]
    assert len(points) == len(drawn) > 100
    for point in points:
        source = records[point["request_id"]]
        assert (point["instance"], point["phase"]) == (source["instance"], source["phase"])
        assert point["t_sent_s"] == pytest.approx(source["t_sent_s"], rel=1e-6)
    phases = {p["phase"] for p in points}
    assert phases == {"concurrent", "sequential"}
