"""Reading an InferenceService's status: ready, failed, or still pending (pure functions).

Terms: *ready* means the ``Ready`` condition is ``True``; its ``lastTransitionTime`` (the API
server's clock, 1 s resolution) is the ready time. *Failed* means it will not become ready by
waiting: KServe's model status says the model failed to load (``activeModelState: FailedToLoad``,
``transitionStatus: BlockedByFailedLoad`` or ``InvalidSpec``; KServe sets these too when the
predictor container crash-loops, with the container's exit code and last message in
``lastFailureInfo``), or the ``Ready`` / ``PredictorReady`` condition is ``False`` with a reason
from a configured set (e.g. Knative's ``RevisionFailed``), or a message naming ``CrashLoopBackOff``
(clusters whose KServe predates model status). Anything else is *pending*.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

_FAILED_TRANSITIONS = ("BlockedByFailedLoad", "InvalidSpec")
_WATCHED_CONDITIONS = ("Ready", "PredictorReady")


class Phase(enum.StrEnum):
    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class IsvcState:
    phase: Phase
    ready_at: datetime | None  # the Ready condition's lastTransitionTime when ready
    url: str | None  # status.url
    address_url: str | None  # status.address.url
    reason: str | None  # why it failed, or what it waits for (last condition), for messages


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 API timestamp (``2024-01-17T16:35:12Z``) as aware UTC; None if absent/bad."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _conditions(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    found: dict[str, Mapping[str, Any]] = {}
    for item in status.get("conditions") or ():
        if isinstance(item, Mapping) and isinstance(item.get("type"), str):
            found[item["type"]] = item
    return found


def _describe(condition: Mapping[str, Any]) -> str:
    text = f"{condition.get('type')}={condition.get('status')}"
    if condition.get("reason"):
        text += f" ({condition['reason']})"
    if condition.get("message"):
        text += f": {condition['message']}"
    return text


def _model_failure(status: Mapping[str, Any]) -> str | None:
    model = _mapping(status.get("modelStatus"))
    states = _mapping(model.get("states"))
    if (
        states.get("activeModelState") != "FailedToLoad"
        and model.get("transitionStatus") not in _FAILED_TRANSITIONS
    ):
        return None
    info = _mapping(model.get("lastFailureInfo"))
    text = f"FailedToLoad ({model.get('transitionStatus') or 'no transition status'})"
    if info.get("reason"):
        text += f": {info['reason']}"
    if info.get("message"):
        text += f": {info['message']}"
    if info.get("exitCode") is not None:
        text += f" (exit code {info['exitCode']})"
    return text


def isvc_state(obj: Mapping[str, Any], fail_reasons: Collection[str]) -> IsvcState:
    status = _mapping(obj.get("status"))
    url = status.get("url") if isinstance(status.get("url"), str) else None
    address = _mapping(status.get("address")).get("url")
    address_url = address if isinstance(address, str) else None
    conditions = _conditions(status)
    ready = conditions.get("Ready")
    if ready is not None and ready.get("status") == "True":
        return IsvcState(
            Phase.READY, parse_time(ready.get("lastTransitionTime")), url, address_url, None
        )
    failure = _model_failure(status)
    if failure is None:
        for kind in _WATCHED_CONDITIONS:
            condition = conditions.get(kind)
            if condition is None or condition.get("status") != "False":
                continue
            if condition.get("reason") in fail_reasons or "CrashLoopBackOff" in str(
                condition.get("message") or ""
            ):
                failure = _describe(condition)
                break
    if failure is not None:
        return IsvcState(Phase.FAILED, None, url, address_url, failure)
    waiting = _describe(ready) if ready is not None else "no Ready condition yet"
    return IsvcState(Phase.PENDING, None, url, address_url, waiting)
