"""The multi-model scenario's pure parts: per-instance loads, worker shares, the common window
and the combined progress line."""

from __future__ import annotations

import pytest

from servingperf.config import parse_scenario
from servingperf.errors import ConfigError
from servingperf.load.engine import PhaseTiming
from servingperf.load.sinks import LoadCounters
from servingperf.model.specs import LoadSpec, ScenarioSpec
from servingperf.scenarios.multi_model import (
    CombinedProgress,
    common_window,
    instance_load,
    instance_requests,
    workers_per_instance,
)


def test_each_instance_has_its_own_seed_and_the_same_load_otherwise() -> None:
    load = LoadSpec(users=3, duration_s=5, ramp_up_s=1, seed=7)
    first, second = instance_load(load, 0), instance_load(load, 1)
    assert (first.seed, second.seed) == (7, 8)
    assert first.model_dump(exclude={"seed"}) == second.model_dump(exclude={"seed"})


def test_workers_share_the_cores_unless_given() -> None:
    assert workers_per_instance(LoadSpec(), instances=8, cores=2) == 1
    assert workers_per_instance(LoadSpec(), instances=2, cores=8) == 4
    assert workers_per_instance(LoadSpec(workers=3), instances=8, cores=2) == 3


def test_the_common_window_is_where_every_instance_was_measured() -> None:
    timings = [
        PhaseTiming(0.0, 1.0, 11.0, 11.1, False),
        PhaseTiming(0.5, 1.5, 11.4, 11.5, False),
    ]
    assert common_window(timings) == (1.5, 11.0)
    stopped = [PhaseTiming(0.0, 1.0, 1.2, 1.3, True), PhaseTiming(0.0, 2.0, 2.5, 2.6, False)]
    assert common_window(stopped) == (2.0, 2.0)  # no overlap: an empty window, never negative


class _Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, int, int]] = []

    def phase_started(self, counters: LoadCounters, duration_s: float) -> None:
        self.events.append(("start", counters.ok, counters.output_tokens))

    def tick(self, counters: LoadCounters, elapsed_s: float) -> None:
        self.events.append(("tick", counters.ok, counters.output_tokens))

    def phase_ended(self, counters: LoadCounters) -> None:
        self.events.append(("end", counters.ok, counters.output_tokens))


def test_one_progress_line_sums_the_instances() -> None:
    inner = _Recorder()
    combined = CombinedProgress(inner, "concurrent", 2)
    a, b = combined.member(), combined.member()
    ca, cb = LoadCounters("a", "concurrent"), LoadCounters("b", "concurrent")
    a.phase_started(ca, 10.0)
    b.phase_started(cb, 10.0)
    ca.ok, ca.output_tokens = 2, 20
    cb.ok, cb.output_tokens = 3, 30
    a.tick(ca, 1.0)
    a.phase_ended(ca)
    assert [e[0] for e in inner.events] == ["start", "tick"]  # b still runs
    b.phase_ended(cb)
    combined.close()  # already ended: nothing more
    assert inner.events == [("start", 0, 0), ("tick", 5, 50), ("end", 5, 50)]


def test_a_line_left_open_by_a_failure_is_closed() -> None:
    inner = _Recorder()
    combined = CombinedProgress(inner, "concurrent", 2)
    combined.member().phase_started(LoadCounters("a", "concurrent"), 1.0)
    combined.close()
    assert [e[0] for e in inner.events] == ["start", "end"]


def _scenario(models: str, platform: str = "local") -> ScenarioSpec:
    return parse_scenario(
        f"name: s\nkind: multi-model\nplatform: {{kind: {platform}}}\nmodels:\n{models}", "s.yaml"
    )


def test_instances_sharing_a_device_list_its_model_ids() -> None:
    spec = _scenario(
        "  - {name: a, emulator: {profile: flan-t5-small, device: gpu0}}\n"
        "  - {name: b, model_id: other, emulator: {profile: flan-t5-small, device: gpu0}}\n"
        "  - {name: c, emulator: {profile: flan-t5-small, device: gpu0}}\n"
        "  - {name: d, emulator: {profile: bloom-560m, device: gpu1}}\n"
        "  - {name: e, emulator: {profile: bloom-560m}}\n"
    )
    requests = instance_requests(spec)
    assert [r.name for r in requests] == ["a", "b", "c", "d", "e"]
    assert [r.seed for r in requests] == [0, 1, 2, 3, 4]
    shared = ("flan-t5-small", "other")  # a and c send the same id: served once
    assert [r.device_model_ids for r in requests] == [shared, shared, shared, (), ()]


def test_instances_of_a_device_with_different_settings_are_refused_before_deploying() -> None:
    spec = _scenario(
        "  - {name: a, emulator: {profile: flan-t5-small, device: gpu0}}\n"
        "  - {name: b, emulator: {profile: flan-t5-small, device: gpu0, load_time_s: 1}}\n"
    )
    with pytest.raises(ConfigError, match=r"models\[1\] \(b\) shares device 'gpu0' with a"):
        instance_requests(spec)
