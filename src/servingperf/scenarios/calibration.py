"""The start-of-run self-calibration: what this machine's load process can issue at most.

Before the first phase, the real engine and OpenAI client run closed-loop users for a moment
against a loopback sink that answers at once (:mod:`servingperf.emulator.sink`), twice: with
one-token responses and with ``tokens``-token ones. The client's CPU time per request (its event
loop's thread only: the sink runs in another thread) gives a cost model, CPU seconds per request =
``request_cpu_s`` + ``token_cpu_s`` x tokens, and so the *ceiling* of one load process (one core)
for a response length. The validity verdict compares each phase's load with it: "the client used
35 % of what it can issue" (:mod:`servingperf.analysis.validity`). A calibration that cannot run
(no OpenAI-protocol model, or a failure) says why instead; a run never fails for it.
"""

from __future__ import annotations

import time
from typing import Any

from servingperf.emulator.sink import Sink
from servingperf.load.execute import RequestFactory
from servingperf.load.shard import Shard, run_shard
from servingperf.load.sinks import ListSink, LoadCounters, NullProgress, PhaseOutputs
from servingperf.model.records import GenerationRequest, RequestContext
from servingperf.model.specs import LoadSpec, ProtocolKind, ScenarioSpec
from servingperf.model.target import Target
from servingperf.protocols.registry import create_client

USERS = 32
_OPENAI = (ProtocolKind.OPENAI_COMPLETIONS, ProtocolKind.OPENAI_CHAT)


def _requests(tokens: int) -> RequestFactory:
    def make(user: int, sequence: int) -> tuple[GenerationRequest, RequestContext]:
        request = GenerationRequest(
            request_id=f"calibration-{user}-{sequence}",
            model="calibration",
            prompt="calibrate",
            max_tokens=tokens,
        )
        context = RequestContext("calibration", "calibration", "calibration", 0, user, 0, tokens)
        return request, context

    return make


async def _measure(url: str, tokens: int, seconds: float) -> tuple[int, float, float]:
    """(requests completed, client thread CPU s, wall s) of ``seconds`` of load at ``tokens``."""
    target = Target(url, "calibration", ProtocolKind.OPENAI_COMPLETIONS, request_timeout_s=10.0)
    client = create_client(target)
    load = LoadSpec(users=USERS, duration_s=seconds, ramp_up_s=0.0, request_timeout_s=10.0)
    records = ListSink()
    counters = LoadCounters("calibration", "calibration")
    cpu0, wall0 = time.thread_time(), time.monotonic()
    try:
        await run_shard(
            load,
            Shard(),
            client,
            _requests(tokens),
            PhaseOutputs(records, NullProgress(), counters, wall0),
        )
    finally:
        await client.aclose()
    cpu, wall = time.thread_time() - cpu0, time.monotonic() - wall0
    ok = sum(1 for r in records.records if r.status == "ok" and r.output_tokens == tokens)
    return ok, cpu, wall


def calibration_tokens(spec: ScenarioSpec) -> int:
    """The response length to calibrate at: the dataset's fixed output length, else 64."""
    wanted = spec.dataset.output_tokens
    return max(2, min(int(wanted), 1024)) if isinstance(wanted, int) else 64


async def calibrate(spec: ScenarioSpec) -> dict[str, Any]:
    """The calibration result for ``run.json`` (``environment.client_calibration``)."""
    seconds = spec.load.calibration_s
    if seconds <= 0:
        return {"status": "skipped", "reason": "load.calibration_s is 0"}
    if not any(m.protocol in _OPENAI for m in spec.models):
        return {"status": "skipped", "reason": "no OpenAI-protocol model: the sink speaks only it"}
    tokens = calibration_tokens(spec)
    sink = Sink()
    try:
        short = await _measure(sink.url, 1, seconds / 2)
        long = await _measure(sink.url, tokens, seconds / 2)
    except (TimeoutError, OSError, RuntimeError) as exc:
        return {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
    finally:
        sink.close()
    (n1, cpu1, wall1), (n2, cpu2, wall2) = short, long
    if n1 == 0 or n2 == 0 or cpu1 <= 0 or cpu2 <= 0:
        return {"status": "failed", "reason": f"too few requests completed ({n1}, {n2})"}
    cost1, cost2 = cpu1 / n1, cpu2 / n2
    token_cpu = max(0.0, (cost2 - cost1) / (tokens - 1))
    request_cpu = max(cost1 - token_cpu, 1e-9)
    return {
        "status": "ok",
        "users": USERS,
        "seconds": seconds,
        "tokens": tokens,
        "request_cpu_s": request_cpu,
        "token_cpu_s": token_cpu,
        "ceiling_rps": 1.0 / (request_cpu + token_cpu * tokens),
        "ceiling_tokens_per_s": tokens / (request_cpu + token_cpu * tokens),
        "measured": [
            {"tokens": 1, "requests": n1, "cpu_s": cpu1, "wall_s": wall1},
            {"tokens": tokens, "requests": n2, "cpu_s": cpu2, "wall_s": wall2},
        ],
    }
