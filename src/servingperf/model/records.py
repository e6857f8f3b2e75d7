"""Request records: the raw, per-request facts every metric is later derived from (DESIGN.md §3).

Terms: all ``t_*`` fields are seconds on the monotonic clock of the machine that sent the request,
as offsets from the run's ``t0`` (``run.json`` keeps ``t0_monotonic`` and the wall-clock
``started_at``). ``chunk_offsets_s`` are arrival offsets, after ``t_sent``, of every response chunk that
carried at least one output token; ``chunk_tokens`` the tokens each such chunk carried, counted
by ``chunk_token_source``: the server's per-chunk counts, the scenario's tokenizer over the chunk's
text, or one per chunk (:class:`ChunkTokenSource`). The *streamed count* is what the stream
says N is: the chunks' tokens plus any the server counted on chunks without text that no later
chunk carried (``Exchange.tokens_without_text``); the *usage count* is the server's usage block.
N (``output_tokens``) is one of them, chosen per request (``RequestContext.output_tokens_from``).
An :class:`Exchange` is a request in flight, filled in by a protocol client as bytes arrive; the
engine freezes it into a :class:`RequestRecord`, so a request cut at the end keeps what it gathered.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class RequestStatus(enum.StrEnum):
    PENDING = "pending"
    OK = "ok"
    ERROR = "error"
    CUT = "cut"  # still in flight when the phase stopped issuing: neither success nor error


class ErrorKind(enum.StrEnum):
    CONNECT = "connect"
    TIMEOUT = "timeout"
    HTTP_STATUS = "http_status"
    RATE_LIMITED = "rate_limited"  # HTTP 429 (gRPC RESOURCE_EXHAUSTED): the server sheds load
    GRPC_STATUS = "grpc_status"
    PROTOCOL = (
        "protocol"  # the server answered something we cannot parse or that breaks the protocol
    )
    CUT = "cut"


class TokenSource(enum.StrEnum):
    USAGE = "usage"  # the server's own usage count
    STREAM = "stream"  # counted from streamed token-bearing chunks
    NONE = "none"


class ChunkTokenSource(enum.StrEnum):
    """Where the tokens of each token-bearing chunk were counted from (best first)."""

    SERVER = "server"  # the server's per-chunk counts: running usage deltas or token ids
    TOKENIZER = "tokenizer"  # the chunk's text through the scenario's tokenizer
    CHUNKS = "chunks"  # one token per token-bearing chunk
    MIXED = "mixed"  # different chunks of one request, different sources


@dataclass(slots=True)
class GenerationRequest:
    """What a protocol client sends: one prompt, one model, an output-length intent."""

    request_id: str
    model: str
    prompt: str
    max_tokens: int | None
    min_tokens: int | None = None
    ignore_eos: bool = False
    stream: bool = True
    system_prompt: str | None = None
    # A chat history to send instead of (system prompt, prompt): role/content pairs, in order.
    messages: tuple[tuple[str, str], ...] | None = None
    keep_text: bool = False  # the client keeps the answer's text (a conversation sends it back)


@dataclass(slots=True)
class Exchange:
    """A request in flight. Clients set absolute ``time.monotonic()`` values; never derived data."""

    request: GenerationRequest
    mono_scheduled: float
    mono_sent: float | None = None
    mono_first_token: float | None = None
    mono_first_content: float | None = None
    mono_end: float | None = None
    chunk_monos: list[float] = field(default_factory=list)
    chunk_tokens: list[int] = field(default_factory=list)
    chunk_source: ChunkTokenSource | None = None
    tokens_without_text: int = 0  # server-counted on text-less chunks, carried by no later chunk
    usage_output_tokens: int | None = None
    usage_input_tokens: int | None = None
    status: RequestStatus = RequestStatus.PENDING
    error_kind: ErrorKind | None = None
    error_message: str | None = None
    finish_reason: str | None = None
    text_parts: list[str] | None = None  # the answer's content, when the request keeps it
    reasoning_tokens: int = 0  # tokens of chunks that carried reasoning, not content

    def token_chunk(
        self,
        now: float,
        tokens: int,
        *,
        content: bool = True,
        source: ChunkTokenSource = ChunkTokenSource.CHUNKS,
    ) -> None:
        """Note a response chunk carrying ``tokens`` (>= 1) output tokens at ``now``, counted
        from ``source``."""
        if tokens <= 0:
            return
        if self.mono_first_token is None:
            self.mono_first_token = now
        if content:
            if self.mono_first_content is None:
                self.mono_first_content = now
        else:
            self.reasoning_tokens += tokens
        self.chunk_monos.append(now)
        self.chunk_tokens.append(tokens)
        if self.chunk_source is not source:
            self.note_source(source)

    def note_source(self, source: ChunkTokenSource) -> None:
        """Chunks counted from ``source`` were noted: MIXED once two sources were used."""
        if self.chunk_source is None:
            self.chunk_source = source
        elif self.chunk_source is not source:
            self.chunk_source = ChunkTokenSource.MIXED

    @property
    def streamed_tokens(self) -> int:
        """The streamed count (terms in the module docstring)."""
        return sum(self.chunk_tokens) + self.tokens_without_text

    def succeed(self, now: float) -> None:
        self.mono_end = now
        self.status = RequestStatus.OK

    def fail(self, now: float, kind: ErrorKind, message: str) -> None:
        """Mark the request failed; the first failure wins (a later one is a consequence)."""
        if self.status in (RequestStatus.ERROR, RequestStatus.CUT):
            return
        self.mono_end = now
        self.status = RequestStatus.ERROR
        self.error_kind = kind
        self.error_message = message[:500]


@dataclass(slots=True)
class RequestContext:
    """Who sent a request and why: copied verbatim into its record."""

    instance: str
    model: str
    phase: str
    worker: int
    user: int
    prompt_index: int
    requested_output_tokens: int | None
    output_tokens_from: TokenSource = TokenSource.USAGE  # N: usage (else stream), or stream
    session: str | None = None  # multi-turn: the session this turn belongs to
    turn: int | None = None  # multi-turn: 0-based turn of the session


@dataclass(slots=True)
class RequestRecord:
    """One request, final. One row of ``records/*.parquet``."""

    request_id: str
    instance: str
    model: str
    phase: str
    worker: int
    user: int
    prompt_index: int
    streamed: bool
    requested_output_tokens: int | None
    input_tokens: int | None
    output_tokens: int | None
    token_source: str
    t_scheduled_s: float
    t_sent_s: float | None
    t_first_token_s: float | None
    t_first_content_s: float | None
    t_end_s: float | None
    chunk_offsets_s: list[float]
    chunk_tokens: list[int]
    status: str
    error_kind: str | None
    error_message: str | None
    finish_reason: str | None
    stream_output_tokens: int | None = None  # the streamed count; None for non-streamed calls
    usage_output_tokens: int | None = None  # the server's usage count, when it gave one
    chunk_token_source: str | None = None  # a ChunkTokenSource; None without token chunks
    token_mismatch: bool | None = None  # both counts known (ok, streamed) and they differ
    reasoning_tokens: int | None = None  # streamed tokens of reasoning chunks (before content)
    session: str | None = None  # multi-turn: the session of this turn
    turn: int | None = None  # multi-turn: 0-based turn in its session


def freeze(exchange: Exchange, context: RequestContext, t0: float) -> RequestRecord:
    """Turn a finished (or cut) exchange into its record, times as offsets from ``t0``.

    N (output tokens) is the server's usage count when it gave one, else the streamed count
    (DESIGN.md §3); with ``output_tokens_from`` stream, the streamed count wherever the request
    streamed tokens, else the usage count. ``token_source`` says which. Both counts are kept,
    and a successful streamed request whose counts differ is flagged (``token_mismatch``).
    """

    def off(mono: float | None) -> float | None:
        return None if mono is None else mono - t0

    usage = exchange.usage_output_tokens
    stream = exchange.request.stream
    streamed = exchange.streamed_tokens if stream else None
    has_stream = bool(exchange.chunk_tokens) or exchange.tokens_without_text > 0
    if has_stream and (usage is None or context.output_tokens_from is TokenSource.STREAM):
        output_tokens: int | None = streamed
        source = TokenSource.STREAM
    elif usage is not None:
        output_tokens = usage
        source = TokenSource.USAGE
    else:
        output_tokens = None if exchange.status is not RequestStatus.OK else 0
        source = TokenSource.NONE
    sent = exchange.mono_sent
    status = exchange.status
    if status is RequestStatus.PENDING:  # never finished and never failed: treat as cut
        status = RequestStatus.CUT
    compared = status is RequestStatus.OK and streamed is not None and usage is not None
    return RequestRecord(
        request_id=exchange.request.request_id,
        instance=context.instance,
        model=context.model,
        phase=context.phase,
        worker=context.worker,
        user=context.user,
        prompt_index=context.prompt_index,
        streamed=exchange.request.stream,
        requested_output_tokens=context.requested_output_tokens,
        input_tokens=exchange.usage_input_tokens,
        output_tokens=output_tokens,
        token_source=source.value,
        t_scheduled_s=exchange.mono_scheduled - t0,
        t_sent_s=off(sent),
        t_first_token_s=off(exchange.mono_first_token),
        t_first_content_s=off(exchange.mono_first_content),
        t_end_s=off(exchange.mono_end),
        chunk_offsets_s=[m - sent for m in exchange.chunk_monos] if sent is not None else [],
        chunk_tokens=list(exchange.chunk_tokens),
        status=status.value,
        error_kind=(
            ErrorKind.CUT.value
            if status is RequestStatus.CUT
            else (exchange.error_kind.value if exchange.error_kind else None)
        ),
        error_message=exchange.error_message,
        finish_reason=exchange.finish_reason,
        stream_output_tokens=streamed,
        usage_output_tokens=usage,
        chunk_token_source=None if exchange.chunk_source is None else exchange.chunk_source.value,
        token_mismatch=(streamed != usage) if compared else None,
        reasoning_tokens=exchange.reasoning_tokens if streamed is not None else None,
        session=context.session,
        turn=context.turn,
    )
