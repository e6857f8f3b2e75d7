"""Per-request decomposition (pure): where each request's time went, from its record and the
server's span for it, joined by request id.

Terms. The client sends its record's ``request_id`` as ``X-Request-Id``; vLLM names the request
``cmpl-<id>-<n>`` (completions) or ``chatcmpl-<id>`` (chat) in its span's ``gen_ai.request.id``:
:func:`record_id_of` undoes that. Parts of a request's client E2E latency (end - sent):
``queue_s`` (waiting for a batch slot), ``prefill_s`` (admission to first token), ``decode_s``
(first to last token), all three as the server measured them, and ``other_s`` = E2E - their sum:
what neither engine phase accounts for (network both ways, HTTP and detokenisation in the server,
the client's own reading). Only ok records with a span are decomposed.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

PARTS = ("queue_s", "prefill_s", "decode_s", "other_s")
_PREFIXES = ("chatcmpl-", "cmpl-")
_SUFFIX = re.compile(r"-\d+$")

DECOMPOSITION_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("instance", pa.string()),
        ("phase", pa.string()),
        ("e2e_s", pa.float64()),
        ("queue_s", pa.float64()),
        ("prefill_s", pa.float64()),
        ("decode_s", pa.float64()),
        ("other_s", pa.float64()),
        ("server_e2e_s", pa.float64()),
    ]
)


def record_id_of(span_request_id: str, known: set[str] | frozenset[str]) -> str | None:
    """The record id a server's request id names, if it is one of ``known``."""
    candidates = [span_request_id]
    for prefix in _PREFIXES:
        if span_request_id.startswith(prefix):
            stripped = span_request_id[len(prefix) :]
            candidates += [stripped, _SUFFIX.sub("", stripped)]
            break
    for candidate in candidates:
        if candidate in known:
            return candidate
    return None


def decompose(records: pa.Table, spans: pa.Table) -> pa.Table:
    """One DECOMPOSITION_SCHEMA row per ok record that has a span (the first span wins)."""
    if records.num_rows == 0 or spans.num_rows == 0:
        return DECOMPOSITION_SCHEMA.empty_table()
    ok = records.filter(pc.equal(records["status"], "ok"))
    ids = ok["request_id"].to_pylist()
    index = {rid: i for i, rid in enumerate(ids)}
    known = frozenset(index)
    span_cols = spans.select(["span_request_id", "queue_s", "prefill_s", "decode_s", "e2e_s"])
    found: dict[str, tuple[Any, ...]] = {}
    for sid, queue, prefill, decode, e2e in zip(*span_cols.to_pydict().values(), strict=True):
        rid = record_id_of(sid, known)
        if rid is not None and rid not in found:
            found[rid] = (queue, prefill, decode, e2e)
    instance = ok["instance"].to_pylist()
    phase = ok["phase"].to_pylist()
    sent = ok["t_sent_s"].to_pylist()
    end = ok["t_end_s"].to_pylist()
    columns: dict[str, list[Any]] = {name: [] for name in DECOMPOSITION_SCHEMA.names}
    for rid, (queue, prefill, decode, server_e2e) in found.items():
        i = index[rid]
        if sent[i] is None or end[i] is None or None in (queue, prefill, decode):
            continue
        e2e = end[i] - sent[i]
        columns["request_id"].append(rid)
        columns["instance"].append(instance[i])
        columns["phase"].append(phase[i])
        columns["e2e_s"].append(e2e)
        columns["queue_s"].append(queue)
        columns["prefill_s"].append(prefill)
        columns["decode_s"].append(decode)
        columns["other_s"].append(e2e - queue - prefill - decode)
        columns["server_e2e_s"].append(server_e2e)
    return pa.Table.from_pydict(columns, schema=DECOMPOSITION_SCHEMA)


def decomposition_summary(table: pa.Table, records: pa.Table) -> list[dict[str, Any]]:
    """Per instance and phase: requests joined, ok requests, and each part's mean and share of
    the mean E2E latency."""
    out = []
    ok = records.filter(pc.equal(records["status"], "ok")) if records.num_rows else records
    totals: dict[tuple[str, str], int] = {}
    for inst, ph in zip(ok["instance"].to_pylist(), ok["phase"].to_pylist(), strict=True):
        totals[(inst, ph)] = totals.get((inst, ph), 0) + 1
    data = table.to_pydict()
    groups: dict[tuple[str, str], list[int]] = {}
    for i, key in enumerate(zip(data["instance"], data["phase"], strict=True)):
        groups.setdefault(key, []).append(i)
    for (instance, phase), rows in sorted(groups.items()):
        e2e = float(np.mean([data["e2e_s"][i] for i in rows]))
        entry: dict[str, Any] = {
            "instance": instance,
            "phase": phase,
            "joined": len(rows),
            "ok": totals.get((instance, phase), 0),
            "e2e_mean_s": e2e,
        }
        for part in PARTS:
            mean = float(np.mean([data[part][i] for i in rows]))
            entry[f"{part.removesuffix('_s')}_mean_s"] = mean
            entry[f"{part.removesuffix('_s')}_share"] = mean / e2e if e2e > 0 else None
        out.append(entry)
    return out
