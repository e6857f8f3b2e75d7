"""One ``grpc.aio`` server hosting every gRPC front end of the emulator on one port.

Services: caikit ``caikit.runtime.Nlp.NlpService``, TGIS ``fmaas.GenerationService``, KServe v2
``inference.GRPCInferenceService``, and the standard health check ``grpc.health.v1.Health/Check``
(SERVING once ready, NOT_SERVING while loading; empty service name or any listed service). The
health messages are handled as raw bytes (``HealthCheckResponse`` is one enum field) so that the
process need not register grpc.health.v1 in the protobuf pool.

TLS: give ``tls`` (PEM certificate chain, PEM private key) to serve TLS instead of plaintext.
Stop the server with ``await server.stop(grace)``; calls still running then are cancelled, their
sequences leave the batch and their ground truth records say ``disconnected``.
"""

from __future__ import annotations

from typing import Any

import grpc

from servingperf.emulator.grpc_caikit import CaikitNlpServicer
from servingperf.emulator.grpc_context import ServingContext
from servingperf.emulator.grpc_tgis import TgisGenerationServicer
from servingperf.emulator.kserve_v2_grpc import KServeV2InferenceServicer
from servingperf.errors import ConfigError
from servingperf.protocols._generated import (
    caikit_runtime_Nlp_pb2_grpc,
    generation_pb2_grpc,
    grpc_predict_v2_pb2_grpc,
)

HEALTH_SERVICE = "grpc.health.v1.Health"
_SERVING = b"\x08\x01"  # HealthCheckResponse{status: SERVING}
_NOT_SERVING = b"\x08\x02"  # HealthCheckResponse{status: NOT_SERVING}


def _health_handler(ctx: ServingContext) -> grpc.GenericRpcHandler[bytes, bytes]:
    async def check(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        return _SERVING if ctx.is_ready() else _NOT_SERVING

    return grpc.method_handlers_generic_handler(
        HEALTH_SERVICE, {"Check": grpc.unary_unary_rpc_method_handler(check)}
    )


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def start_grpc_server(
    ctx: ServingContext,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: tuple[bytes, bytes] | None = None,
) -> tuple[grpc.aio.Server, int]:
    """Start the gRPC front ends in the running event loop; returns the server and bound port.

    Raises ``ConfigError`` when the address cannot be bound. The caller must
    ``await server.stop(grace)``.
    """
    if not 0 <= port <= 65535:
        raise ConfigError(f"gRPC port must be in 0..65535, got {port}")
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    caikit_runtime_Nlp_pb2_grpc.add_NlpServiceServicer_to_server(CaikitNlpServicer(ctx), server)
    generation_pb2_grpc.add_GenerationServiceServicer_to_server(TgisGenerationServicer(ctx), server)
    grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
        KServeV2InferenceServicer(ctx), server
    )
    server.add_generic_rpc_handlers((_health_handler(ctx),))
    address = _address(host, port)
    try:
        if tls is None:
            bound = server.add_insecure_port(address)
        else:
            chain, key = tls
            credentials = grpc.ssl_server_credentials([(key, chain)])
            bound = server.add_secure_port(address, credentials)
    except RuntimeError as exc:  # grpcio raises when it cannot bind
        raise ConfigError(f"cannot listen for gRPC on {address}: {exc}") from exc
    if bound == 0:
        raise ConfigError(f"cannot listen for gRPC on {address}")
    await server.start()
    return server, bound
