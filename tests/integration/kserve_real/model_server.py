"""A small text model served by the real KServe Python model server (the `kserve` package).

Run by tests/integration/test_kserve_v2_real.py in its own virtual environment (.venv-kserve,
made by scripts/test.sh), so kserve's dependencies never mix with servingperf's. KServe 0.21
hard-codes 0.0.0.0 (REST) and [::] (gRPC); this script rebinds both to 127.0.0.1 before starting,
because our tests send traffic only to loopback.

The model answers a KServe v2 infer request with a BYTES input ``text_input`` by a BYTES output
``text_output`` of ``max_tokens`` (an INT32 input or parameter, default 8) words, so a client can
count output tokens.

Usage: python model_server.py HTTP_PORT GRPC_PORT
"""

from __future__ import annotations

import json
import sys
from typing import Any

import uvicorn
from kserve import Model, ModelServer
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

HOST = "127.0.0.1"

_config_init = uvicorn.Config.__init__


def _loopback_config(self: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
    kwargs["host"] = HOST
    _config_init(self, *args, **kwargs)


uvicorn.Config.__init__ = _loopback_config  # type: ignore[method-assign]


def _patch_grpc() -> None:
    import grpc.aio._server as aio_server

    original = aio_server.Server.add_insecure_port

    def loopback(self: Any, address: str) -> int:
        return original(self, address.replace("[::]", HOST).replace("0.0.0.0", HOST))

    aio_server.Server.add_insecure_port = loopback  # type: ignore[method-assign]


class Words(Model):
    """Returns ``max_tokens`` words (from the ``sampling_parameters`` JSON input, as Triton's vLLM
    backend reads it), with ``num_output_tokens`` / ``num_input_tokens`` / ``finish_reason``: a
    stand-in for a text-generation model that follows that tensor convention."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.ready = True

    async def predict(
        self, payload: Any, headers: Any = None, response_headers: Any = None
    ) -> InferResponse:
        if not isinstance(payload, InferRequest):
            raise ValueError("this model speaks the v2 protocol only")
        max_tokens, prompt = 8, ""
        for tensor in payload.inputs:
            if tensor.name == "sampling_parameters":
                max_tokens = int(json.loads(_text(tensor.data[0])).get("max_tokens", 8))
            elif tensor.name == "text_input":
                prompt = _text(tensor.data[0])
        words = " ".join(f"w{i}" for i in range(max_tokens))
        outputs = [
            InferOutput(name="text_output", shape=[1], datatype="BYTES", data=[words]),
            InferOutput(name="num_output_tokens", shape=[1], datatype="UINT32", data=[max_tokens]),
            InferOutput(
                name="num_input_tokens", shape=[1], datatype="UINT32", data=[len(prompt.split())]
            ),
            InferOutput(name="finish_reason", shape=[1], datatype="BYTES", data=["length"]),
        ]
        return InferResponse(
            model_name=self.name,
            infer_outputs=outputs,
            response_id=payload.id or "servingperf-test",
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def main() -> None:
    http_port, grpc_port = int(sys.argv[1]), int(sys.argv[2])
    _patch_grpc()
    ModelServer(http_port=http_port, grpc_port=grpc_port, workers=1).start([Words("words")])


if __name__ == "__main__":
    main()
