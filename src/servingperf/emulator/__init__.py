"""The embedded model server: a continuous-batching latency model behind an OpenAI-compatible
HTTP front end (gRPC front ends come later). It imports nothing of the client side.

Modules, one concept each: ``profiles`` (named, illustrative parameter sets), ``tokenizer`` (the
toy tokenizer), ``lengths`` (how many tokens a request gets), ``engine`` (the step loop that
decides when each token exists), ``openai_format`` (request parsing and response bytes),
``groundtruth`` (server-side timings per request), ``http`` (the aiohttp routes) and ``server``
(running it as a process or in-process). docs/emulator.md describes the model and the formats.
"""
