"""A shared-prefix workload against the emulator with its prefix cache on, through a whole run.

The dataset plants the answer: ``groups`` shared prefixes of ``prefix_tokens`` words, and
:func:`~servingperf.datasets.shared_prefix.expected_hit_share` says which share of a prompt's
tokens a warm block cache serves. The run's measured share (the emulator's ground truth, per
request) must be that share for every request after its group's first, the first ones must miss,
and the engine's own counters, scraped during the run, must say exactly what the ground truth
says. With the cache off the same workload hits nothing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from servingperf.config import parse_scenario
from servingperf.datasets.shared_prefix import expected_hit_share
from servingperf.emulator.groundtruth import read_ground_truth
from servingperf.load.sinks import NullProgress
from servingperf.results.rundir import RunDir
from servingperf.scenarios.runner import RunOptions, run_scenario

GROUPS, PREFIX, SUFFIX, BLOCK = 4, 100, 20, 16


def scenario(cache_blocks: int) -> str:
    return f"""\
name: prefix-cache
platform: {{kind: local}}
models:
  - name: m
    emulator:
      profile: flan-t5-small
      load_time_s: 0
      overrides: {{prefix_cache_blocks: {cache_blocks}, block_tokens: {BLOCK}}}
load: {{users: 1, duration_s: 3, ramp_up_s: 0, drain_s: 5, workers: 1}}
dataset:
  source: shared-prefix
  prompts: 16
  output_tokens: 4
  shared_prefix:
    {{groups: {GROUPS}, prefix_tokens: {PREFIX}, suffix_tokens: {SUFFIX}, cache_block_tokens: {BLOCK}}}
metrics: {{scrape: {{interval_s: 0.5, timeout_s: 0.4}}}}
"""


async def run(text: str, tmp_path: Path) -> RunDir:
    spec = parse_scenario(text, "scenario.yaml")
    out = tmp_path / "run"
    options = RunOptions(base_dir=tmp_path, runs_dir=tmp_path, out=out, report=False)
    await run_scenario(spec, options, NullProgress(), asyncio.Event())
    return RunDir(out)


def last_counter(run_dir: RunDir, name: str) -> float:
    rows = [r for r in run_dir.read_metrics("scrape").to_pylist() if r["name"] == name]
    assert rows, f"{name} was never scraped"
    return float(max(rows, key=lambda r: r["t_s"])["value"])


@pytest.mark.slow
async def test_warm_prefixes_hit_the_planted_share_and_the_counters_agree(tmp_path: Path) -> None:
    run_dir = await run(scenario(cache_blocks=4096), tmp_path)
    truth = [
        r
        for r in read_ground_truth(next((run_dir.path / "instances").rglob("ground_truth.jsonl")))
        if r.outcome == "ok"
    ]
    assert len(truth) > 2 * GROUPS
    share = expected_hit_share(PREFIX, SUFFIX, BLOCK)
    hits = [r.cached_tokens / r.prompt_tokens for r in sorted(truth, key=lambda r: r.arrival)]
    # One user, 16 prompts drawn at random: a group's first request misses; a later one hits
    # the prefix's whole blocks (the prompts are words: one toy token each), or, when the very
    # same prompt comes again, every block but the last (vLLM computes a prompt's last token).
    prompt = PREFIX + SUFFIX
    repeated = (prompt - 1) // BLOCK * BLOCK / prompt
    assert hits.count(0.0) <= GROUPS
    warm = [h for h in hits if h > 0]
    assert warm and all(h == pytest.approx(share) or h == pytest.approx(repeated) for h in warm), (
        share,
        repeated,
        hits,
    )
    assert any(h == pytest.approx(share) for h in warm)
    # The engine's counters (vLLM's names), as the scraper saw them at the end, say the same.
    assert last_counter(run_dir, "vllm:prefix_cache_hits_total") == sum(
        r.cached_tokens for r in truth
    )
    assert last_counter(run_dir, "vllm:prefix_cache_queries_total") == sum(
        r.prompt_tokens for r in truth
    )
    # The summary states the planted share beside the engine's measured one.
    check = run_dir.read_summary()["server_metrics"]["prefix_cache"]
    assert check["expected_hit_share"] == pytest.approx(share)
    measured = check["instances"]["m"]["measured_hit_share"]
    assert measured == pytest.approx(
        sum(r.cached_tokens for r in truth) / sum(r.prompt_tokens for r in truth)
    )
    assert check["verdict"] == ("agree" if abs(measured - share) <= 0.10 else "disagree")


@pytest.mark.slow
async def test_with_the_cache_off_nothing_hits(tmp_path: Path) -> None:
    run_dir = await run(scenario(cache_blocks=0), tmp_path)
    truth = read_ground_truth(next((run_dir.path / "instances").rglob("ground_truth.jsonl")))
    assert truth and all(r.cached_tokens == 0 for r in truth)
    assert last_counter(run_dir, "vllm:prefix_cache_hits_total") == 0
