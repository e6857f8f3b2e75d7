"""A bearer token given through the environment never reaches run files, the report or the logs,
even when a hostile server echoes it back in its error messages (probe and requests)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from aiohttp import web

from servingperf.results.rundir import RunDir

pytestmark = pytest.mark.slow

TOKEN = "sp-test-token-5f4e3d2c1b0a"


def echo_app() -> web.Application:
    """``/ok/...``: lists the model, then answers every completion 401 quoting the header;
    ``/bad/...``: the probe itself fails, quoting the header."""

    async def models(request: web.Request) -> web.Response:
        if request.path.startswith("/bad/"):
            header = request.headers.get("Authorization", "")
            return web.Response(status=401, text=f"who is {header}?")
        return web.json_response({"object": "list", "data": [{"id": "m"}]})

    async def completions(request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        return web.json_response({"error": {"message": f"token {header} expired"}}, status=401)

    app = web.Application()
    for prefix in ("/ok", "/bad"):
        app.router.add_get(f"{prefix}/v1/models", models)
        app.router.add_post(f"{prefix}/v1/completions", completions)
    return app


@pytest.mark.parametrize("workers", [1, 2], ids=["in-process", "worker-processes"])
async def test_token_from_env_is_redacted_everywhere(tmp_path: Path, workers: int) -> None:
    runner = web.AppRunner(echo_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        (tmp_path / "s.yaml").write_text(
            "name: secrets\nplatform: {kind: static}\nmodels:\n"
            f"  - name: ok\n    model_id: m\n"
            f"    endpoint: {{url: 'http://127.0.0.1:{port}/ok', token_env: SP_TOKEN}}\n"
            f"  - name: bad\n    model_id: m\n"
            f"    endpoint: {{url: 'http://127.0.0.1:{port}/bad', token_env: SP_TOKEN}}\n"
            f"load: {{users: 2, duration_s: 1, ramp_up_s: 0, workers: {workers}}}\n"
            "dataset: {source: synthetic, synthetic_input_tokens: 8, prompts: 4, output_tokens: 8}\n"
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "servingperf",
            "run",
            "s.yaml",
            "--out",
            "run",
            "--no-store",
            cwd=tmp_path,
            env={**os.environ, "SP_TOKEN": TOKEN},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    finally:
        await runner.cleanup()
    out, err = stdout.decode(), stderr.decode()
    assert process.returncode == 3, err  # "bad" failed before its load; "ok" ran
    assert "Traceback" not in err
    assert "1 of 2 models failed before their load: bad:" in err
    assert "Bearer ***" in err  # the probe's error message, redacted
    assert TOKEN not in out
    assert TOKEN not in err

    run = tmp_path / "run"
    info = json.loads((run / "run.json").read_text())
    assert info["config"]["models"][0]["endpoint"]["token_env"] == "SP_TOKEN"  # the name stays
    assert "Bearer ***" in info["status_reason"]
    for name in ("run.json", "summary.json", "report.html"):
        assert TOKEN.encode() not in (run / name).read_bytes(), name
    for path in run.rglob("*.png"):
        assert TOKEN.encode() not in path.read_bytes(), path
    # The requests did reach the server with the token and failed with its echo; the report's
    # failure digest shows those messages, masked.
    records = RunDir(run).read_records().to_pylist()
    assert records
    assert {r["error_kind"] for r in records if r["status"] == "error"} == {"http_status"}
    assert "token Bearer ***" in (run / "report.html").read_text()
