"""A crashed server (a loopback port nobody listens on) under closed-loop load, through the real
OpenAI client and the scenario's load spec: users back off by default instead of retrying at
once, the wait is not client lag, and ``backoff: null`` still retries at once."""

from __future__ import annotations

import itertools
import socket
import time

from servingperf.load.closed_loop import Backoff
from servingperf.load.shard import Shard, run_shard
from servingperf.load.sinks import ListSink, LoadCounters, NullProgress, PhaseOutputs
from servingperf.model.records import RequestRecord
from servingperf.model.specs import LoadSpec, ProtocolKind
from servingperf.model.target import Target
from servingperf.protocols.registry import create_client
from tests.fakes.clients import fake_requests

USERS = 4
DURATION_S = 1.0


def _dead_port() -> int:
    """A loopback port that was free a moment ago: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def _run(load: LoadSpec) -> list[RequestRecord]:
    target = Target(
        url=f"http://127.0.0.1:{_dead_port()}", model="m", protocol=ProtocolKind.OPENAI_COMPLETIONS
    )
    client = create_client(target)
    sink = ListSink()
    try:
        await run_shard(
            load,
            Shard(),
            client,
            fake_requests(worker=0),
            PhaseOutputs(sink, NullProgress(), LoadCounters("i", "load"), time.monotonic()),
        )
    finally:
        await client.aclose()
    return sink.records


async def test_users_back_off_from_a_dead_port_by_default() -> None:
    records = await _run(LoadSpec(users=USERS, duration_s=DURATION_S, ramp_up_s=0.0))
    assert records and all(r.error_kind == "connect" for r in records if r.status != "cut")
    # waits of 0.05, 0.1, 0.2, 0.4 s: a user sends at 0, 0.05, 0.15, 0.35, 0.75 s, no more
    assert len(records) <= USERS * 6, len(records)
    default = Backoff()
    for user in range(USERS):
        mine = sorted((r for r in records if r.user == user), key=lambda r: r.t_scheduled_s)
        for k, (previous, current) in enumerate(itertools.pairwise(mine), start=1):
            assert previous.t_end_s is not None
            # scheduled when the wait ended: the wait is the user's own, never client lag
            assert current.t_scheduled_s >= previous.t_end_s + default.delay_s(k) * 0.99


async def test_without_a_backoff_users_retry_a_dead_port_at_once() -> None:
    load = LoadSpec(users=USERS, duration_s=DURATION_S, ramp_up_s=0.0, backoff=None)
    records = await _run(load)
    assert len(records) > 100  # a refused connect takes well under a millisecond
