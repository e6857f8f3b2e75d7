"""What a request factory may say besides the next request: the seams new workloads plug into.

A *request factory* (:data:`servingperf.load.execute.RequestFactory`) gives the request a user
(or an arrival) sends next. Some workloads need more, and say so by implementing one of these
protocols, which the workloads check once per phase (never per request):

- a :class:`TimedSource` knows *when* its requests arrive (a replayed trace): the open-loop
  workload sends request k at its offset, divided by the schedule's speed-up;
- a :class:`Conversational` source wants each *answer* (a chat session sends it back as history)
  and may ask its user to pause before the next turn (think time).

The load engine stays ignorant of datasets: these are protocols it owns, the scenarios implement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from servingperf.model.records import Exchange


@runtime_checkable
class TimedSource(Protocol):
    def arrival_offsets(self) -> Sequence[float]:
        """Request k's arrival, seconds from the first one, non-decreasing (speed-up 1)."""
        ...


@runtime_checkable
class Conversational(Protocol):
    def answered(self, user: int, exchange: Exchange) -> float:
        """Note ``user``'s finished exchange (its answer, or its failure); the seconds the user
        waits before its next request."""
        ...
