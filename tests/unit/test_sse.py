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
