"""Each injected fault, on the wire, against the real OpenAI client: what the server does, what it
writes to its ground truth, and what failure kind the client records. In-process servers, plus
the ``emulator serve --fault`` process for start-up faults and crashes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from servingperf.emulator.server import RunningServer, ServeOptions, start_server
from servingperf.load.execute import RequestRunner
from servingperf.load.sinks import ListSink, LoadCounters
from servingperf.model.records import (
    ErrorKind,
    Exchange,
    GenerationRequest,
    RequestContext,
    RequestStatus,
)
from servingperf.model.specs import FaultSpec, ProtocolKind
from servingperf.model.target import Target
from servingperf.protocols.openai import OpenAIClient


async def _run(
    url: str, n: int, *, stream: bool, chat: bool, timeout_s: float = 5.0, tokens: int = 6
) -> list[Exchange]:
    """Send ``n`` requests one after the other through the engine's request step (which owns the
    request deadline), as a closed-loop user would."""
    kind = ProtocolKind.OPENAI_CHAT if chat else ProtocolKind.OPENAI_COMPLETIONS
    client = OpenAIClient(
        Target(url=url, model="instant", protocol=kind, request_timeout_s=timeout_s)
    )
    runner = RequestRunner(client, ListSink(), LoadCounters("m", "p"), 0.0, timeout_s)
    done = []
    try:
        for i in range(n):
            exchange = Exchange(
                GenerationRequest(
                    f"r{i}",
                    "instant",
                    "one two three",
                    tokens,
                    min_tokens=tokens,
                    ignore_eos=True,
                    stream=stream,
                ),
                time.monotonic(),
            )
            context = RequestContext("m", "instant", "p", 0, 0, 0, tokens)
            await runner.run(exchange, context)
            done.append(exchange)
    finally:
        await client.aclose()
    return done


@pytest.fixture
async def serve() -> AsyncIterator[list[RunningServer]]:
    servers: list[RunningServer] = []
    yield servers
    for server in servers:
        await server.close()


async def _start(servers: list[RunningServer], faults: FaultSpec, **kw: object) -> RunningServer:
    options = ServeOptions(profile="instant", load_time_s=0, faults=faults)
    for key, value in kw.items():
        setattr(options, key, value)
    server = await start_server(options)
    servers.append(server)
    return server


async def _settled(server: RunningServer, n: int) -> None:
    """Wait (bounded) until the server has logged ``n`` requests: a handler ends after the
    client has read its last byte."""
    for _ in range(200):
        if len(server.ground_truth) >= n:
            return
        await asyncio.sleep(0.01)


CASES = [
    (FaultSpec(error_status={503: 1.0}), "http_503", ErrorKind.HTTP_STATUS, "HTTP 503"),
    (FaultSpec(error_status={429: 1.0}), "http_429", ErrorKind.RATE_LIMITED, "HTTP 429"),
    (FaultSpec(stall_p=1.0, stall_s=30), "stall", ErrorKind.TIMEOUT, "no answer within 0.5 s"),
    (FaultSpec(disconnect_p=1.0, disconnect_after_tokens=2), "disconnect", ErrorKind.PROTOCOL, ""),
    (FaultSpec(bad_json_p=1.0), "bad_json", ErrorKind.PROTOCOL, ""),
    (FaultSpec(bad_framing_p=1.0, malformed_after_tokens=5), "bad_framing", ErrorKind.PROTOCOL, ""),
]


@pytest.mark.parametrize("chat", [False, True], ids=["completions", "chat"])
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize(("faults", "label", "kind", "text"), CASES, ids=[c[1] for c in CASES])
async def test_request_fault_becomes_a_failed_record_and_a_ground_truth_label(
    serve: list[RunningServer],
    faults: FaultSpec,
    label: str,
    kind: ErrorKind,
    text: str,
    stream: bool,
    chat: bool,
) -> None:
    server = await _start(serve, faults)
    done = await _run(server.url, 3, stream=stream, chat=chat, timeout_s=0.5)
    await _settled(server, 3)
    for exchange in done:
        assert exchange.status is RequestStatus.ERROR
        assert exchange.error_kind is kind, exchange.error_message
        assert text in (exchange.error_message or "")
    assert [t.fault for t in server.ground_truth] == [label] * 3
    if label == "disconnect":
        assert {t.outcome for t in server.ground_truth} == {"dropped"}
        if stream:
            assert {t.output_tokens for t in server.ground_truth} == {2}  # after 2 tokens
            assert all(len(e.chunk_tokens) == 2 for e in done)  # the client saw them


async def test_latency_spike_delays_but_succeeds(serve: list[RunningServer]) -> None:
    server = await _start(serve, FaultSpec(latency_spike_p=1.0, latency_spike_s=0.25))
    done = await _run(server.url, 2, stream=True, chat=False)
    for exchange in done:
        assert exchange.status is RequestStatus.OK
        assert exchange.mono_first_token is not None
        assert exchange.mono_sent is not None
        assert exchange.mono_first_token - exchange.mono_sent >= 0.25
    await _settled(server, 2)
    assert [(t.fault, t.outcome) for t in server.ground_truth] == [("latency_spike", "ok")] * 2


async def test_short_stall_is_a_gap_not_an_error(serve: list[RunningServer]) -> None:
    server = await _start(serve, FaultSpec(stall_p=1.0, stall_s=0.3, stall_after_tokens=3))
    (exchange,) = await _run(server.url, 1, stream=True, chat=False)
    assert exchange.status is RequestStatus.OK
    gaps = [b - a for a, b in zip(exchange.chunk_monos, exchange.chunk_monos[1:], strict=False)]
    assert max(gaps) >= 0.3
    assert gaps.index(max(gaps)) == 2  # between token 3 and token 4


async def test_no_faults_means_no_labels(serve: list[RunningServer]) -> None:
    server = await _start(serve, FaultSpec(seed=1, stall_p=0.0))
    done = await _run(server.url, 3, stream=True, chat=True)
    assert all(e.status is RequestStatus.OK for e in done)
    await _settled(server, 3)
    assert [t.fault for t in server.ground_truth] == [None] * 3


async def test_in_process_crash_after_requests(serve: list[RunningServer]) -> None:
    server = await _start(serve, FaultSpec(crash_after_requests=2))
    done = await _run(server.url, 4, stream=True, chat=False)
    assert [e.status for e in done] == [RequestStatus.OK] * 2 + [RequestStatus.ERROR] * 2
    assert {e.error_kind for e in done[2:]} == {ErrorKind.PROTOCOL}
    await _settled(server, 4)
    assert [(t.request_id, t.fault, t.outcome) for t in server.ground_truth] == [
        ("r0", None, "ok"),
        ("r1", None, "ok"),
        ("r2", "crash", "crashed"),
        ("r3", "crash", "crashed"),
    ]


async def test_in_process_crash_logs_requests_in_flight(serve: list[RunningServer]) -> None:
    server = await _start(serve, FaultSpec(crash_after_s=0.4), overrides={"decode_base_s": 0.05})
    # Two long streams (100 tokens x 50 ms) are in flight when the crash comes at 0.4 s.
    client_done = asyncio.gather(
        _run(server.url, 1, stream=True, chat=False, tokens=100),
        _run(server.url, 1, stream=True, chat=True, tokens=100),
    )
    results = await asyncio.wait_for(client_done, 10)
    for (exchange,) in results:
        assert exchange.status is RequestStatus.ERROR
        assert exchange.error_kind is ErrorKind.PROTOCOL
        assert 0 < len(exchange.chunk_tokens) < 20
    assert [(t.fault, t.outcome) for t in server.ground_truth] == [("crash", "crashed")] * 2
    assert all(t.output_tokens > 0 for t in server.ground_truth)


async def _health(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/health") as response:
        return response.status


async def test_never_ready_and_failed_start_in_process(serve: list[RunningServer]) -> None:
    never = await _start(serve, FaultSpec(start="never-ready"))
    failing = await _start(serve, FaultSpec(start="fail"), load_time_s=0.1)
    await asyncio.sleep(0.3)
    assert await _health(never.url) == 503
    assert await _health(failing.url) == 503
    assert failing._faults is not None
    assert failing._faults.start_failed


def _serve_cmd(tmp_path: Path, *faults: str) -> list[str]:
    args = [sys.executable, "-m", "servingperf", "emulator", "serve", "--profile", "instant"]
    args += ["--port", "0", "--load-time", "0", "--port-file", str(tmp_path / "port")]
    args += ["--ground-truth", str(tmp_path / "gt.jsonl")]
    for fault in faults:
        args += ["--fault", fault]
    return args


def test_cli_failed_start_exits_3(tmp_path: Path) -> None:
    result = subprocess.run(
        _serve_cmd(tmp_path, "start=fail"), capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 3
    assert "injected fault: start=fail" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_bad_fault_option_is_one_line_exit_2(tmp_path: Path) -> None:
    result = subprocess.run(
        _serve_cmd(tmp_path, "stall_p=3"), capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "--fault stall_p: Input should be less than or equal to 1" in lines[0]


def test_cli_crash_exits_70_after_logging_ground_truth(tmp_path: Path) -> None:
    process = subprocess.Popen(
        _serve_cmd(tmp_path, "crash_after_requests=1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "port").exists():
            assert time.monotonic() < deadline
            assert process.poll() is None
            time.sleep(0.05)
        url = f"http://127.0.0.1:{int((tmp_path / 'port').read_text())}/v1/completions"

        async def two() -> list[Exchange]:
            server = RunningServer.__new__(RunningServer)  # only .url is read by _run
            object.__setattr__(server, "host", "127.0.0.1")
            object.__setattr__(server, "port", int(url.split(":")[2].split("/")[0]))
            return await _run(server.url, 2, stream=True, chat=False)

        done = asyncio.run(two())
        assert process.wait(timeout=30) == 70
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stderr is not None
        stderr = process.stderr.read().decode()
        process.stderr.close()
    assert done[0].status is RequestStatus.OK
    assert done[1].status is RequestStatus.ERROR
    assert "injected fault: crash after 1 requests" in stderr
    lines = [json.loads(line) for line in (tmp_path / "gt.jsonl").read_text().splitlines()]
    assert [(g["request_id"], g["fault"], g["outcome"]) for g in lines] == [
        ("r0", None, "ok"),
        ("r1", "crash", "crashed"),
    ]
