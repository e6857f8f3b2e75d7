"""The results site from a real store and real run directories (synthetic runs), and the gating
step of ``servingperf ci``: no reference yet, a run of the reference release itself, a reference
that must exist."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from urllib.parse import unquote

import pytest
import typer
from typer.testing import CliRunner

from servingperf.analysis.gate import GateSpec
from servingperf.cli.ci import gate_candidate
from servingperf.cli.ci import site as site_command
from servingperf.continuous.selection import parse_selection
from servingperf.continuous.site import (
    GATES_DIR,
    read_gate_documents,
    scenario_slug,
    write_gate_document,
    write_site,
)
from servingperf.errors import ConfigError
from servingperf.report.build import build_report
from servingperf.report.png import PNG_MAGIC
from servingperf.results.rundir import RunDir
from servingperf.results.store import Store, open_store
from tests.fakes.runs import record_release_history

HOSTILE = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
SCENARIO = "single-model-demo"
RELEASES = {"2.3.0": 1.0, "2.4.0": 1.0, "2.5.0": 1.0, "2.6.0": 1.0, "2.7.0": 1.3, HOSTILE: 1.0}


def _history(store: Store, tmp: Path, **kwargs: object) -> list[RunDir]:
    return record_release_history(
        store,
        tmp / "runs",
        RELEASES,
        models=("flan-t5-small", HOSTILE),
        requests_per_instance=150,
        labels={"note": HOSTILE},
        **kwargs,  # type: ignore[arg-type]
    )


def _report(run_dir: RunDir) -> None:
    info = run_dir.read_info()
    build_report(
        run_dir.path, info.to_json(), run_dir.read_summary(), run_dir.read_records(), png=False
    )


def _gate_doc(store: Store, run_dir: RunDir, reference: str) -> dict[str, object]:
    run = store.get_run(run_dir.read_info().run_id)
    assert run is not None
    document, _ = gate_candidate(
        store, parse_selection(reference), run, GateSpec(), (), require_reference=False
    )
    return document


def test_site_from_the_store(tmp_path: Path) -> None:
    site = tmp_path / "site"
    with open_store(str(tmp_path / "results.db")) as store:
        runs = _history(store, tmp_path)
        for run_dir in runs[-3:]:
            _report(run_dir)
        write_gate_document(site, _gate_doc(store, runs[4], "release=2.5.0"))  # 2.7.0: slower
        (site / "charts").mkdir(parents=True)
        (site / "charts" / "stale.png").write_bytes(PNG_MAGIC)
        paths = write_site(store, site)

    page = paths.index.read_text(encoding="utf-8")
    assert HOSTILE not in page.split('<script type="module">')[0].split("application/json")[0]
    assert ESCAPED in page
    slug = scenario_slug(SCENARIO)
    # the reference comes from the latest gate; the charts draw the last five and the reference
    assert 'data-release="2.5.0"' in page
    assert f"{slug}--release_per_token_distribution" in paths.pngs
    assert not (site / "charts" / "stale.png").exists()
    for path in paths.pngs.values():
        assert path.read_bytes().startswith(PNG_MAGIC)
    data = json.loads(
        page.split('id="servingperf-charts">', 1)[1]
        .split("</script>", 1)[0]
        .replace("\\u003c", "<")
        .replace("\\u003e", ">")
        .replace("\\u0026", "&")
    )
    box = data[f"{slug}--release_per_token_distribution"]["hconcat"][0]["layer"]
    domain = next(layer for layer in box if layer["mark"]["type"] == "bar")["encoding"]["x"][
        "scale"
    ]["domain"]
    assert domain == ["2.4.0", "2.5.0", "2.6.0", "2.7.0", HOSTILE]  # the last five
    # the latest gate is first and caught the slow release
    assert page.index('id="latest-gate"') < page.index('id="runs"')
    assert "regression:" in page.split('id="runs"')[0]
    # every report link is relative and resolves to an existing file
    hrefs = {unquote(h) for h in re.findall(r'href="([^"#][^"]*)"', page)}
    assert hrefs
    for href in hrefs:
        assert not href.startswith(("/", "http", "file:"))
        assert (site / href).resolve().is_file(), href


def test_many_model_load_times_and_a_missing_run_directory(tmp_path: Path) -> None:
    site = tmp_path / "site"
    with open_store(str(tmp_path / "results.db")) as store:
        single = record_release_history(
            store,
            tmp_path / "single",
            {"1.0": 1.0, "1.1": 1.0},
            load_times={"1.0": 3.0, "1.1": 3.0},  # a single-model run's deployments: not drawn
            scenario="single",
        )
        record_release_history(
            store,
            tmp_path / "many",
            {"1.0": 1.0, "1.1": 1.0},
            load_times={"1.0": 3.0, "1.1": 6.0},
            scenario="many",
            kind="many-model",
            first_run=10,
        )
        shutil.rmtree(single[0].path)
        paths = write_site(store, site, png=False, references={"many": "1.0"})
    page = paths.index.read_text(encoding="utf-8")
    assert f"{scenario_slug('many')}--release_load_times" in page
    assert f"{scenario_slug('single')}--release_load_times" not in page
    assert "left out of the charts" in page
    assert "(run directory gone)" in page


def test_unreadable_gate_files_are_noted_and_gates_sorted(tmp_path: Path) -> None:
    site = tmp_path / "site"
    gates = site / GATES_DIR
    gates.mkdir(parents=True)
    (gates / "20240101000000-broken.json").write_text("{not json")
    (gates / "20240102000000-old.json").write_text(json.dumps({"format_version": 99}))
    for stamp in ("2024-01-03T00:00:00+00:00", "2024-01-04T00:00:00+00:00"):
        write_gate_document(
            site,
            {"format_version": 1, "gated_at": stamp, "candidate_run": stamp[:10], "status": "x"},
        )
    documents, notes = read_gate_documents(site)
    assert [d["candidate_run"] for d in documents] == ["2024-01-04", "2024-01-03"]
    assert len(notes) == 2
    with open_store(str(tmp_path / "results.db")) as store:
        page = write_site(store, site, png=False).index.read_text()
    assert "gate file 20240101000000-broken.json left out" in page
    assert "No run in the store yet" in page


def test_gating_a_run_in_ci(tmp_path: Path) -> None:
    with open_store(str(tmp_path / "results.db")) as store:
        first = record_release_history(store, tmp_path / "a", {"2.5.0": 1.0})[0]
        # the reference release's first run: nothing to compare with yet
        document = _gate_doc(store, first, "release=2.5.0")
        assert document["status"] == "no_reference"
        assert "it carries those labels itself and is now the reference" in str(document["message"])
        run = store.get_run(first.read_info().run_id)
        assert run is not None
        with pytest.raises(ConfigError, match="require-reference"):
            gate_candidate(
                store, parse_selection("release=2.5.0"), run, GateSpec(), (), require_reference=True
            )
        other = _gate_doc(store, first, "release=2.4.0")
        assert other["status"] == "no_reference"
        assert "record a run labelled release=2.4.0" in str(other["message"])
        with pytest.raises(ConfigError, match="no run 'missing-run'"):
            _gate_doc(store, first, "missing-run")

        # a second run of the same release is gated against the first one only
        again = record_release_history(store, tmp_path / "b", {"2.5.0": 1.0}, first_run=1)[0]
        document = _gate_doc(store, again, "release=2.5.0")
        assert document["status"] == "gated"
        assert document["reference_runs"] == [first.read_info().run_id]
        assert document["candidate_runs"] == [again.read_info().run_id]
        assert document["reference_labels"] == {"release": "2.5.0"}

        slow = record_release_history(store, tmp_path / "c", {"2.7.0": 1.3}, first_run=2)[0]
        document = _gate_doc(store, slow, "release=2.5.0")
        assert document["exit_code"] == 1
        outcomes = {v["kpi"]: v["outcome"] for v in document["verdicts"]}  # type: ignore[attr-defined]
        assert outcomes["tpot_s"] == "regressed"


def test_site_command_redraws_from_the_store(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(site_command)
    store_path = str(tmp_path / "results.db")
    with open_store(store_path) as store:
        record_release_history(store, tmp_path / "runs", {"1.0": 1.0, "1.1": 1.0})
    args = ["--store", store_path, "--site", str(tmp_path / "site"), "--no-png"]
    result = CliRunner().invoke(app, [*args, "--reference", f"{SCENARIO}=1.0"])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert '<tr class="reference" data-release="1.0">' in page
    assert not (tmp_path / "site" / "charts").exists()
    bad = CliRunner().invoke(app, [*args, "--reference", "no-equals-sign"])
    assert bad.exit_code == 2
