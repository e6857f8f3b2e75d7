"""Workload request factories (#18): adapters by weight and churn, trace rows as requests,
conversation sessions growing turn by turn."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from servingperf.datasets.conversations import Conversation
from servingperf.datasets.traces import TraceRequest
from servingperf.model.records import ErrorKind, Exchange
from servingperf.model.specs import DatasetSpec, LoadSpec
from servingperf.model.workload_spec import AdaptersSpec
from servingperf.scenarios.adapter_choice import AdapterChoice
from servingperf.scenarios.conversation_requests import ConversationRequests
from servingperf.scenarios.request_origin import RequestOrigin
from servingperf.scenarios.trace_requests import TraceRequests

ORIGIN = RequestOrigin(instance="i", model_id="m", phase="load", load=LoadSpec())


def test_adapter_shares_follow_their_weights() -> None:
    choice = AdapterChoice(AdaptersSpec(weights={"a": 1, "b": 3}), seed=1)
    drawn = Counter(choice.choose(stream=s % 8) for s in range(8000))
    assert drawn["b"] / 8000 == pytest.approx(0.75, abs=0.03)


def test_adapter_churn_rotates_the_active_set() -> None:
    now = [0.0]
    spec = AdaptersSpec(
        weights={"a": 1, "b": 1, "c": 1, "d": 1}, churn={"active": 2, "every_s": 10}
    )
    choice = AdapterChoice(spec, seed=0, clock=lambda: now[0])
    assert choice.active(0) == ["a", "b"] and choice.active(15) == ["c", "d"]
    assert choice.active(25) == ["a", "b"]
    first = {choice.choose(0) for _ in range(200)}
    now[0] = 12.0
    second = {choice.choose(0) for _ in range(200)}
    assert first == {"a", "b"} and second == {"c", "d"}


def test_trace_rows_become_requests_of_their_lengths() -> None:
    rows = (TraceRequest(0.0, 6, 3, (1, 2)), TraceRequest(0.5, 4, 9, (1,)))
    dataset = DatasetSpec(source="trace", trace={"path": "t.jsonl", "block_tokens": 3})
    requests = TraceRequests(rows, dataset, ORIGIN)
    assert requests.arrival_offsets() == [0.0, 0.5]
    first, context = requests(0, 0)
    second, _ = requests(1, 0)
    assert (first.max_tokens, second.max_tokens) == (3, 9)  # the trace's output lengths
    assert first.min_tokens == 3 and first.ignore_eos  # forced by default
    assert len(first.prompt.split(" ")) == 6 and len(second.prompt.split(" ")) == 4
    assert first.prompt.split(" ")[:3] == second.prompt.split(" ")[:3]  # block 1 shared
    assert context.requested_output_tokens == 3
    fixed = DatasetSpec(source="trace", trace={"path": "t.jsonl"}, output_tokens=5)
    assert not fixed.trace_lengths
    overridden = TraceRequests(rows, fixed, ORIGIN)
    assert overridden(1, 0)[0].max_tokens == 5


def _answer(request_id: str, text: str, *, ok: bool = True) -> Exchange:
    from servingperf.model.records import GenerationRequest

    exchange = Exchange(GenerationRequest(request_id, "m", "p", 4), time.monotonic())
    exchange.text_parts = [text]
    if ok:
        exchange.succeed(time.monotonic())
    else:
        exchange.fail(time.monotonic(), ErrorKind.HTTP_STATUS, "HTTP 500")
    return exchange


def test_a_session_sends_its_growing_history_with_the_servers_answers() -> None:
    conversation = Conversation(0, "be brief", ("one", "two", "three"))
    dataset = DatasetSpec(
        source="conversations", conversations={"think_time_s": 0.25}, output_tokens=8
    )
    source = ConversationRequests([conversation], dataset, ORIGIN)
    first, ctx1 = source(0, 0)
    assert first.messages == (("system", "be brief"), ("user", "one"))
    assert first.keep_text and (ctx1.session, ctx1.turn) == ("w0u0s0", 0)
    assert source.answered(0, _answer(first.request_id, " A1")) == 0.25  # think, then turn 2
    second, ctx2 = source(0, 1)
    assert second.messages == (
        ("system", "be brief"),
        ("user", "one"),
        ("assistant", " A1"),
        ("user", "two"),
    )
    assert ctx2.turn == 1
    source.answered(0, _answer(second.request_id, " A2"))
    third, _ = source(0, 2)
    assert third.messages[-3:] == (("user", "two"), ("assistant", " A2"), ("user", "three"))
    assert source.answered(0, _answer(third.request_id, " A3")) == 0.0  # the session ended
    fourth, ctx4 = source(0, 3)
    assert (ctx4.session, ctx4.turn) == ("w0u0s1", 0)  # a new session from its first turn
    assert fourth.messages == (("system", "be brief"), ("user", "one"))


def test_a_failed_turn_ends_its_session() -> None:
    conversation = Conversation(0, None, ("one", "two"))
    dataset = DatasetSpec(source="conversations", output_tokens=8)
    source = ConversationRequests([conversation], dataset, ORIGIN)
    first, _ = source(3, 0)
    source.answered(3, _answer(first.request_id, "", ok=False))
    _, context = source(3, 1)
    assert (context.session, context.turn) == ("w0u3s1", 0)
