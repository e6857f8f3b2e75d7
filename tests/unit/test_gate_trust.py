"""The gate refuses to judge an invalid run (exit 4) or sides that are not comparable (exit 5),
unless told to; a suspect run or a warned difference is judged and noted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from servingperf.analysis.fingerprint import Policy
from servingperf.continuous.gating import Trust, gate_runs
from servingperf.continuous.ingest import ingest
from servingperf.continuous.outputs import report_json, report_junit, report_markdown
from servingperf.continuous.selection import parse_selection
from servingperf.errors import ExitCode
from servingperf.results.rundir import RunDir
from servingperf.results.store import Store, open_store
from tests.fakes.runs import record_release_history


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(str(tmp_path / "results.db")) as opened:
        yield opened


def _history(store: Store, tmp_path: Path) -> RunDir:
    dirs = record_release_history(store, tmp_path, {"2.5.0": 1.0, "2.6.0": 1.0})
    return dirs[-1]


def _edit(store: Store, run_dir: RunDir, file: str, change: dict[str, object]) -> None:
    path = run_dir.path / file
    data = json.loads(path.read_text())
    for dotted, value in change.items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    path.write_text(json.dumps(data))
    ingest(store, run_dir)


def _gate(store: Store, trust: Trust | None = None):  # type: ignore[no-untyped-def]
    return gate_runs(
        store, parse_selection("release=2.5.0"), parse_selection("release=2.6.0"), trust=trust
    )


def test_comparable_valid_runs_are_judged(store: Store, tmp_path: Path) -> None:
    _history(store, tmp_path)
    report = _gate(store)
    assert report.refused is None and report.verdicts
    assert report.exit_code is ExitCode.OK
    assert store.runs({"release": "2.6.0"})[0].fingerprint is not None


def test_an_invalid_candidate_is_refused_unless_allowed(store: Store, tmp_path: Path) -> None:
    candidate = _history(store, tmp_path)
    reasons = ["m: invalid: 40% of requests were sent more than 10 ms after their scheduled time"]
    _edit(
        store, candidate, "summary.json", {"validity": {"verdict": "invalid", "reasons": reasons}}
    )
    report = _gate(store)
    assert report.exit_code is ExitCode.INVALID_RUN == 4
    assert report.verdicts == []
    assert "40% of requests were sent" in (report.refusal or "")
    assert report_json(report)["refused"] == report.refusal
    assert "not judged (exit 4)" in report_markdown(report)
    assert 'type="refused"' in report_junit(report)
    allowed = _gate(store, Trust(allow_invalid=True))
    assert allowed.exit_code is ExitCode.OK and allowed.verdicts
    assert any("judged although invalid" in note for note in allowed.notes)


def test_a_suspect_run_is_judged_with_a_note(store: Store, tmp_path: Path) -> None:
    candidate = _history(store, tmp_path)
    _edit(
        store,
        candidate,
        "summary.json",
        {"validity": {"verdict": "suspect", "reasons": ["m: suspect: 35% cut"]}},
    )
    report = _gate(store)
    assert report.refused is None and any("suspect run" in n for n in report.notes)


def test_sides_on_different_hardware_are_not_compared(store: Store, tmp_path: Path) -> None:
    candidate = _history(store, tmp_path)
    _edit(store, candidate, "run.json", {"environment.gpus": ["NVIDIA H100 80GB HBM3"]})
    report = _gate(store)
    assert report.exit_code is ExitCode.INCOMPARABLE == 5
    assert "hardware.gpu_model" in (report.refusal or "")
    warned = _gate(store, Trust(Policy.default().with_rules({"hardware.*": "warn"})))
    assert warned.exit_code is ExitCode.OK
    assert any(n.startswith("differs (warn): hardware.gpu_model") for n in warned.notes)
    relaxed = _gate(store, Trust(Policy.default().relaxed()))
    assert relaxed.exit_code is ExitCode.OK


def test_the_engine_version_is_a_release_field(store: Store, tmp_path: Path) -> None:
    candidate = _history(store, tmp_path)
    _edit(
        store,
        candidate,
        "run.json",
        {"environment.engines": {"flan-t5-small": {"name": "vllm", "version": "0.33.0"}}},
    )
    report = _gate(store)
    # the engine *name* changed too (emulator -> vllm): that refuses; the version alone would not
    assert [d.field for d in report.comparability.refused] == ["engine.flan-t5-small.name"]
