"""Reading InferenceService statuses: ready with the API server's time, failed with a reason,
or pending; and the readiness tracker settling each instance exactly once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from servingperf.model.deployments import DeploymentRecord
from servingperf.model.kserve_spec import DEFAULT_FAIL_REASONS
from servingperf.model.specs import ModelSpec
from servingperf.platforms.base import Instance, InstanceRequest
from servingperf.platforms.kserve_status import IsvcState, Phase, isvc_state, parse_time
from servingperf.platforms.kserve_watch import ReadinessTracker

REASONS = frozenset(DEFAULT_FAIL_REASONS)


def isvc(status: dict[str, Any], name: str = "m", rv: str = "5") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": "u-" + name, "resourceVersion": rv},
        "status": status,
    }


def cond(kind: str, status: str, reason: str = "", message: str = "") -> dict[str, Any]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2024-01-17T16:35:12Z",
    }


def test_ready_takes_the_ready_conditions_time_and_urls() -> None:
    state = isvc_state(
        isvc(
            {
                "conditions": [cond("PredictorReady", "True"), cond("Ready", "True")],
                "url": "https://m-ns.apps.example.com",
                "address": {"url": "http://m-predictor.ns.svc.cluster.local"},
            }
        ),
        REASONS,
    )
    assert state.phase is Phase.READY
    assert state.ready_at == datetime(2024, 1, 17, 16, 35, 12, tzinfo=UTC)
    assert state.url == "https://m-ns.apps.example.com"
    assert state.address_url == "http://m-predictor.ns.svc.cluster.local"


def test_failed_to_load_gives_the_reason_message_and_exit_code() -> None:
    state = isvc_state(
        isvc(
            {
                "conditions": [cond("Ready", "False", "RevisionMissing")],
                "modelStatus": {
                    "transitionStatus": "BlockedByFailedLoad",
                    "states": {"activeModelState": "FailedToLoad"},
                    "lastFailureInfo": {
                        "reason": "ModelLoadFailed",
                        "message": "OOMKilled",
                        "exitCode": 137,
                    },
                },
            }
        ),
        REASONS,
    )
    assert state.phase is Phase.FAILED
    assert state.reason == (
        "FailedToLoad (BlockedByFailedLoad): ModelLoadFailed: OOMKilled (exit code 137)"
    )


def test_crash_loop_in_a_condition_fails_at_once() -> None:
    message = "back-off 5m0s restarting failed container (CrashLoopBackOff)"
    state = isvc_state(
        isvc({"conditions": [cond("PredictorReady", "False", "X", message)]}), REASONS
    )
    assert state.phase is Phase.FAILED
    assert state.reason is not None
    assert "CrashLoopBackOff" in state.reason


def test_transient_false_conditions_keep_waiting() -> None:
    waiting = isvc_state(
        isvc({"conditions": [cond("Ready", "False", "RevisionMissing", "not ready yet")]}), REASONS
    )
    assert waiting.phase is Phase.PENDING
    assert waiting.reason == "Ready=False (RevisionMissing): not ready yet"
    assert isvc_state(isvc({}), REASONS).reason == "no Ready condition yet"
    revision_failed = isvc_state(
        isvc({"conditions": [cond("Ready", "False", "RevisionFailed", "image pull")]}), REASONS
    )
    assert revision_failed.phase is Phase.FAILED
    # The configured set decides: without RevisionFailed in it, the same status is pending.
    assert isvc_state(revision_failed_obj(), frozenset()).phase is Phase.PENDING


def revision_failed_obj() -> dict[str, Any]:
    return isvc({"conditions": [cond("Ready", "False", "RevisionFailed", "image pull")]})


def test_parse_time() -> None:
    assert parse_time("2024-01-17T16:35:12Z") == datetime(2024, 1, 17, 16, 35, 12, tzinfo=UTC)
    assert parse_time("2024-01-17T16:35:12.5+01:00") == datetime(
        2024, 1, 17, 15, 35, 12, 500000, tzinfo=UTC
    )
    assert parse_time("") is None
    assert parse_time(None) is None
    assert parse_time("yesterday") is None


def instance(name: str) -> Instance:
    model = ModelSpec.model_validate({"name": name, "endpoint": {"url": "http://x"}})
    record = DeploymentRecord(
        instance=name,
        namespace="ns",
        model=name,
        platform="kserve",
        endpoint=None,
        clock_source="platform",
        created_at=None,
        ready_at=None,
        t_created_s=None,
        t_ready_s=None,
        t_first_validated_s=None,
        t_deleted_s=None,
        status="created",
        failure_reason=None,
    )
    return Instance(InstanceRequest(name=name, namespace="ns", model=model), record)


def test_tracker_settles_once_and_ignores_strangers() -> None:
    seen: list[str] = []

    def on_ready(inst: Instance, state: IsvcState) -> str | None:
        seen.append(inst.request.name)
        inst.url = state.url
        return None

    tracker = ReadinessTracker(REASONS, on_ready)
    a, b = instance("a"), instance("b")
    wa = tracker.register("ns", "a", a)
    wb = tracker.register("ns", "b", b)
    ready = {"conditions": [cond("Ready", "True")], "url": "http://a"}
    tracker.on_object(isvc({"conditions": [cond("Ready", "Unknown")]}, "a", "6"), 1.0)
    assert not wa.done.is_set()
    assert wa.state is not None
    assert wa.state.phase is Phase.PENDING
    tracker.on_object(isvc(ready, "a", "7"), 2.0)
    tracker.on_object(isvc(ready, "a", "8"), 3.0)  # a later event: already settled
    tracker.on_object(isvc(ready, "stranger", "9"), 3.0)
    assert wa.done.is_set()
    assert a.record.status == "ready"
    assert a.record.t_ready_s == 2.0
    assert a.record.ready_at == datetime(2024, 1, 17, 16, 35, 12, tzinfo=UTC)
    assert seen == ["a"]
    assert tracker.counts.ready == 1
    assert tracker.counts.unknown == 1
    tracker.on_deleted("ns", "b", 4.0)
    assert wb.failure == "the InferenceService was deleted while starting"
    assert b.record.status == "failed"
    tracker.on_watch_failed("watch broke")
    late = tracker.register("ns", "c", instance("c"))
    assert late.failure == "watch broke"
    assert tracker.counts.failed == 2


def test_tracker_fails_a_ready_instance_without_an_endpoint() -> None:
    tracker = ReadinessTracker(REASONS, lambda inst, state: "ready, but status.url is empty")
    waiter = tracker.register("ns", "a", instance("a"))
    tracker.on_object(isvc({"conditions": [cond("Ready", "True")]}, "a"), 1.0)
    assert waiter.failure == "ready, but status.url is empty"
