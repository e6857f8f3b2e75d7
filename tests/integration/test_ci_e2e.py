"""``servingperf ci`` end to end against the emulator: short real runs, each one command.

The first run of the reference release finds no reference (exit 0, said plainly); the same
emulator speed again passes (exit 0); a slower emulator is caught (exit 1, JUnit failure), and
each command leaves the run report with its verdicts and the refreshed site behind. The model id
and a label are ``<script>alert(1)</script>``: they appear escaped in the run report and the index.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

pytestmark = pytest.mark.slow

HOSTILE = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
SCENARIO = """\
name: ci-e2e
models:
  - name: small
    model_id: "{hostile}"
    emulator: {{profile: flan-t5-small, load_time_s: 0, overrides: {{decode_base_s: {decode}}}}}
load: {{users: 8, duration_s: 4, ramp_up_s: 1}}
dataset: {{source: synthetic, prompts: 16, output_tokens: 32}}
"""
# Generous: the runs share a loaded 2-core machine; the slow release is 50% slower per step.
THRESHOLD = "0.15"


def _command() -> list[str]:
    """``python -m servingperf ci`` once the command is registered, else the command alone."""
    from servingperf.cli import app

    registered = any(
        getattr(command.callback, "__module__", "") == "servingperf.cli.ci"
        for command in app.registered_commands
    )
    if registered:
        return [sys.executable, "-m", "servingperf", "ci"]
    return [
        sys.executable,
        "-c",
        "import sys, typer; from servingperf.cli.ci import ci; sys.argv[0] = 'servingperf ci';"
        " typer.run(ci)",
    ]


def _ci(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    common = ["--store", "results.db", "--site", "site", "--runs-dir", "runs"]
    return subprocess.run(
        [*_command(), *args, *common, "--threshold", THRESHOLD],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def _run_dir(document: dict[str, object], cwd: Path) -> Path:
    path = cwd / "runs" / str(document["candidate_run"])
    assert path.is_dir()
    return path


def test_ci_gates_each_release_in_one_command(tmp_path: Path) -> None:
    (tmp_path / "fast.yaml").write_text(SCENARIO.format(hostile=HOSTILE, decode=0.005))
    (tmp_path / "slow.yaml").write_text(SCENARIO.format(hostile=HOSTILE, decode=0.0075))

    bad = _ci(tmp_path, "fast.yaml", "--reference", "release=")
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert not (tmp_path / "runs").exists()  # bad input is refused before anything runs

    first = _ci(
        tmp_path, "fast.yaml", "--label", "release=2.5.0", "--reference", "release=2.5.0",
        "--junit", "out/first.xml", "--markdown", "out/first.md", "--json", "out/first.json",
        "--no-site-png",
    )  # fmt: skip
    assert first.returncode == 0, first.stdout + first.stderr
    assert "no reference yet" in first.stdout
    document = json.loads((tmp_path / "out/first.json").read_text())
    assert document["status"] == "no_reference"
    suite = ET.parse(tmp_path / "out/first.xml").getroot()
    assert suite.get("skipped") == "1"
    assert "no reference" in (tmp_path / "out/first.md").read_text()
    first_dir = _run_dir(document, tmp_path)
    assert json.loads((first_dir / "gate.json").read_text())["status"] == "no_reference"
    assert (tmp_path / "site" / "index.html").is_file()

    same = _ci(
        tmp_path, "fast.yaml", "--label", "release=2.6.0", "--reference", "release=2.5.0",
        "--json", "out/same.json", "--no-site-png",
    )  # fmt: skip
    assert same.returncode == 0, same.stdout + same.stderr
    document = json.loads((tmp_path / "out/same.json").read_text())
    assert document["status"] == "gated"
    assert document["reference_runs"] == [first_dir.name]
    assert "regressed" not in {v["outcome"] for v in document["verdicts"]}

    slow = _ci(
        tmp_path, "slow.yaml", "--label", "release=2.7.0", "--label", f"note={HOSTILE}",
        "--reference", "release=2.5.0", "--junit", "out/slow.xml", "--json", "out/slow.json",
    )  # fmt: skip
    assert slow.returncode == 1, slow.stdout + slow.stderr
    document = json.loads((tmp_path / "out/slow.json").read_text())
    by_kpi = {v["kpi"]: v for v in document["verdicts"]}
    assert by_kpi["tpot_s"]["outcome"] == "regressed"
    assert by_kpi["tpot_s"]["relative_change"] == pytest.approx(0.5, abs=0.2)
    suite = ET.parse(tmp_path / "out/slow.xml").getroot()
    failed = {case.get("name") for case in suite if case.find("failure") is not None}
    assert "tpot_s.median" in failed

    # the run report shows the verdicts; the site shows the latest gate, the runs and releases
    report = (_run_dir(document, tmp_path) / "report.html").read_text(encoding="utf-8")
    assert 'id="verdicts"' in report
    assert ESCAPED in report
    index = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    head = index.split('<script type="application/json"')[0]
    assert HOSTILE not in head
    assert ESCAPED in head  # the model id and the label, as text
    assert head.index("regression:") < head.index('id="runs"')
    for release in ("2.5.0", "2.6.0", "2.7.0"):
        assert f'data-release="{release}"' in head
    assert len(list((tmp_path / "site" / "gates").glob("*.json"))) == 3
    pngs = {p.name.split("--", 1)[1] for p in (tmp_path / "site" / "charts").glob("*.png")}
    assert pngs == {
        "release_per_token_distribution.png",
        "release_throughput.png",
        "release_mean_latency.png",
    }
