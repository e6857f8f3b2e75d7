"""What every gRPC protocol client shares: one ``grpc.aio`` channel per target, TLS, call metadata,
deadlines, and the translation of gRPC status codes into request error kinds.

Terms. The *address* is ``host:port`` as gRPC dials it. A target URL may be written ``host:port``
or ``grpc://host:port`` (plaintext), ``grpcs://host:port`` (TLS), or ``http(s)://host:port`` (the
same, read by scheme). TLS is also on whenever the target gives a CA file or asks for *insecure* TLS.
*Insecure* TLS means: trust the certificate the server presents (fetched once when the channel is
opened) instead of a CA. gRPC's Python API cannot switch verification off, so this covers the
self-signed certificates of test clusters; a server whose certificate is signed by a private CA
needs ``ca_file``. *Metadata* is what gRPC calls request headers: ``authorization: Bearer ...``
from the target's token, the target's extra headers (lower-cased, as HTTP/2 requires), and the
per-request ``x-request-id``. A *deadline* is the per-call timeout, the target's request timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import grpc

from servingperf.errors import ConfigError, TargetError
from servingperf.model.records import ErrorKind, Exchange
from servingperf.model.target import Target
from servingperf.protocols.chunk_tokens import note_chunk
from servingperf.protocols.token_counter import TokenCounter, load_counter

Metadata = tuple[tuple[str, str], ...]
M = TypeVar("M")

_CONNECT_HINTS = (
    "failed to connect",
    "connection refused",
    "dns resolution failed",
    "name resolution",
    "handshake",
    "no route to host",
    "network is unreachable",
    "connect failed",
)
# Don't let gRPC retry behind our back: a retried request would be timed as one.
_CHANNEL_OPTIONS: tuple[tuple[str, int | str], ...] = (
    ("grpc.enable_retries", 0),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.primary_user_agent", "servingperf"),
)
_TLS_FETCH_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to dial: ``host``, ``port`` and whether the connection uses TLS."""

    host: str
    port: int
    tls: bool

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_endpoint(target: Target) -> Endpoint:
    """Read host, port and TLS from ``target.url``; ConfigError if it is not a gRPC address."""
    raw = target.url.strip()
    scheme = ""
    if "://" in raw:
        scheme = raw.split("://", 1)[0].lower()
    else:
        raw = f"grpc://{raw}"
    if scheme not in ("", "grpc", "grpcs", "http", "https"):
        raise ConfigError(f"{target.url}: a gRPC target is host:port, grpc://host:port or grpcs://")
    parts = urlsplit(raw)
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{target.url}: bad port") from exc
    if not parts.hostname or port is None:
        raise ConfigError(f"{target.url}: a gRPC target needs host:port")
    tls = scheme in ("grpcs", "https") or target.tls_insecure or target.ca_file is not None
    return Endpoint(parts.hostname, port, tls)


def base_metadata(target: Target) -> Metadata:
    """Headers sent with every call: bearer token and the target's extra headers."""
    pairs: list[tuple[str, str]] = []
    if target.token:
        pairs.append(("authorization", f"Bearer {target.token}"))
    pairs.extend((name.lower(), value) for name, value in target.extra_headers)
    return tuple(pairs)


def call_metadata(base: Metadata, request_id: str, *extra: tuple[str, str]) -> Metadata:
    return (*base, ("x-request-id", request_id), *extra)


async def open_channel(target: Target) -> grpc.aio.Channel:
    """A channel for the target, plaintext or TLS as the target says (see module docstring).

    Must be called with the event loop running (grpc.aio binds the channel to it). Dialling is lazy:
    a server that is down shows up as UNAVAILABLE on the first call, not here, except for insecure
    TLS, which has to fetch the server's certificate first (TargetError if it cannot).
    """
    endpoint = parse_endpoint(target)
    options: list[tuple[str, int | str]] = list(_CHANNEL_OPTIONS)
    if target.host_header:
        options.append(("grpc.default_authority", target.host_header))
    if not endpoint.tls:
        return grpc.aio.insecure_channel(endpoint.address, options=options)
    if target.ca_file:
        try:
            roots: bytes | None = await asyncio.to_thread(Path(target.ca_file).read_bytes)
        except OSError as exc:
            raise TargetError(f"cannot read CA file {target.ca_file}: {exc.strerror}") from exc
    elif target.tls_insecure:
        roots, name = await _presented_certificate(endpoint)
        if name and name != endpoint.host:
            options.append(("grpc.ssl_target_name_override", name))
    else:
        roots = None  # the system's trust store
    credentials = grpc.ssl_channel_credentials(root_certificates=roots)
    return grpc.aio.secure_channel(endpoint.address, credentials, options=options)


async def _presented_certificate(endpoint: Endpoint) -> tuple[bytes, str | None]:
    """The server's own certificate (PEM) and a name it is valid for.

    Two handshakes: the first, unverified, gets the certificate; the second trusts exactly that
    certificate, which makes the ssl module decode its names (it only decodes verified peers).
    """
    loose = ssl.create_default_context()
    loose.check_hostname = False
    loose.verify_mode = ssl.CERT_NONE
    loose.set_alpn_protocols(["h2"])
    der, _ = await _handshake(endpoint, loose)
    pem = ssl.DER_cert_to_PEM_cert(der)
    pinned = ssl.create_default_context(cadata=pem)
    pinned.check_hostname = False
    pinned.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    pinned.set_alpn_protocols(["h2"])
    try:
        _, decoded = await _handshake(endpoint, pinned)
    except TargetError:  # not a certificate that can vouch for itself: let gRPC say why
        return pem.encode(), None
    return pem.encode(), certificate_name(decoded, endpoint.host)


async def _handshake(endpoint: Endpoint, context: ssl.SSLContext) -> tuple[bytes, dict[str, Any]]:
    """One TLS handshake: the peer certificate, raw (DER) and decoded (empty if unverified)."""
    try:
        async with asyncio.timeout(_TLS_FETCH_TIMEOUT_S):
            _, writer = await asyncio.open_connection(
                endpoint.host, endpoint.port, ssl=context, server_hostname=endpoint.host
            )
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        raise TargetError(
            f"{endpoint.address}: cannot fetch the server's TLS certificate: {exc}"
        ) from exc
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if not der:
            raise TargetError(f"{endpoint.address}: the server presented no TLS certificate")
        decoded = ssl_object.getpeercert() or {}
        return bytes(der), dict(decoded)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


def certificate_name(cert: dict[str, Any], host: str) -> str | None:
    """The name to check a certificate against: ``host`` if the certificate lists it (or lists
    nothing), else its first subject-alternative name, else its common name."""
    names: list[str] = [
        str(value)
        for kind, value in cert.get("subjectAltName", ())
        if kind in ("DNS", "IP Address")
    ]
    for rdn in cert.get("subject", ()):
        names.extend(str(value) for key, value in rdn if key == "commonName")
    if not names or host in names:
        return host
    return names[0]


def enum_name(enum: Any, value: int) -> str:
    """The name of a protobuf enum value; a value this build does not know (a newer server) is
    kept as ``UNKNOWN_<n>`` rather than failing the request."""
    try:
        return str(enum.Name(value))
    except ValueError:
        return f"UNKNOWN_{value}"


def classify_rpc_error(error: grpc.aio.AioRpcError, *, received: bool) -> tuple[ErrorKind, str]:
    """Map a failed call to an error kind and a one-line reason that names the status code.

    ``received`` says whether any response message had arrived: a stream that breaks off after
    data is a truncated response (PROTOCOL), a call that never reached a server is CONNECT.
    RESOURCE_EXHAUSTED, the code of HTTP 429 in google.rpc, is RATE_LIMITED, except gRPC's own
    message-size limit ("larger than max"), which is a status like any other.
    """
    code = error.code()
    details = (error.details() or "").strip()
    reason = f"{code.name}: {details}" if details else code.name
    lowered = details.lower()
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return ErrorKind.TIMEOUT, f"deadline exceeded ({reason})"
    if code is grpc.StatusCode.UNAVAILABLE:
        if not received and any(hint in lowered for hint in _CONNECT_HINTS):
            return ErrorKind.CONNECT, f"cannot connect: {reason}"
        if received:
            return ErrorKind.PROTOCOL, f"stream broken off: {reason}"
    if code is grpc.StatusCode.INTERNAL and "deserializ" in lowered:
        return ErrorKind.PROTOCOL, f"malformed response: {reason}"
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" not in lowered:
        return ErrorKind.RATE_LIMITED, reason  # HTTP 429's code (google.rpc); not a size limit
    return ErrorKind.GRPC_STATUS, reason


def probe_failure(address: str, error: grpc.aio.AioRpcError, what: str) -> TargetError:
    """A TargetError for a failed readiness call, worded for a person reading the CLI."""
    kind, reason = classify_rpc_error(error, received=False)
    if kind is ErrorKind.CONNECT:
        return TargetError(f"{address}: {what}: nothing answers gRPC there ({reason})")
    if kind is ErrorKind.TIMEOUT:
        return TargetError(f"{address}: {what}: no answer before the deadline ({reason})")
    return TargetError(f"{address}: {what} failed: {reason}")


def probe_timeout_s(target: Target) -> float:
    return min(30.0, target.request_timeout_s)


@dataclass(frozen=True, slots=True)
class Progress:
    """What one streamed response message says about its generation.

    ``generated_total`` is the server's cumulative generated-token count (0 when the message does
    not give one); ``text`` the generated text it carries ("" for none); ``input_tokens`` the prompt size
    when the message gives it (0 otherwise); ``finish_reason`` the stop reason once finished, else
    None.
    """

    generated_total: int
    text: str
    input_tokens: int
    finish_reason: str | None


async def consume_stream(
    exchange: Exchange,
    call: grpc.aio.UnaryStreamCall[Any, M],
    read: Callable[[M], Progress],
    counter: TokenCounter | None = None,
) -> None:
    """Read a server-streaming generation call into ``exchange`` (succeed or fail it).

    Tokens per message (:mod:`servingperf.protocols.chunk_tokens`) are the deltas of the server's
    cumulative count, which is also the usage count; a server that sends text without counts is
    counted by ``counter`` over each message's text, else one token per text-bearing message
    (N then comes from the stream). The stream must end with a finish reason: one that ends
    without is truncated (PROTOCOL). The call is cancelled if we stop reading early, also when
    our task is cancelled.
    """
    received = False
    counted = 0  # the server's cumulative count, when it gives one
    # Text-bearing messages of a server that gives no counts, committed only if no count ever
    # comes (a count, once given, is the one source of N and of token chunks).
    uncounted: list[tuple[float, str]] = []
    finish_reason: str | None = None
    try:
        async for message in call:
            now = time.monotonic()
            if message is None:  # grpc.aio yields None for a message it could not deserialize
                exchange.fail(now, ErrorKind.PROTOCOL, "malformed response: unparseable message")
                return
            received = True
            progress = read(message)
            if progress.input_tokens > 0:
                exchange.usage_input_tokens = progress.input_tokens
            if progress.generated_total > counted:
                delta = progress.generated_total - counted
                counted = progress.generated_total
                exchange.usage_output_tokens = counted
                uncounted.clear()
                note_chunk(exchange, now, progress.text, delta, counter)
            elif counted:
                note_chunk(exchange, now, progress.text, 0, counter)
            elif progress.text:
                uncounted.append((now, progress.text))
            if progress.finish_reason is not None:
                finish_reason = progress.finish_reason
    except grpc.aio.AioRpcError as exc:
        kind, reason = classify_rpc_error(exc, received=received)
        exchange.fail(time.monotonic(), kind, reason)
        return
    finally:
        if not call.done():
            call.cancel()
        if counted == 0:
            for arrival, text in uncounted:
                note_chunk(exchange, arrival, text, None, counter)
    now = time.monotonic()
    if finish_reason is None:
        exchange.fail(now, ErrorKind.PROTOCOL, "the stream ended without a finish reason")
        return
    exchange.finish_reason = finish_reason
    exchange.succeed(now)


async def await_unary(exchange: Exchange, call: Awaitable[M]) -> M | None:
    """Await a unary generation call; on an error status or a response that cannot be parsed,
    fail the exchange and return None. Set ``mono_sent`` before creating ``call``."""
    try:
        response: M | None = await call
    except grpc.aio.AioRpcError as exc:
        kind, reason = classify_rpc_error(exc, received=False)
        exchange.fail(time.monotonic(), kind, reason)
        return None
    if response is None:  # grpc.aio answers None for a message it could not deserialize
        exchange.fail(
            time.monotonic(), ErrorKind.PROTOCOL, "malformed response: unparseable message"
        )
    return response


async def await_probe(call: Awaitable[M], address: str, what: str) -> M:
    """Await a readiness call; TargetError for an error status or an unparseable answer."""
    try:
        response: M | None = await call
    except grpc.aio.AioRpcError as exc:
        raise probe_failure(address, exc, what) from exc
    if response is None:
        raise TargetError(f"{address}: {what}: the answer cannot be parsed (not this protocol?)")
    return response


class ChannelHolder:
    """Opens the target's channel on first use (inside the running loop) and closes it once.

    Concurrent first calls share one channel: the lock makes the open happen once.
    """

    __slots__ = ("_channel", "_lock", "_target")

    def __init__(self, target: Target) -> None:
        self._target = target
        self._channel: grpc.aio.Channel | None = None
        self._lock: asyncio.Lock | None = None

    async def get(self) -> grpc.aio.Channel:
        channel = self._channel
        if channel is not None:
            return channel
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._channel is None:
                self._channel = await open_channel(self._target)
            return self._channel

    async def for_call(self, exchange: Exchange) -> grpc.aio.Channel | None:
        """The channel, or None with the exchange failed (CONNECT) when it cannot be opened
        (insecure TLS could not fetch the certificate, the CA file is unreadable)."""
        try:
            return await self.get()
        except TargetError as exc:
            exchange.fail(time.monotonic(), ErrorKind.CONNECT, str(exc))
            return None

    async def aclose(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close(None)


class GrpcClient:
    """What every gRPC client of one model instance holds: its address, one channel shared by all
    users of the instance, the call metadata (``extra_metadata`` after the target's own), the
    per-request deadline and the target's tokenizer (None: none named). Subclasses add the
    protocol's stub, probe and generate."""

    def __init__(self, target: Target, extra_metadata: Metadata = ()) -> None:
        self._target = target
        self._address = parse_endpoint(target).address
        self._channels = ChannelHolder(target)
        self._metadata: Metadata = (*base_metadata(target), *extra_metadata)
        self._timeout_s = target.request_timeout_s
        self._counter: TokenCounter | None = (
            None if target.tokenizer is None else load_counter(target.tokenizer)
        )

    async def aclose(self) -> None:
        await self._channels.aclose()
