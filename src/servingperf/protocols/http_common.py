"""What every HTTP protocol client shares: one pooled aiohttp session per target, TLS from a CA
file or insecure, auth and extra headers, and translation of aiohttp's errors into error kinds.
"""

from __future__ import annotations

import asyncio
import ssl

import aiohttp

from servingperf.model.records import ErrorKind
from servingperf.model.target import Target


def ssl_context(target: Target) -> ssl.SSLContext | bool:
    """TLS settings for https targets: a CA file, insecure (self-signed clusters), or the defaults."""
    if target.tls_insecure:
        return False
    if target.ca_file:
        return ssl.create_default_context(cafile=target.ca_file)
    return True


def base_headers(target: Target) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if target.token:
        headers["Authorization"] = f"Bearer {target.token}"
    if target.host_header:
        headers["Host"] = target.host_header
    headers.update(dict(target.extra_headers))
    return headers


def new_session(target: Target) -> aiohttp.ClientSession:
    """A session whose pool never limits concurrency: the engine decides how many requests fly."""
    connector = aiohttp.TCPConnector(
        limit=0, ssl=ssl_context(target), enable_cleanup_closed=False, ttl_dns_cache=300
    )
    return aiohttp.ClientSession(
        connector=connector,
        headers=base_headers(target),
        timeout=aiohttp.ClientTimeout(total=None),
        auto_decompress=True,
        raise_for_status=False,
    )


EMPTY_RESPONSE = "empty response: HTTP 200 with an empty body"


def status_kind(status: int) -> ErrorKind:
    """The error kind of an HTTP error status: 429 (the server sheds load) is its own kind."""
    return ErrorKind.RATE_LIMITED if status == 429 else ErrorKind.HTTP_STATUS


def classify(exc: BaseException) -> tuple[ErrorKind, str]:
    """Map a transport exception to an error kind and a one-line reason."""
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return ErrorKind.TIMEOUT, "request timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ErrorKind.CONNECT, f"cannot connect: {exc.os_error.strerror or exc}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return ErrorKind.PROTOCOL, "server closed the connection before the response ended"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return ErrorKind.PROTOCOL, f"malformed or truncated response body: {exc}"
    if isinstance(exc, aiohttp.ClientOSError):
        return ErrorKind.CONNECT, f"connection error: {exc.strerror or exc}"
    if isinstance(exc, aiohttp.ClientError):
        return ErrorKind.PROTOCOL, f"{type(exc).__name__}: {exc}"
    return ErrorKind.PROTOCOL, f"{type(exc).__name__}: {exc}"
