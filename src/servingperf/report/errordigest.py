"""Error digest: which failures a run met, grouped so that a reader sees the few distinct messages.

Terms. A *failure sample* is one distinct (instance, error kind, message) triple among the failed
requests (status ``error``; ``cut`` requests are not failures, DESIGN.md §3) with how many requests
carried it. Messages are user-visible server text: the HTML escapes them, nothing here does.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

MESSAGE_CHARS = 300


@dataclass(frozen=True, slots=True)
class FailureSample:
    instance: str
    kind: str
    message: str
    count: int


def failure_samples(records: pa.Table, per_instance: int = 8) -> list[FailureSample]:
    """The most frequent distinct failures of each instance, most frequent first, at most
    ``per_instance`` each (a run that fails 10^5 times with one message yields one line)."""
    needed = ("instance", "status", "error_kind", "error_message")
    if any(name not in records.column_names for name in needed):
        return []
    failed = records.select(list(needed)).filter(pc.equal(records.column("status"), "error"))
    if failed.num_rows == 0:
        return []
    failed = failed.set_column(
        2, "error_kind", pc.fill_null(failed.column("error_kind"), "unknown")
    ).set_column(3, "error_message", pc.fill_null(failed.column("error_message"), ""))
    grouped = failed.group_by(["instance", "error_kind", "error_message"]).aggregate(
        [("status", "count")]
    )
    rows = sorted(
        grouped.to_pylist(),
        key=lambda r: (str(r["instance"]), -int(r["status_count"]), str(r["error_kind"])),
    )
    out: list[FailureSample] = []
    taken: dict[str, int] = {}
    for row in rows:
        instance = str(row["instance"])
        if taken.get(instance, 0) >= per_instance:
            continue
        taken[instance] = taken.get(instance, 0) + 1
        message = str(row["error_message"])
        if len(message) > MESSAGE_CHARS:
            message = message[: MESSAGE_CHARS - 1] + "…"
        out.append(
            FailureSample(instance, str(row["error_kind"]), message, int(row["status_count"]))
        )
    return out
