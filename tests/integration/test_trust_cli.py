"""The trust commands from the command line, on a run directory: ``summarize --as PEER`` prints
the peer's figures and the differences table and writes JSON; ``export`` writes the llm-d reports
and the OpenSearch bulk file and logs an MLflow run; bad input is exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from servingperf.results.rundir import RunDir
from servingperf.scenarios.outputs import write_summary
from tests.fakes.runs import synthetic_run, write_run_dir


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "servingperf", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


def _run_dir(tmp_path: Path) -> RunDir:
    info, summary, records = synthetic_run(models=("flan-t5-small",), requests_per_instance=80)
    directory = write_run_dir(tmp_path / "run", info, summary, records)
    write_summary(directory)
    return directory


def test_summarize_as_a_peer(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    done = _cli(
        "summarize", str(run.path), "--as", "vllm-bench", "--json", str(tmp_path / "v.json")
    )
    assert done.returncode == 0, done.stderr
    assert "median_ttft_ms" in done.stdout and "differ from servingperf" in done.stdout
    view = json.loads((tmp_path / "v.json").read_text())
    assert view["peer"] == "vllm-bench" and view["windows"][0]["figures"]
    bad = _cli("summarize", str(run.path), "--as", "locust")
    assert bad.returncode == 2 and "unknown peer" in bad.stderr


def test_export_writes_every_format(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    done = _cli(
        "export",
        str(run.path),
        "--llm-d",
        str(tmp_path / "llmd"),
        "--opensearch-dir",
        str(tmp_path / "os"),
        "--mlflow-uri",
        f"sqlite:///{tmp_path / 'ml.db'}",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(list((tmp_path / "llmd").glob("*.json"))) == 1
    assert len(list((tmp_path / "os").glob("*.ndjson"))) == 1
    assert "MLflow run" in done.stdout
    nothing = _cli("export", str(run.path))
    assert nothing.returncode == 2 and "at least one of" in nothing.stderr
