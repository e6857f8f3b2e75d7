"""Where a load process's requests come from: what every request source of a phase shares.

A :class:`RequestOrigin` names the instance and the phase a load process serves, the model id
its requests carry (an adapter's instead when one is drawn per request or per session), the load
process (``worker``: 0 without worker processes), the phase's load spec (seed, streaming,
forced output lengths), and where its records' output token count comes from
(``tokens.output_tokens_from``). Every request source writes these into its request ids and
records.
"""

from __future__ import annotations

from dataclasses import dataclass

from servingperf.model.records import TokenSource
from servingperf.model.specs import LoadSpec
from servingperf.scenarios.adapter_choice import AdapterChoice


@dataclass(frozen=True, slots=True)
class RequestOrigin:
    instance: str
    model_id: str
    phase: str
    load: LoadSpec
    worker: int = 0
    adapters: AdapterChoice | None = None
    output_tokens_from: TokenSource = TokenSource.USAGE  # N from the server's usage or the stream
