"""The ``caikit-grpc`` protocol against the real caikit runtime (PyPI's ``caikit`` 0.28 and
``caikit-nlp`` 0.5.15) serving the tiny random Llama through caikit-nlp's local text-generation
module, on 127.0.0.1 (``tests/integration/caikit_real/runtime.py``).

Opt-in: the runtime's venv is about 7 GB (caikit-nlp pins torch < 2.9, and PyPI's torch 2.8 is the
CUDA build with its NVIDIA libraries), too much for the test command's budget, so
``scripts/test.sh`` does not make it and these tests run only when ``SERVINGPERF_CAIKIT_PYTHON``
names its interpreter (``bash scripts/install_caikit.sh`` makes it, README "Real engines").

What the real runtime does, and the tests pin down:
- unary ``TextGenerationTaskPredict`` works; a scenario on the static platform over
  ``endpoint.grpc_address`` gives ok records. caikit-nlp's local module reports
  ``generated_tokens`` as the length of ``generate()``'s output minus one, and for a decoder-only
  model that output includes the prompt: it says input + N - 1 tokens for N new ones. servingperf
  records the server's count (README, Definitions), so the records carry that count too;
- ``ServerStreamingTextGenerationTaskPredict`` is refused by that module (only the TGIS-backed
  module streams): every streamed request is a counted ``grpc_status`` error naming the reason.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from servingperf.config import parse_scenario
from servingperf.load.sinks import NullProgress
from servingperf.model.records import Exchange, GenerationRequest, RequestStatus
from servingperf.model.specs import ProtocolKind
from servingperf.model.target import Target
from servingperf.platforms.processes import log_tail, spawn, stop_group
from servingperf.protocols.registry import create_client
from servingperf.scenarios.runner import RunOptions, run_scenario
from tests.support.vllm_engine import free_port, tiny_model_dir

pytestmark = pytest.mark.slow

RUNTIME = Path(__file__).parent / "caikit_real" / "runtime.py"
PYTHON_ENV = "SERVINGPERF_CAIKIT_PYTHON"


@pytest.fixture(scope="module")
def caikit_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    python = os.environ.get(PYTHON_ENV, "")
    if not python or not Path(python).exists():
        pytest.skip(f"opt-in: {PYTHON_ENV} is not set (bash scripts/install_caikit.sh makes it)")
    work = tmp_path_factory.mktemp("caikit")
    model_dir = tiny_model_dir(python)  # built by the runtime venv's own transformers
    port = free_port()
    log = work / "runtime.log"
    process = spawn([python, str(RUNTIME), str(model_dir), str(work), str(port)], log, os.environ)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while "Caikit Runtime is serving grpc" not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the caikit runtime did not start: {log_tail(log, 10)}")
            time.sleep(0.5)
        yield address
    finally:
        asyncio.run(stop_group(process))


async def _call(address: str, max_tokens: int, stream: bool) -> Exchange:
    client = create_client(
        Target(url=address, model="tiny", protocol=ProtocolKind.CAIKIT_GRPC, request_timeout_s=60)
    )
    try:
        await client.probe()  # the runtime's gRPC health service
        exchange = Exchange(
            GenerationRequest(
                request_id=f"caikit-{max_tokens}-{stream}",
                model="tiny",
                prompt="the model answers a question",
                max_tokens=max_tokens,
                min_tokens=max_tokens,
                ignore_eos=True,
                stream=stream,
            ),
            mono_scheduled=time.monotonic(),
        )
        await client.generate(exchange)
        return exchange
    finally:
        await client.aclose()


@pytest.mark.parametrize("max_tokens", [1, 8, 24])
async def test_unary_generation_and_the_runtimes_own_token_count(
    caikit_runtime: str, max_tokens: int
) -> None:
    exchange = await _call(caikit_runtime, max_tokens, stream=False)
    assert exchange.status is RequestStatus.OK, exchange.error_message
    assert exchange.mono_first_token is None  # unary: TTFT absent, never zero
    assert exchange.finish_reason == "MAX_TOKENS"
    inputs = exchange.usage_input_tokens
    assert inputs is not None and inputs > 0
    assert exchange.usage_output_tokens == inputs + max_tokens - 1  # caikit-nlp's count


async def test_streaming_is_refused_by_the_local_module_as_a_counted_error(
    caikit_runtime: str,
) -> None:
    exchange = await _call(caikit_runtime, 8, stream=True)
    assert exchange.status is RequestStatus.ERROR
    assert exchange.error_kind is not None and exchange.error_kind.value == "grpc_status"
    assert exchange.error_message is not None
    assert "INVALID_ARGUMENT" in exchange.error_message
    assert "does not support ServerStreamingTextGenerationTaskPredict" in exchange.error_message


async def test_a_static_caikit_scenario_runs_against_the_runtime(
    caikit_runtime: str, tmp_path: Path
) -> None:
    text = f"""
name: caikit-real
platform: {{kind: static}}
models:
  - name: tiny
    protocol: caikit-grpc
    endpoint: {{grpc_address: "{caikit_runtime}"}}
load: {{users: 2, duration_s: 2, ramp_up_s: 0, stream: false, workers: 1, drain_s: 30}}
dataset: {{source: bundled, prompts: 8, output_tokens: 8}}
"""
    spec = parse_scenario(text, "caikit-real.yaml")
    options = RunOptions(base_dir=tmp_path, runs_dir=tmp_path, out=tmp_path / "run", report=False)
    outcome = await run_scenario(spec, options, NullProgress(), asyncio.Event())
    rows = outcome.run_dir.read_records().to_pylist()
    assert len(rows) >= 2
    assert {r["status"] for r in rows} == {"ok"}
    assert all(r["output_tokens"] == r["input_tokens"] + 7 for r in rows)  # see the docstring
