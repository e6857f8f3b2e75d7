"""The gate over stored runs keeps each run's samples apart (each stored run points to its own run
directory), and its outputs say which variance the intervals hold."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pytest

from servingperf.analysis.gate import Verdict, compare_kpi
from servingperf.continuous.gating import GateReport, gate_runs
from servingperf.continuous.outputs import report_json, report_junit, report_markdown
from servingperf.continuous.samples import samples_by_run
from servingperf.continuous.selection import parse_selection
from servingperf.model.metrics import metric
from servingperf.results.store import Store, open_store
from tests.fakes.runs import record_release_history


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(str(tmp_path / "results.db")) as opened:
        yield opened


def record(
    store: Store,
    base: Path,
    release: str,
    slowdowns: Sequence[float],
    first: int,
    requests: int = 150,
) -> None:
    """One run per slowdown (the run's machine noise), all labelled ``release``."""
    for k, slowdown in enumerate(slowdowns):
        record_release_history(
            store, base, {release: slowdown}, requests_per_instance=requests, first_run=first + k
        )


def properties(xml: str) -> dict[str, str]:
    suite = ET.fromstring(xml)
    return {p.get("name", ""): p.get("value", "") for p in suite.iter("property")}


def test_runs_of_a_release_are_gated_as_runs(store: Store, tmp_path: Path) -> None:
    # Same code, unlucky machines: the candidate's runs landed on slower ones (pooled +5.2%).
    record(store, tmp_path, "2.5.0", (0.94, 0.98, 1.03), first=0, requests=400)
    record(store, tmp_path, "2.6.0", (0.99, 1.05, 1.09), first=3, requests=400)
    runs = store.runs({"release": "2.5.0"})
    grouped = samples_by_run(runs)
    assert {len(per_run) for per_kpi in grouped.values() for per_run in per_kpi.values()} == {3}

    report = gate_runs(store, parse_selection("release=2.5.0"), parse_selection("release=2.6.0"))
    tpot = next(v for v in report.verdicts if v.kpi == "tpot_s")
    assert (tpot.runs_reference, tpot.runs_candidate) == (3, 3)
    assert tpot.run_variance.value == "between_runs"
    assert tpot.verdict.value != "regressed", tpot.reason
    assert not report.within_run_only
    # the old gate, pooling the same requests as if independent, called it a regression
    cand = samples_by_run(store.runs({"release": "2.6.0"}))
    key = tpot.instance
    pooled = compare_kpi(
        metric("tpot_s"),
        np.concatenate(grouped[key]["tpot_s"]),
        np.concatenate(cand[key]["tpot_s"]),
    )
    assert pooled.verdict is Verdict.REGRESSED, pooled.reason

    document = report_json(report)
    assert document["within_run_only"] is False
    assert document["run_variance_note"].startswith("Runs resampled (3 reference, 3 candidate")
    by_kpi = {v["kpi"]: v for v in document["verdicts"]}
    assert by_kpi["tpot_s"]["run_variance"] == "between_runs"
    assert by_kpi["tpot_s"]["runs_reference"] == 3
    json.dumps(document, allow_nan=False)
    assert "Runs resampled" in report_markdown(report)
    props = properties(report_junit(report))
    assert props["within_run_only"] == "false"
    assert props["run_variance"] == "between_runs"


def test_one_run_per_side_is_labelled_within_run_only(store: Store, tmp_path: Path) -> None:
    """One run per side: machine noise alone (0.95 vs 1.06) is flagged, and every output says
    that the interval holds within-run variance only."""
    record(store, tmp_path, "2.5.0", (0.95,), first=0)
    record(store, tmp_path, "2.6.0", (1.06,), first=1)
    report = gate_runs(store, parse_selection("release=2.5.0"), parse_selection("release=2.6.0"))
    tpot = next(v for v in report.verdicts if v.kpi == "tpot_s")
    assert tpot.verdict.value == "regressed"
    assert tpot.within_run_only
    assert_within_run_only(report)


def assert_within_run_only(report: GateReport) -> None:
    assert report.within_run_only
    document = report_json(report)
    assert document["within_run_only"] is True
    assert document["run_variance_note"].startswith("Within-run variance only")
    assert {v["run_variance"] for v in document["verdicts"]} == {"within_run_only"}
    markdown = report_markdown(report)
    assert "⚠️ Within-run variance only (1 reference, 1 candidate run(s))" in markdown
    junit = report_junit(report)
    assert properties(junit)["within_run_only"] == "true"
    suite = ET.fromstring(junit)
    out = suite.find("system-out")
    assert out is not None and "Within-run variance only" in (out.text or "")
    for case in suite.iter("testcase"):
        # an Element without children is falsy: test each kind explicitly
        found = [case.find(tag) for tag in ("failure", "skipped", "system-out")]
        (element,) = [e for e in found if e is not None]
        text = element.get("message") or element.text or ""
        assert "runs 1 reference / 1 candidate (within_run_only)" in text


def test_one_candidate_run_against_a_release_borrows_its_spread(
    store: Store, tmp_path: Path
) -> None:
    """What `servingperf ci` does: this run against the other runs of the reference release."""
    record(store, tmp_path, "2.5.0", (0.96, 1.0, 1.04), first=0)
    record(store, tmp_path, "2.6.0", (1.0,), first=3)
    report = gate_runs(store, parse_selection("release=2.5.0"), parse_selection("release=2.6.0"))
    assert {v.run_variance.value for v in report.verdicts} == {"borrowed"}
    assert not report.within_run_only
    assert "takes the run-to-run spread" in report_json(report)["run_variance_note"]
