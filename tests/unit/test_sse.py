"""SSE framing: events survive any split of the byte stream (property-based), CRLF, comments."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from servingperf.protocols.sse import SseParser


def _all(parser: SseParser, pieces: list[bytes]) -> list[str]:
    events: list[str] = []
    for piece in pieces:
        events.extend(parser.feed(piece))
    return events + parser.close()


def test_basic_events_comments_and_multiline_data() -> None:
    raw = b': keepalive\n\ndata: {"a":1}\n\nevent: x\ndata: line1\ndata: line2\n\ndata: [DONE]\n\n'
    assert _all(SseParser(), [raw]) == ['{"a":1}', "line1\nline2", "[DONE]"]


def test_crlf_and_bom() -> None:
    raw = "\ufeffdata: é\r\n\r\ndata:x\r\r".encode()
    assert _all(SseParser(), [raw]) == ["é", "x"]


def test_unterminated_final_event_is_dispatched_at_close() -> None:
    assert _all(SseParser(), [b"data: tail"]) == ["tail"]


payloads = st.lists(
    st.text(
        alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]),
        max_size=30,
    ),
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(
    payloads,
    st.lists(st.integers(min_value=0, max_value=400), max_size=10),
    st.sampled_from([b"\n", b"\r\n", b"\r"]),
)
def test_any_split_gives_the_same_events(events: list[str], cuts: list[int], eol: bytes) -> None:
    raw = b"".join(b"data: " + e.encode() + eol + eol for e in events)
    points = sorted({c % (len(raw) + 1) for c in cuts})
    pieces = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]
    assert _all(SseParser(), pieces) == events


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    _all(SseParser(), [raw[:100], raw[100:]])


objects = st.lists(
    st.dictionaries(st.text(max_size=5), st.one_of(st.integers(), st.text(max_size=8))),
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(objects, st.booleans(), st.binary(max_size=12))
def test_a_json_batch_holds_exactly_the_events_feed_bytes_gives(
    values: list[dict[str, object]], done: bool, tail: bytes
) -> None:
    import json

    events = [json.dumps(v, separators=(",", ":")).encode() for v in values]
    raw = b"".join(b"data: " + e + b"\n\n" for e in events)
    raw += (b"data: [DONE]\n\n" if done else b"") + tail
    reference = SseParser()
    expected = reference.feed_bytes(raw)
    batch = SseParser().feed_json_batch(raw)
    if batch is None:  # refused: the caller takes the general path, which must see everything
        return
    assert json.loads(batch.array) == [json.loads(e) for e in expected if e != b"[DONE]"]
    assert batch.events == len(expected) - batch.done
    assert batch.done == (b"[DONE]" in expected)
    assert batch.payloads() == [e for e in expected if e != b"[DONE]"]


def test_a_json_batch_is_refused_for_any_other_shape() -> None:
    refused = [
        b'data: {"a":1}\r\n\r\n',  # CRLF framing
        b'data: {"a":1}\ndata: {"b":2}\n\n',  # a multi-line event
        b': comment\n\ndata: {"a":1}\n\n',  # a comment first
        b'data: {"a":1}\n\nid: 3\ndata: {"b":2}\n\n',  # another field
        b'data: {"a":1}\n\ndata: [1]\n\n',  # an event that is not an object
        b'data: {"a":1}\n\ndata: [DONE]\n\ndata: {"b":2}\n\n',  # an event after [DONE]
        b'data: {"a":1}',  # no complete event
    ]
    for raw in refused:
        parser = SseParser()
        assert parser.feed_json_batch(raw) is None, raw
        assert parser.feed_bytes(b"") == []  # nothing was consumed or kept
    parser = SseParser()
    assert parser.feed_bytes(b'data: {"a":1}\n') == []
    assert parser.feed_json_batch(b'data: {"b":2}\n\n') is None  # a block is pending
    assert parser.feed_bytes(b'data: {"b":2}\n\n') == [b'{"a":1}\n{"b":2}']


def test_a_json_batch_in_the_shape_servers_send() -> None:
    parser = SseParser()
    batch = parser.feed_json_batch(b'data: {"a":1}\n\ndata: {"b":"}"}\n\ndata: [DONE]\n\nda')
    assert batch is not None
    assert (batch.array, batch.events, batch.done) == (b'[{"a":1},{"b":"}"}]', 2, True)
    assert parser.close_bytes() == []  # the tail "da" is no event
