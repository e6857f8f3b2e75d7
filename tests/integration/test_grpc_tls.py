"""gRPC over TLS on loopback: a CA file, insecure TLS (trust what the server presents, for
self-signed clusters), and the failures a person must be able to read.

The certificates are self-signed, made here with ``cryptography``: one valid for 127.0.0.1 and
localhost (checked with the CA file), one valid only for ``emulator.test``, a name the client does
not dial (insecure TLS must still connect, verifying against the certificate's own name).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

cryptography = pytest.importorskip("cryptography")

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from servingperf.emulator.engine import Engine  # noqa: E402
from servingperf.emulator.groundtruth import GroundTruthLog  # noqa: E402
from servingperf.emulator.grpc_context import ServingContext  # noqa: E402
from servingperf.emulator.grpc_server import start_grpc_server  # noqa: E402
from servingperf.emulator.profiles import resolve_profile  # noqa: E402
from servingperf.errors import TargetError  # noqa: E402
from servingperf.model.records import (  # noqa: E402
    ErrorKind,
    Exchange,
    GenerationRequest,
    RequestStatus,
)
from servingperf.model.specs import ProtocolKind  # noqa: E402
from servingperf.model.target import Target  # noqa: E402
from servingperf.protocols import caikit, tgis  # noqa: E402


def self_signed(names: list[x509.GeneralName]) -> tuple[bytes, bytes]:
    """A self-signed certificate (PEM) for ``names`` and its private key (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "servingperf test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


LOOPBACK_NAMES: list[x509.GeneralName] = [
    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    x509.DNSName("localhost"),
]
OTHER_NAME: list[x509.GeneralName] = [x509.DNSName("emulator.test")]


@contextlib.asynccontextmanager
async def tls_emulator(cert: bytes, key: bytes) -> AsyncIterator[int]:
    engine = Engine(resolve_profile("instant", {}))
    ctx = ServingContext({"m": engine}, GroundTruthLog())
    server, port = await start_grpc_server(ctx, tls=(cert, key))
    try:
        yield port
    finally:
        await server.stop(0.5)
        await engine.aclose()


def exchange(stream: bool) -> Exchange:
    request = GenerationRequest(
        request_id=f"tls-{stream}",
        model="m",
        prompt="Hello",
        max_tokens=5,
        ignore_eos=True,
        stream=stream,
    )
    return Exchange(request=request, mono_scheduled=time.monotonic())


@pytest.mark.parametrize("stream", [True, False])
async def test_ca_file(tmp_path: Path, stream: bool) -> None:
    cert, key = self_signed(LOOPBACK_NAMES)
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(cert)
    async with tls_emulator(cert, key) as port:
        target = Target(
            url=f"127.0.0.1:{port}",
            model="m",
            protocol=ProtocolKind.TGIS_GRPC,
            ca_file=str(ca_file),
        )
        client = tgis.create(target)
        try:
            await client.probe()
            ex = exchange(stream)
            await client.generate(ex)
        finally:
            await client.aclose()
    assert ex.status is RequestStatus.OK, ex.error_message
    assert ex.usage_output_tokens == 5


async def test_insecure_trusts_the_presented_certificate_whatever_its_name() -> None:
    cert, key = self_signed(OTHER_NAME)
    async with tls_emulator(cert, key) as port:
        target = Target(
            url=f"127.0.0.1:{port}",
            model="m",
            protocol=ProtocolKind.CAIKIT_GRPC,
            tls_insecure=True,
        )
        client = caikit.create(target)
        try:
            await client.probe()
            ex = exchange(True)
            await client.generate(ex)
        finally:
            await client.aclose()
    assert ex.status is RequestStatus.OK, ex.error_message
    assert sum(ex.chunk_tokens) == 5


async def test_untrusted_certificate_fails_as_connect(tmp_path: Path) -> None:
    cert, key = self_signed(LOOPBACK_NAMES)
    other, _ = self_signed(LOOPBACK_NAMES)  # a CA that did not sign the server's certificate
    ca_file = tmp_path / "other.pem"
    ca_file.write_bytes(other)
    async with tls_emulator(cert, key) as port:
        target = Target(
            url=f"127.0.0.1:{port}",
            model="m",
            protocol=ProtocolKind.TGIS_GRPC,
            ca_file=str(ca_file),
            request_timeout_s=10,
        )
        client = tgis.create(target)
        try:
            ex = exchange(False)
            await client.generate(ex)
            with pytest.raises(TargetError, match=str(port)):
                await client.probe()
        finally:
            await client.aclose()
    assert ex.status is RequestStatus.ERROR
    assert ex.error_kind is ErrorKind.CONNECT, ex.error_message


async def test_missing_ca_file_is_a_clear_target_error(tmp_path: Path) -> None:
    target = Target(
        url="127.0.0.1:1",
        model="m",
        protocol=ProtocolKind.TGIS_GRPC,
        ca_file=str(tmp_path / "absent.pem"),
    )
    client = tgis.create(target)
    try:
        with pytest.raises(TargetError, match="CA file"):
            await client.probe()
    finally:
        await client.aclose()


async def test_insecure_tls_to_a_closed_port_fails_as_connect() -> None:
    target = Target(
        url="127.0.0.1:1", model="m", protocol=ProtocolKind.CAIKIT_GRPC, tls_insecure=True
    )
    client = caikit.create(target)
    try:
        ex = exchange(True)
        await client.generate(ex)
        with pytest.raises(TargetError, match="certificate"):
            await client.probe()
    finally:
        await client.aclose()
    assert ex.error_kind is ErrorKind.CONNECT
    assert ex.mono_sent is None  # nothing was sent
