"""The worker contract as data: the spec survives JSON without its secret, counters merge,
factories are imported by name."""

from __future__ import annotations

import dataclasses
import re

import pytest

from servingperf.load.sinks import LoadCounters
from servingperf.load.worker import TOKEN_ENV, WorkerSpec, import_object, merged
from servingperf.model.specs import LoadSpec, ProtocolKind
from servingperf.model.target import Target


def _spec(token: str | None = "s3cret") -> WorkerSpec:
    return WorkerSpec(
        index=1,
        count=4,
        instance="small",
        phase="load",
        load=LoadSpec(schedule={"kind": "rate", "rate_rps": 5}).model_dump(mode="json"),
        target=Target(
            url="http://127.0.0.1:9",
            model="m",
            protocol=ProtocolKind.OPENAI_CHAT,
            token=token,
            extra_headers=(("X-A", "1"),),
        ),
        client_factory="servingperf.protocols.registry:create_client",
        requests_factory="tests.fakes.clients:fake_requests",
        requests_args={"phase": "load"},
        records_dir="/tmp/records",
        t0_monotonic=123.0,
        t0_unix=1.7e9,
    )


def test_spec_round_trips_through_json_without_the_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = _spec()
    text = spec.to_json()
    assert "s3cret" not in text
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    back = WorkerSpec.from_json(text)
    assert back == dataclasses.replace(spec, target=dataclasses.replace(spec.target, token=None))
    assert back.worker == 2  # records of shard 1 say worker 2; 0 is a run without workers
    assert LoadSpec.model_validate(back.load).schedule.kind == "rate"


def test_a_worker_on_another_host_reads_the_token_from_its_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "from-a-secret")
    assert WorkerSpec.from_json(_spec().to_json()).target.token == "from-a-secret"


def test_counters_of_all_workers_add_up() -> None:
    a = LoadCounters("i", "p", issued=3, ok=2, errors=1, cut=0, output_tokens=20, in_flight=1)
    b = LoadCounters("i", "p", issued=4, ok=1, errors=0, cut=2, output_tokens=5, in_flight=0)
    total = merged({0: a, 1: b}, "i", "p")
    assert (total.issued, total.ok, total.errors, total.cut) == (7, 3, 1, 2)
    assert (total.output_tokens, total.in_flight) == (25, 1)


def test_factories_are_imported_by_name() -> None:
    assert import_object("tests.fakes.clients:fake_requests").__name__ == "fake_requests"
    with pytest.raises(ValueError, match=re.escape("is not 'package.module:name'")):
        import_object("tests.fakes.clients")
    with pytest.raises(AttributeError):
        import_object("tests.fakes.clients:nothing_here")
