"""The real caikit runtime (PyPI's ``caikit`` + ``caikit-nlp``) serving one caikit-nlp
text-generation model over gRPC on 127.0.0.1, for the caikit protocol tests.

Run in its own virtual environment. caikit's gRPC server binds ``[::]`` and its HTTP and metrics
servers ``0.0.0.0``, hard-coded: this script turns HTTP and metrics off and rebinds gRPC to
127.0.0.1 before starting, because our tests send traffic only to loopback.

Usage: python runtime.py HF_MODEL_DIR WORK_DIR GRPC_PORT
  converts the Hugging Face model folder into a caikit model ``WORK_DIR/models/tiny`` (once),
  then serves ``WORK_DIR/models`` on GRPC_PORT (model id: ``tiny``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import grpc


def _loopback(add_port):  # type: ignore[no-untyped-def]
    def add(self, address, *args):  # type: ignore[no-untyped-def]
        return add_port(self, address.replace("[::]", "127.0.0.1"), *args)

    return add


def main() -> None:
    hf_dir, work, port = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    models = work / "models"
    if not (models / "tiny" / "config.yml").exists():
        from caikit_nlp.modules.text_generation import TextGeneration

        TextGeneration.bootstrap(str(hf_dir)).save(str(models / "tiny"))
    import caikit

    caikit.configure(
        config_dict={
            "runtime": {
                "library": "caikit_nlp",
                "local_models_dir": str(models),
                "grpc": {"enabled": True, "port": port},
                "http": {"enabled": False},
                "metrics": {"enabled": False},
            },
        }
    )
    server_class = type(grpc.server(None))  # grpc's concrete server class
    server_class.add_insecure_port = _loopback(server_class.add_insecure_port)
    from caikit.runtime.__main__ import main as serve

    serve()


if __name__ == "__main__":
    main()
