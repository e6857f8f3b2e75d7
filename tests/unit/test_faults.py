"""The fault plan (which request gets which fault), malformed bytes, and the --fault options."""

from __future__ import annotations

import collections
import json
from typing import Any

import pytest
from pydantic import ValidationError

from servingperf.emulator.faults import (
    FaultKind,
    FaultPlan,
    RequestFault,
    corrupt_body,
    corrupt_chunk,
    fault_args,
    fault_spec_from_pairs,
)
from servingperf.emulator.openai_format import StreamEncoder
from servingperf.emulator.tokenizer import token_id, tokens_text
from servingperf.errors import ConfigError
from servingperf.model.specs import FaultSpec
from servingperf.protocols.sse import SseParser

IDS = [f"m:load:w0:u{u}:{s}" for u in range(20) for s in range(500)]  # 10,000 request ids


def test_no_fault_configured_draws_nothing() -> None:
    plan = FaultPlan(FaultSpec())
    assert not plan.active
    assert all(plan.draw(i) is None for i in IDS[:100])


def test_draws_are_deterministic_per_request_id_and_seed() -> None:
    spec = FaultSpec(seed=7, stall_p=0.3, error_status={503: 0.2})
    first = [FaultPlan(spec).draw(i) for i in IDS[:500]]
    assert first == [FaultPlan(spec).draw(i) for i in IDS[:500]]
    assert list(reversed(first)) == [FaultPlan(spec).draw(i) for i in reversed(IDS[:500])]
    other = [FaultPlan(spec.model_copy(update={"seed": 8})).draw(i) for i in IDS[:500]]
    assert other != first


def test_frequencies_follow_the_probabilities_and_faults_exclude_each_other() -> None:
    spec = FaultSpec(
        seed=1,
        error_status={500: 0.1, 429: 0.05},
        latency_spike_p=0.1,
        stall_p=0.1,
        disconnect_p=0.1,
        bad_json_p=0.05,
        bad_framing_p=0.05,
        multi_token_p=0.05,
        usage_mismatch_p=0.05,
        reasoning_p=0.05,
        empty_200_p=0.05,
    )
    plan = FaultPlan(spec)
    counts = collections.Counter(
        (f.label if f is not None else None) for f in (plan.draw(i) for i in IDS)
    )
    expected = {
        "http_500": 0.1,
        "http_429": 0.05,
        "latency_spike": 0.1,
        "stall": 0.1,
        "disconnect": 0.1,
        "bad_json": 0.05,
        "bad_framing": 0.05,
        "multi_token": 0.05,
        "usage_mismatch": 0.05,
        "reasoning_first": 0.05,
        "empty_200": 0.05,
        None: 0.25,
    }
    assert set(counts) == set(expected)
    for label, p in expected.items():  # 10,000 draws: 4 standard deviations is < 0.02
        assert abs(counts[label] / len(IDS) - p) < 0.02, (label, counts[label])


def test_probability_one_faults_every_request() -> None:
    plan = FaultPlan(FaultSpec(disconnect_p=1.0, disconnect_after_tokens=4))
    assert {plan.draw(i) for i in IDS[:200]} == {RequestFault(FaultKind.DISCONNECT, after_tokens=4)}


@pytest.mark.parametrize(
    ("after", "tokens", "index"), [(0, 5, 0), (2, 5, 2), (4, 5, 4), (9, 5, 4), (3, 1, 0)]
)
def test_mid_stream_faults_always_strike_before_the_end(
    after: int, tokens: int, index: int
) -> None:
    assert RequestFault(FaultKind.STALL, after_tokens=after).token_index(tokens) == index
    assert RequestFault(FaultKind.HTTP_STATUS, status=500).token_index(tokens) == -1


def _events(data: bytes) -> list[str]:
    parser = SseParser()
    return parser.feed(data) + parser.close()


@pytest.mark.parametrize("chat", [False, True])
@pytest.mark.parametrize("kind", [FaultKind.BAD_JSON, FaultKind.BAD_FRAMING])
def test_corrupted_chunks_are_not_json_to_an_sse_reader(chat: bool, kind: FaultKind) -> None:
    encoder = StreamEncoder(
        chat=chat,
        response_id="cmpl-1",
        created=1,
        model="m",
        prompt_tokens=3,
        include_usage=True,
        continuous_usage=False,
    )
    first = encoder.token(0, None)
    if chat:
        first = encoder.role() + first
    stream = corrupt_chunk(kind, first) + encoder.token(1, "length") + encoder.tail(2)
    events = _events(stream)
    decoded = []
    for event in events:
        if event == "[DONE]":
            continue
        try:
            decoded.append(json.loads(event))
        except ValueError:
            decoded.append(None)
    assert None in decoded, events  # some event is not a JSON document
    healthy = _events(first + encoder.token(1, "length") + encoder.tail(2))
    assert all(e == "[DONE]" or json.loads(e) for e in healthy)


def test_corrupted_body_is_not_json() -> None:
    body = json.dumps({"choices": [{"text": "hello"}], "usage": {"completion_tokens": 1}}).encode()
    with pytest.raises(json.JSONDecodeError):
        json.loads(corrupt_body(FaultKind.BAD_JSON, body))
    with pytest.raises(ValueError, match="does not corrupt"):
        corrupt_chunk(FaultKind.STALL, b"data: {}\n\n")


def test_fault_spec_rejects_impossible_values() -> None:
    with pytest.raises(ValidationError, match=r"add up to 1\.2"):
        FaultSpec(stall_p=0.7, disconnect_p=0.5)
    with pytest.raises(ValidationError, match="from 400 to 599"):
        FaultSpec(error_status={200: 0.1})
    with pytest.raises(ValidationError, match="probability must be from 0 to 1"):
        FaultSpec(error_status={500: 1.5})
    with pytest.raises(ValidationError):
        FaultSpec(stall_p=float("nan"))
    with pytest.raises(ValidationError):
        FaultSpec(start="sometimes")  # type: ignore[arg-type]


def test_fault_options_round_trip() -> None:
    spec = FaultSpec(
        seed=3,
        error_status={503: 0.05, 429: 0.25},
        stall_p=0.1,
        stall_s=2.5,
        start="never-ready",
        crash_after_requests=7,
        crash_after_s=1.5,
        multi_token_p=0.1,
        tokens_per_chunk=3,
        multi_token_empty_text=True,
        usage_mismatch_p=0.1,
        usage_extra_tokens=-2,
    )
    args = fault_args(spec)
    assert args[::2] == ["--fault"] * (len(args) // 2)
    assert "--fault" not in args[1::2]
    assert fault_spec_from_pairs(args[1::2]) == spec
    assert fault_args(None) == []
    assert fault_args(FaultSpec()) == []
    assert fault_spec_from_pairs([]) is None


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["stall_p"], "expected KEY=VALUE"),
        (["stall_p=2"], "--fault stall_p: Input should be less than or equal to 1"),
        (["stall_p=lots"], "--fault stall_p: Input should be a valid number"),
        (["bogus=1"], "--fault bogus: Extra inputs are not permitted"),
        (["stall_s.x=1"], "only error_status takes a sub-key"),
        (["error_status.abc=0.1"], "--fault error_status.abc"),
        (["error_status.200=0.1"], "from 400 to 599"),
        (["stall_p=0.6", "disconnect_p=0.6"], "add up to 1.2"),
    ],
)
def test_bad_fault_options_are_config_errors(pairs: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        fault_spec_from_pairs(pairs)
    assert message in str(caught.value)


def test_shape_faults_carry_their_parameters() -> None:
    spec = FaultSpec(multi_token_p=1.0, tokens_per_chunk=3, multi_token_empty_text=True)
    fault = FaultPlan(spec).draw("r")
    assert fault == RequestFault(FaultKind.MULTI_TOKEN, tokens=3, empty_text=True)
    assert fault.label == "multi_token"
    assert fault.token_index(10) == -1  # not a mid-stream fault: it never breaks the stream
    assert FaultPlan(FaultSpec(usage_mismatch_p=1.0, usage_extra_tokens=-2)).draw("r") == (
        RequestFault(FaultKind.USAGE_MISMATCH, tokens=-2)
    )
    assert FaultPlan(FaultSpec(reasoning_p=1.0)).draw("r") == RequestFault(
        FaultKind.REASONING_FIRST, tokens=8
    )


@pytest.mark.parametrize("chat", [False, True], ids=["completions", "chat"])
def test_a_chunk_of_several_tokens_is_vllm_shaped(chat: bool) -> None:
    encoder = StreamEncoder(
        chat=chat,
        response_id="x",
        created=0,
        model="m",
        prompt_tokens=3,
        include_usage=True,
        continuous_usage=True,
        token_ids=True,
    )
    merged = json.loads(encoder.chunk(4, 8, None)[6:])
    held = json.loads(encoder.chunk(5, 6, None, text_from=6)[6:])
    brought = json.loads(encoder.chunk(7, 8, "length", text_from=4)[6:])
    reasoning = json.loads(encoder.chunk(0, 1, None, reasoning=True)[6:])

    def text(chunk: dict[str, Any]) -> str:
        choice = chunk["choices"][0]
        return str(choice["delta"].get("content", "")) if chat else str(choice["text"])

    assert text(merged) == tokens_text(4, 8) and len(tokens_text(4, 8).split()) == 4
    assert merged["choices"][0]["token_ids"] == [token_id(i) for i in range(4, 8)]
    assert merged["usage"]["completion_tokens"] == 8  # running usage
    assert text(held) == "" and held["choices"][0]["token_ids"] == [token_id(5)]
    assert text(brought) == tokens_text(4, 8)
    assert brought["choices"][0]["finish_reason"] == "length"
    if chat:
        assert reasoning["choices"][0]["delta"] == {"reasoning": tokens_text(0, 1)}
