"""Generated protobuf and gRPC stubs: do not edit, run ``scripts/gen_protos.sh``.

Sources are the ``.proto`` files in ``servingperf/protocols/proto`` (each names its upstream).
"""
