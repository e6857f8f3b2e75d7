"""The explicit registry of protocol kinds: which client module speaks which ``ProtocolKind``.

No import-time discovery: adding a protocol means adding a line here. Clients are imported lazily so
that an HTTP-only run does not pay for importing gRPC stubs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Protocol, cast

from servingperf.errors import ConfigError
from servingperf.model.records import Exchange
from servingperf.model.specs import ProtocolKind
from servingperf.model.target import Target


class Client(Protocol):
    """Structural twin of ``servingperf.load.client.GenerationClient`` (protocols may not import load)."""

    async def probe(self) -> None: ...

    async def generate(self, exchange: Exchange) -> None: ...

    async def aclose(self) -> None: ...


_MODULES: dict[ProtocolKind, str] = {
    ProtocolKind.OPENAI_COMPLETIONS: "servingperf.protocols.openai",
    ProtocolKind.OPENAI_CHAT: "servingperf.protocols.openai",
    ProtocolKind.CAIKIT_GRPC: "servingperf.protocols.caikit",
    ProtocolKind.TGIS_GRPC: "servingperf.protocols.tgis",
    ProtocolKind.KSERVE_V2_REST: "servingperf.protocols.kserve_v2_rest",
    ProtocolKind.KSERVE_V2_GRPC: "servingperf.protocols.kserve_v2_grpc",
}


def create_client(target: Target) -> Client:
    """A client for ``target.protocol``; ConfigError if this build does not speak it."""
    module_name = _MODULES.get(target.protocol)
    if module_name is None:
        known = ", ".join(sorted(k.value for k in _MODULES))
        raise ConfigError(
            f"protocol {target.protocol.value!r} is not available; available: {known}"
        )
    factory = cast(Callable[[Target], Client], importlib.import_module(module_name).create)
    return factory(target)
