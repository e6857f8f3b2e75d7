"""A resolved target: where and how to send requests to one model instance.

Scenarios build it from a spec plus what a platform reports (the endpoint); protocol clients read it.
Token counting (``tokenizer``, ``chunk_usage``, ``token_ids``): the resolved path of a local
``tokenizer.json`` that counts the tokens of each chunk's text, and whether to ask the server for
its per-chunk counts (vLLM's ``stream_options.continuous_usage_stats`` and ``return_token_ids``).
Secrets (``token``) are resolved from the environment or a file before they get here and are never
written to run files or logs (``redacted()`` is what gets written).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from servingperf.model.specs import ProtocolKind


@dataclass(frozen=True, slots=True)
class Target:
    url: str  # http(s)://host:port for HTTP protocols, host:port for gRPC
    model: str  # model id sent on the wire
    protocol: ProtocolKind
    request_timeout_s: float = 300.0
    tls_insecure: bool = False
    ca_file: str | None = None
    token: str | None = field(default=None, repr=False)
    host_header: str | None = None
    extra_headers: tuple[tuple[str, str], ...] = ()
    tokenizer: str | None = None
    chunk_usage: bool = False
    token_ids: bool = False

    def redacted(self) -> Target:
        return replace(self, token="***" if self.token else None)
