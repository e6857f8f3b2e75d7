"""LoRA adapters against the emulator with adapter slots on, through a whole run.

One slot (``max_loras: 1``) and one user: requests go one at a time, so a request loads its
adapter exactly when the previous one named the other adapter. The emulator's ground truth must
say so request by request (``adapter_load_s``), and the client must see what it costs: every miss
is at least the modelled load time late to its first token, and misses are later than hits by
about that time (medians; the bound allows a loaded machine). With the slots off (the default)
adapters cost nothing.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from servingperf.emulator.groundtruth import read_ground_truth
from servingperf.results.rundir import RunDir
from tests.integration.test_emulator_prefix_cache_run import run

LOAD_S = 0.2
TOLERANCE_S = 0.1  # on the difference of medians: both sides see the same machine


def scenario(max_loras: int) -> str:
    return f"""\
name: lora-slots
platform: {{kind: local}}
models:
  - name: base
    emulator:
      profile: flan-t5-small
      load_time_s: 0
      overrides: {{max_loras: {max_loras}, lora_load_s: {LOAD_S}}}
    adapters: {{weights: {{sql-lora: 1, chat-lora: 1}}}}
load: {{users: 1, duration_s: 4, ramp_up_s: 0, drain_s: 5, workers: 1}}
dataset: {{source: bundled, prompts: 8, output_tokens: 4}}
"""


def ground_truth(run_dir: RunDir) -> list[tuple[str, str, float]]:
    """(request id, adapter, load paid) per served request, in arrival order."""
    path = next((run_dir.path / "instances").rglob("ground_truth.jsonl"))
    served = sorted(
        (r for r in read_ground_truth(path) if r.outcome == "ok"), key=lambda r: r.arrival
    )
    return [(r.request_id, r.model, r.adapter_load_s) for r in served]


@pytest.mark.slow
async def test_lora_misses_cost_the_modelled_load_time(tmp_path: Path) -> None:
    run_dir = await run(scenario(max_loras=1), tmp_path)
    truth = ground_truth(run_dir)
    assert len(truth) >= 8, truth
    previous = None
    for _, adapter, load_s in truth:
        assert load_s == (0.0 if adapter == previous else LOAD_S), (adapter, previous, load_s)
        previous = adapter
    assert {adapter for _, adapter, _ in truth} == {"sql-lora", "chat-lora"}

    ttft = {
        r["request_id"]: r["t_first_token_s"] - r["t_sent_s"]
        for r in run_dir.read_records().to_pylist()
        if r["status"] == "ok"
    }
    misses = [ttft[rid] for rid, _, load_s in truth if load_s > 0 and rid in ttft]
    hits = [ttft[rid] for rid, _, load_s in truth if load_s == 0 and rid in ttft]
    assert len(misses) >= 3 and len(hits) >= 3, (len(misses), len(hits))
    assert min(misses) >= LOAD_S  # the engine's step cannot end before the load is paid
    extra = statistics.median(misses) - statistics.median(hits)
    assert abs(extra - LOAD_S) <= TOLERANCE_S, f"misses later by {extra:.3f} s, modelled {LOAD_S}"


@pytest.mark.slow
async def test_without_slots_adapters_cost_nothing(tmp_path: Path) -> None:
    run_dir = await run(scenario(max_loras=0), tmp_path)
    truth = ground_truth(run_dir)
    assert truth and all(load_s == 0.0 for _, _, load_s in truth)
    assert {adapter for _, adapter, _ in truth} == {"sql-lora", "chat-lora"}
