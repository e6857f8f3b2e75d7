"""The emulator's KServe v2 REST front end, spoken to with a plain aiohttp client (not ours), so
the wire format itself is checked: routes, status codes, JSON shapes, the SSE events."""

from __future__ import annotations

import json

import aiohttp

from servingperf.emulator.tokenizer import count_tokens, token_text
from tests.integration.test_grpc_contract import running_emulator

TIMEOUT = aiohttp.ClientTimeout(total=30)
PROMPT = "Name three rivers."


async def test_health_metadata_and_readiness_routes() -> None:
    ready = False
    async with running_emulator(ready=lambda: ready) as emulator:
        base = f"http://127.0.0.1:{emulator.http_port}"
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
            async with session.get(f"{base}/v2/health/live") as response:
                assert response.status == 200
                assert await response.json() == {"live": True}
            async with session.get(f"{base}/v2/health/ready") as response:
                assert response.status == 503
                assert await response.json() == {"ready": False}
            async with session.get(f"{base}/v2/models/m/ready") as response:
                assert response.status == 503
            ready = True
            async with session.get(f"{base}/v2/models/m/ready") as response:
                assert response.status == 200
                assert await response.json() == {"name": "m", "ready": True}
            async with session.get(f"{base}/v2/models/other/ready") as response:
                assert response.status == 404
                assert "other" in (await response.json())["error"]
            async with session.get(f"{base}/v2/models/m") as response:
                metadata = await response.json()
            assert metadata["name"] == "m"
            assert {t["name"] for t in metadata["inputs"]} >= {"text_input", "sampling_parameters"}
            assert "text_output" in {t["name"] for t in metadata["outputs"]}


async def test_infer_answers_tensors_with_the_requested_counts() -> None:
    body = {
        "id": "inf-1",
        "inputs": [
            {"name": "text_input", "shape": [1], "datatype": "BYTES", "data": [PROMPT]},
            {
                "name": "sampling_parameters",
                "shape": [1],
                "datatype": "BYTES",
                "data": [json.dumps({"max_tokens": 6, "ignore_eos": True})],
            },
            {"name": "return_num_output_tokens", "shape": [1], "datatype": "BOOL", "data": [True]},
        ],
    }
    async with running_emulator() as emulator:
        url = f"http://127.0.0.1:{emulator.http_port}/v2/models/m/infer"
        async with (
            aiohttp.ClientSession(timeout=TIMEOUT) as session,
            session.post(url, json=body) as response,
        ):
            assert response.status == 200
            answer = await response.json()
        record = emulator.truth()["inf-1"]
    assert answer["model_name"] == "m"
    assert answer["id"] == "inf-1"
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert set(outputs) == {"text_output", "num_output_tokens"}  # only what was asked for
    assert outputs["num_output_tokens"] == {
        "name": "num_output_tokens",
        "datatype": "UINT32",
        "shape": [1],
        "data": [6],
    }
    assert count_tokens(outputs["text_output"]["data"][0]) == 6
    assert record.output_tokens == 6
    assert record.prompt_tokens == count_tokens(PROMPT)
    assert record.status == 200


async def test_generate_stream_sends_one_event_per_token() -> None:
    body = {
        "text_input": PROMPT,
        "parameters": {"max_tokens": 4, "min_tokens": 4},
        "return_finish_reason": True,
        "return_num_input_tokens": True,
    }
    async with running_emulator() as emulator:
        url = f"http://127.0.0.1:{emulator.http_port}/v2/models/m/generate_stream"
        async with (
            aiohttp.ClientSession(timeout=TIMEOUT) as session,
            session.post(url, json=body, headers={"X-Request-Id": "gs-1"}) as response,
        ):
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            raw = (await response.read()).decode()
        record = emulator.truth()["gs-1"]
    blocks = [b for b in raw.split("\n\n") if b]
    events = [json.loads(b.removeprefix("data: ")) for b in blocks]
    assert [e["text_output"] for e in events] == [token_text(i) for i in range(4)]
    assert [e.get("finish_reason") for e in events] == [None, None, None, "length"]
    assert {e["num_input_tokens"] for e in events} == {count_tokens(PROMPT)}
    assert all("num_output_tokens" not in e for e in events)  # not asked for
    assert record.streamed
    assert len(record.token_written) == 4


async def test_bad_requests_are_400_with_the_field_named() -> None:
    async with running_emulator() as emulator:
        base = f"http://127.0.0.1:{emulator.http_port}/v2/models/m"
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
            async with session.post(f"{base}/generate", data=b"{not json") as response:
                assert response.status == 400
                assert "JSON" in (await response.json())["error"]
            async with session.post(
                f"{base}/generate", json={"text_input": "x", "parameters": {"max_tokens": 0}}
            ) as response:
                assert response.status == 400
                assert "max tokens" in (await response.json())["error"]
            async with session.post(f"{base}/infer", json={"inputs": []}) as response:
                assert response.status == 400
                assert "text_input" in (await response.json())["error"]
