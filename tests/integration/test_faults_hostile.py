"""Hostile input through the command line: scenario files, datasets, run directories and report
strings. Each gets one clear error line with exit code 2 (or is handled), never a traceback.

Most cases run the real Typer app in-process (``CliRunner``: the same commands, exit codes and
stderr, at a fraction of a process start each); a few run ``python -m servingperf`` for real.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from servingperf.cli import app

BASE = (
    "platform: {kind: local, ready_timeout_s: 10}\n"
    "models:\n  - name: m\n    emulator: {profile: instant, load_time_s: 0}\n"
    "load: {users: 1, duration_s: 0.5, ramp_up_s: 0, workers: 1}\n"
)

SCENARIOS: dict[str, tuple[str | bytes, str]] = {
    # name: (file content, expected text of the one error line)
    "unknown-key": (
        "name: x\nbogus: 1\n" + BASE,
        "x.yaml:2: bogus: Extra inputs are not permitted",
    ),
    "unknown-nested": (
        "name: x\n" + BASE.replace("users: 1", "users: 1, userz: 2"),
        "x.yaml:6: load.userz: Extra inputs are not permitted",
    ),
    "wrong-type": (
        "name: x\n" + BASE.replace("users: 1", "users: many"),
        "load.users: Input should be a valid integer",
    ),
    "wrong-container": ("name: x\nmodels: {a: 1}\n", "models: Input should be a valid list"),
    "huge-int": (
        "name: x\n" + BASE.replace("users: 1", "users: 999999999999999999999999999999"),
        "load.users: Input should be less than or equal to 100000",
    ),
    "huge-float": (
        "name: x\n" + BASE.replace("duration_s: 0.5", "duration_s: 1e400"),
        "load.duration_s: Input should be less than or equal to 604800",
    ),
    "nan": (
        "name: x\n" + BASE.replace("duration_s: 0.5", "duration_s: .nan"),
        "load.duration_s: Input should be",
    ),
    "negative": (
        "name: x\n" + BASE.replace("duration_s: 0.5", "duration_s: -1"),
        "load.duration_s: Input should be greater than 0",
    ),
    "name-traversal": (
        "name: ../../etc\n" + BASE,
        "name: String should match pattern '^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$'",
    ),
    "model-name-traversal": (
        "name: x\n" + BASE.replace("name: m", "name: ../m"),
        "models[0].name: String should match pattern",
    ),
    "deep-nesting": ("name: x\nlabels: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    "deep-mapping": ("name: x\nlabels: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n", "too deeply"),
    "alias-bomb": (
        "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
        "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
        "name: x\nlabels: {k: *d}\n" + BASE,
        "labels.k: Input should be a valid string",
    ),
    "binary": (b"\x00\x01\xff\xfe name: x", "x.yaml:1: not UTF-8 text"),
    "python-tag": (
        "name: !!python/object/apply:os.system ['echo pwned']\n" + BASE,
        "could not determine a constructor",
    ),
    "list-at-top": ("- 1\n- 2\n", "a scenario is a mapping of keys, got list"),
    "duplicate-key": ("name: x\nname: y\n" + BASE, "duplicate key 'name'"),
    "rich-markup-in-a-value": (
        "name: x\nmodels:\n  - name: m\n    emulator: {profile: '[/]'}\n",
        "unknown emulator profile '[/]'",
    ),
    "bracketed-value-kept": (
        "name: x\nmodels:\n  - name: m\n    emulator: {profile: '[bold]x'}\n",
        "unknown emulator profile '[bold]x'",
    ),
    "profile-override-nan": (
        "name: x\n"
        + BASE.replace("load_time_s: 0}", "load_time_s: 0, overrides: {decode_base_s: .nan}}"),
        "decode_base_s must be a finite number >= 0, got nan",
    ),
    "fault-probability": (
        "name: x\n" + BASE.replace("load_time_s: 0}", "load_time_s: 0, faults: {stall_p: 2}}"),
        "models[0].emulator.faults.stall_p: Input should be less than or equal to 1",
    ),
    "faults-sum": (
        "name: x\n"
        + BASE.replace(
            "load_time_s: 0}", "load_time_s: 0, faults: {stall_p: 0.6, bad_json_p: 0.6}}"
        ),
        "fault probabilities add up to 1.2",
    ),
    "breaker-bound": (
        "name: x\n" + BASE.replace("workers: 1}", "workers: 1, breaker: {max_error_rate: 7}}"),
        "load.breaker.max_error_rate: Input should be less than 1",
    ),
    "huge-synthetic": (
        "name: x\ndataset: {source: synthetic, prompts: 1000000, synthetic_input_tokens: 1000000}\n"
        + BASE,
        "lower 'prompts' or 'synthetic_input_tokens'",
    ),
    "tokenizer-hub-name": (
        "name: x\n"
        + BASE.replace("load_time_s: 0}", "load_time_s: 0}\n    tokens: {tokenizer: org/model}"),
        "model 'm': tokens.tokenizer 'org/model' is not a local file or folder (it looks like a"
        " model hub name): servingperf never downloads tokenizers",
    ),
    "tokenizer-missing": (
        "name: x\n"
        + BASE.replace("load_time_s: 0}", "load_time_s: 0}\n    tokens: {tokenizer: nope.json}"),
        "model 'm': tokens.tokenizer 'nope.json': no such file or folder",
    ),
    "tokenizer-not-one": (
        "name: x\n"
        + BASE.replace("load_time_s: 0}", "load_time_s: 0}\n    tokens: {tokenizer: x.yaml}"),
        "x.yaml: not a Hugging Face tokenizer file",
    ),
    "count-from-unknown": (
        "name: x\n"
        + BASE.replace(
            "load_time_s: 0}", "load_time_s: 0}\n    tokens: {output_tokens_from: server}"
        ),
        "models[0].tokens.output_tokens_from: Input should be 'usage' or 'stream'",
    ),
    "usage-mismatch-of-zero": (
        "name: x\n"
        + BASE.replace(
            "load_time_s: 0}",
            "load_time_s: 0, faults: {usage_mismatch_p: 1, usage_extra_tokens: 0}}",
        ),
        "usage_extra_tokens: 0 makes no mismatch",
    ),
    "token-env-missing": (
        "name: x\nplatform: {kind: static}\nmodels:\n  - name: m\n"
        "    endpoint: {url: 'http://127.0.0.1:9', token_env: SERVINGPERF_TEST_NOT_SET}\n"
        "load: {users: 1, duration_s: 0.5, ramp_up_s: 0}\n",
        "environment variable SERVINGPERF_TEST_NOT_SET is not set",
    ),
}

DATASETS: dict[str, tuple[bytes | None, str, str]] = {
    # name: (file content or None for no file, dataset path, expected error text)
    "empty": (b"", "d.jsonl", "d.jsonl: no prompts (the file is empty or has only blank lines)"),
    "non-utf8": (b'{"prompt": "caf\xe9"}\n', "d.jsonl", "d.jsonl:1: not valid UTF-8 (byte 0xe9"),
    "empty-prompt": (b'{"prompt": "  "}\n', "d.jsonl", "d.jsonl:1: field 'prompt' is empty"),
    "huge-prompt": (
        b'{"prompt": "' + b"a " * 600_000 + b'"}\n',
        "d.jsonl",
        "prompt is 1200000 bytes (UTF-8, system prompt included); the limit is 1000000 bytes",
    ),
    "lone-surrogate": (b'{"prompt": "\\ud800"}\n', "d.jsonl", "unpaired surrogate"),
    "deep-json": (
        b'{"prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
        "d.jsonl",
        "d.jsonl:1",
    ),
    "missing": (None, "nope.jsonl", "dataset file nope.jsonl: cannot be opened"),
    "directory": (None, ".", "cannot be opened: Is a directory"),
    "traversal-to-a-non-dataset": (None, "../../../../../../etc/hostname", "not valid JSON"),
    "endless-device": (None, "/dev/zero", "/dev/zero:1: line is longer than 8000000 bytes"),
}


def cli(*args: str, cwd: Path) -> tuple[int, str, str]:
    """Run the app in-process from ``cwd``; (exit code, stdout, stderr). Any exception other
    than the app's own exit is a traceback a user would have seen: the test fails."""
    runner = CliRunner()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        result = runner.invoke(app, list(args), catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"traceback for {args}: {result.exception!r}") from result.exception
    return result.exit_code, result.stdout, result.stderr


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    return lines[0]


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_hostile_scenario_is_one_clear_error(tmp_path: Path, name: str) -> None:
    content, expected = SCENARIOS[name]
    path = tmp_path / "x.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    code, _, stderr = cli("run", "x.yaml", "--no-report", "--no-store", cwd=tmp_path)
    assert code == 2, stderr
    assert expected in one_error_line(stderr)


@pytest.mark.parametrize("name", list(DATASETS))
def test_hostile_dataset_is_one_clear_error(tmp_path: Path, name: str) -> None:
    content, dataset_path, expected = DATASETS[name]
    if content is not None:
        (tmp_path / dataset_path).write_bytes(content)
    scenario = f"name: x\ndataset: {{source: jsonl, path: '{dataset_path}', prompts: 1}}\n" + BASE
    (tmp_path / "x.yaml").write_text(scenario)
    code, _, stderr = cli("run", "x.yaml", "--no-report", "--no-store", "--out", "r", cwd=tmp_path)
    assert code == 2, stderr
    assert expected in one_error_line(stderr)
    # The dataset is checked before anything is deployed: no server was started.
    assert not (tmp_path / "r" / "instances").exists()


def test_output_directory_that_exists_or_cannot_be_made(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("name: x\n" + BASE)
    (tmp_path / "taken").mkdir()
    (tmp_path / "a-file").write_text("")
    code, _, stderr = cli("run", "x.yaml", "--out", "taken", "--no-store", cwd=tmp_path)
    assert code == 2
    assert "taken: already exists; choose another --out" in one_error_line(stderr)
    code, _, stderr = cli("run", "x.yaml", "--out", "a-file/run", "--no-store", cwd=tmp_path)
    assert code == 2
    assert "cannot create run directory" in one_error_line(stderr)


# --- run directories ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real, small run whose labels and model id are hostile strings for the report."""
    root = tmp_path_factory.mktemp("hostile-run")
    (root / "x.yaml").write_text(
        "name: hostile\n"
        "labels: {release: '</script><script>alert(1)</script>', note: '{{7*7}} ${x} [/] \\u202e'}\n"
        "platform: {kind: local, ready_timeout_s: 30}\n"
        "models:\n  - name: m\n"
        "    model_id: '<img src=x onerror=alert(2)>'\n"
        "    emulator: {profile: instant, load_time_s: 0, overrides: {decode_base_s: 0.004},"
        " faults: {error_status: {500: 0.3}}}\n"
        "load: {users: 2, duration_s: 1, ramp_up_s: 0, workers: 1}\n"
        "dataset: {source: synthetic, synthetic_input_tokens: 8, prompts: 4, output_tokens: 8}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "servingperf", "run", "x.yaml", "--out", "run", "--no-store"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return root / "run"


def test_report_keeps_hostile_strings_inert(finished_run: Path) -> None:
    page = (finished_run / "report.html").read_text()
    assert "<script>alert(1)" not in page
    assert "<img src=x" not in page
    assert "</script><script>" not in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page or "\\u003cimg src=x" in page
    # The server's error message (about the injected 500) reaches the failure digest, escaped.
    assert "injected fault: HTTP 500" in page


def _corrupt(finished_run: Path, tmp_path: Path, edit: dict[str, object] | str) -> Path:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    if isinstance(edit, str):
        (run / "run.json").write_text(edit)
    else:
        data = json.loads((run / "run.json").read_text())
        data.update(edit)
        (run / "run.json").write_text(json.dumps(data))
    return run


CORRUPT_RUN_JSON: dict[str, tuple[dict[str, object] | str, str]] = {
    "truncated": ('{"run_id": "x", ', "run.json: unreadable"),
    "not-an-object": ("[1, 2]", "run.json: not a JSON object"),
    "phases-not-a-list": ({"phases": "x"}, "malformed run.json"),
    "phase-types": (
        {"phases": [{"instance": 1, "phase": None, "start_s": "a", "measure_start_s": []}]},
        "malformed run.json",
    ),
    "phase-window-types": (
        {"phases": [{"instance": "m", "phase": "load", "start_s": "a", "measure_start_s": 0}]},
        "phases[0].start_s must be a number",
    ),
    "config-not-an-object": ({"config": "x"}, "malformed run.json: config must be an object"),
    "bad-slo": ({"config": {"slo": {"ttft_s": "soon"}}}, "config.slo is not a valid SLO"),
    "unknown-key": ({"bogus": 1}, "malformed run.json"),
    "newer-format": ({"format_version": 999}, "written by a newer servingperf"),
}


@pytest.mark.parametrize("command", ["summarize", "report"])
@pytest.mark.parametrize("name", list(CORRUPT_RUN_JSON))
def test_corrupt_run_json_is_one_clear_error(
    finished_run: Path, tmp_path: Path, name: str, command: str
) -> None:
    edit, expected = CORRUPT_RUN_JSON[name]
    run = _corrupt(finished_run, tmp_path, edit)
    code, _, stderr = cli(command, str(run), cwd=tmp_path)
    assert code == 2, stderr
    assert expected in one_error_line(stderr)


@pytest.mark.parametrize("content", [b"", b"garbage", b"PAR1" + b"\x00" * 64])
def test_corrupt_record_segment_is_one_clear_error(
    finished_run: Path, tmp_path: Path, content: bytes
) -> None:
    run = _corrupt(finished_run, tmp_path, {})
    (run / "records" / "part-w000-999999.parquet").write_bytes(content)
    code, _, stderr = cli("summarize", str(run), cwd=tmp_path)
    assert code == 2
    assert "unreadable record segment" in one_error_line(stderr)


def test_hostile_status_is_shown_verbatim_not_as_markup(finished_run: Path, tmp_path: Path) -> None:
    run = _corrupt(finished_run, tmp_path, {"status": "failed", "status_reason": "[/] [bold]x"})
    code, _, stderr = cli("summarize", str(run), cwd=tmp_path)
    assert code == 0
    assert "note: this run is failed: [/] [bold]x" in stderr


def test_real_process_deep_nesting_and_markup_have_no_traceback(tmp_path: Path) -> None:
    for content in (SCENARIOS["deep-nesting"][0], SCENARIOS["rich-markup-in-a-value"][0]):
        assert isinstance(content, str)
        (tmp_path / "x.yaml").write_text(content)
        result = subprocess.run(
            [sys.executable, "-m", "servingperf", "run", "x.yaml", "--no-store"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        one_error_line(result.stderr)
