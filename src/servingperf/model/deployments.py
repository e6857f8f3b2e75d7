"""Deployment records: one per model instance a platform deployed (DESIGN.md §3, "Load time").

``created_at`` / ``ready_at`` are wall-clock UTC from the platform's own clock when it has one
(Kubernetes: ``creationTimestamp`` and the Ready condition's ``lastTransitionTime``, 1 s resolution),
else from the harness; ``clock_source`` says which. ``t_*_s`` are the harness's own observations on its
monotonic clock, as offsets from the run's ``t0`` (sub-second).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class DeploymentStatus(enum.StrEnum):
    CREATED = "created"
    READY = "ready"
    FAILED = "failed"
    DELETED = "deleted"


@dataclass(slots=True)
class DeploymentRecord:
    """One instance's deployment, filled in as it goes: a new record has only its identity."""

    instance: str
    namespace: str
    model: str
    platform: str
    clock_source: str  # "platform" | "harness"
    endpoint: str | None = None
    created_at: datetime | None = None
    ready_at: datetime | None = None
    t_created_s: float | None = None
    t_ready_s: float | None = None
    t_first_validated_s: float | None = None
    t_deleted_s: float | None = None
    status: str = DeploymentStatus.CREATED.value
    failure_reason: str | None = None
    validations_ok: int = 0
    validations_failed: int = 0

    @property
    def load_time_s(self) -> float | None:
        """ready - created on the platform clock (DESIGN.md §3); None if never ready."""
        if self.created_at is None or self.ready_at is None:
            return None
        return (self.ready_at - self.created_at).total_seconds()
