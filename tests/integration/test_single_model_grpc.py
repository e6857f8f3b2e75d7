"""The seed's single-model test over the gRPC protocols it used, through the whole pipeline:
scenario -> local platform (the emulator's gRPC front end) -> engine -> records -> summary ->
report, as examples/single-model-caikit.yaml runs it (here at a few seconds' scale).

Unary caikit calls have no TTFT (absent, never zero) and report NTPOT; streaming TGIS calls have
both. Records are checked against the server's ground truth like the HTTP path.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from servingperf.config import parse_scenario
from servingperf.load.sinks import NullProgress
from servingperf.scenarios.runner import RunOptions, run_scenario
from tests.support.ground_truth import compare, load_ground_truth

SCENARIO = """\
name: grpc-e2e
models:
  - name: small
    protocol: {protocol}
    emulator: {{profile: flan-t5-small, load_time_s: 0.2}}
load: {{users: 16, duration_s: 3, ramp_up_s: 0.5, stream: {stream}}}
dataset: {{prompts: 32, output_tokens: 24}}
"""


@pytest.mark.parametrize(("protocol", "stream"), [("caikit-grpc", "false"), ("tgis-grpc", "true")])
async def test_seed_single_model_over_grpc(tmp_path: Path, protocol: str, stream: str) -> None:
    spec = parse_scenario(SCENARIO.format(protocol=protocol, stream=stream), "grpc.yaml")
    options = RunOptions(base_dir=tmp_path, runs_dir=tmp_path, out=tmp_path / "run", report=True)
    outcome = await run_scenario(spec, options, NullProgress(), asyncio.Event())
    entry = outcome.summary["instances"]["small"]
    assert entry["counts"]["measured"] > 20
    assert entry["counts"]["error"] == 0
    assert entry["stats"]["ntpot_s"]["n"] == entry["counts"]["measured"]
    if stream == "false":
        assert entry["stats"]["ttft_s"] is None  # unary: no TTFT, never a zero
    else:
        assert entry["stats"]["ttft_s"]["n"] == entry["counts"]["measured"]
    records = outcome.run_dir.read_records()
    truth = load_ground_truth(list((tmp_path / "run" / "instances").rglob("ground_truth.jsonl")))
    comparison = compare(records, truth)
    assert comparison.missing_on_server == []
    assert comparison.token_mismatches == []
    assert (tmp_path / "run" / "report.html").stat().st_size > 100_000
