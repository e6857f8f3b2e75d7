"""The embedded model server: a continuous-batching latency model behind OpenAI-compatible and
KServe v2 HTTP front ends, and caikit, TGIS and KServe v2 gRPC ones. It imports nothing of the
client side.

Modules, one concept each: ``profiles`` (named, illustrative parameter sets), ``tokenizer`` (the
toy tokenizer), ``lengths`` (how many tokens a request gets), ``engine`` (the step loop that
decides when each token exists), ``openai_format`` (request parsing and response bytes),
``groundtruth`` (server-side timings per request), ``http`` (the aiohttp routes), ``server``
(running it as a process or in-process) and ``command_line`` (``python -m servingperf.emulator``,
the lean command the local platform runs). A protocol's modules load only when it is served:
grpc and protobuf with a gRPC port, pydantic with injected faults (docs/emulator.md, Memory).
docs/emulator.md describes the model and the formats.
"""
