"""The peer views ``servingperf summarize --as NAME`` offers, and how a run is viewed.

Explicit registry (no discovery): a new peer is one module with ``NAME``, ``SOURCE``,
``DIVERGENCES`` and ``view(requests, window)``, and one line in :data:`PEERS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType, ModuleType
from typing import Any

import pyarrow as pa

from servingperf.analysis.peers import aiperf, guidellm, inference_perf, vllm_bench
from servingperf.analysis.peers.requests import Requests
from servingperf.analysis.peers.view import Divergence, PeerFigure, Source, WindowView
from servingperf.analysis.summary import (
    NON_LOAD_PHASES,
    phase_records,
    summarize_window,
    window_key,
)
from servingperf.errors import ConfigError
from servingperf.results.rundir import PhaseWindow, RunInfo

ViewFn = Callable[[Requests, PhaseWindow], tuple[list[PeerFigure], dict[str, int]]]


@dataclass(frozen=True, slots=True)
class Peer:
    name: str
    source: Source
    divergences: tuple[Divergence, ...]
    view: ViewFn


def _peer(module: ModuleType) -> Peer:
    return Peer(module.NAME, module.SOURCE, module.DIVERGENCES, module.view)


PEERS: Mapping[str, Peer] = MappingProxyType(
    {p.name: p for p in map(_peer, (vllm_bench, guidellm, inference_perf, aiperf))}
)


def peer(name: str) -> Peer:
    try:
        return PEERS[name]
    except KeyError:
        raise ConfigError(f"--as {name!r}: unknown peer; known: {', '.join(PEERS)}") from None


@dataclass(frozen=True, slots=True)
class RunView:
    peer: Peer
    windows: tuple[WindowView, ...]
    ours: Mapping[str, Mapping[str, float | None]]  # window key -> our figure -> value

    def to_json(self) -> dict[str, Any]:
        source = self.peer.source
        return {
            "peer": self.peer.name,
            "source": {
                "tool": source.tool,
                "version": source.version,
                "repository": source.repository,
                "commit": source.commit,
                "files": list(source.files),
            },
            "windows": [
                {**w.to_json(), "ours": dict(self.ours.get(w.key, {}))} for w in self.windows
            ],
            "divergences": [
                {"aspect": d.aspect, "ours": d.ours, "theirs": d.theirs, "gap": d.gap}
                for d in self.peer.divergences
            ],
        }


def view_run(info: RunInfo, table: pa.Table, name: str) -> RunView:
    """``name``'s view of every load window of the run (records of that instance and phase)."""
    chosen = peer(name)
    windows = []
    ours: dict[str, dict[str, float | None]] = {}
    for window in info.phases:
        if window.phase in NON_LOAD_PHASES:
            continue
        records = phase_records(table, window)
        key = window_key(window)
        figures, counts = chosen.view(Requests.of(records), window)
        windows.append(WindowView(key, tuple(figures), counts))
        ours[key] = our_figures(summarize_window(records, window, None))
    return RunView(chosen, tuple(windows), ours)


_RATES = {
    "output_throughput_tps": "output_tps",
    "input_throughput_tps": "input_tps",
    "request_throughput_rps": "request_rps",
}


def our_figures(entry: Mapping[str, Any]) -> dict[str, float | None]:
    """Our figures of one summary entry by the names peer figures refer to (``ttft_s.p50``)."""
    result: dict[str, float | None] = {}
    for metric, stats in entry.get("stats", {}).items():
        for stat in ("mean", "p50", "p90", "p95", "p99"):
            result[f"{metric}.{stat}"] = stats[stat] if stats else None
    for name, key in _RATES.items():
        result[name] = entry.get("throughput", {}).get(key)
    return result
