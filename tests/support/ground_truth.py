"""Client records against the emulator's server-side ground truth: the one comparison every
protocol's integration test uses (OpenAI HTTP, gRPC, KServe v2).

Client and server run on the same host, so both clocks are the same CLOCK_MONOTONIC. Per request,
client TTFT (first token received - sent) is compared with server TTFT (first token written -
arrival), and client TPOT with server TPOT ((end - first token written) / (N - 1)). The difference
is what the harness adds: loopback transit plus event-loop delay on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from servingperf.emulator.groundtruth import GroundTruthRecord, read_ground_truth


@dataclass
class Comparison:
    matched: int = 0
    missing_on_server: list[str] = field(default_factory=list)
    token_mismatches: list[tuple[str, int, int]] = field(default_factory=list)
    ttft_error_s: list[float] = field(default_factory=list)
    tpot_error_s: list[float] = field(default_factory=list)

    def worst(self, values: list[float]) -> float:
        return float(np.max(np.abs(values))) if values else 0.0

    def median(self, values: list[float]) -> float:
        return float(np.median(np.abs(values))) if values else 0.0


def load_ground_truth(paths: list[Path]) -> dict[str, GroundTruthRecord]:
    truth: dict[str, GroundTruthRecord] = {}
    for path in paths:
        for item in read_ground_truth(path):
            truth[item.request_id] = item
    return truth


def compare(records: pa.Table, truth: dict[str, GroundTruthRecord]) -> Comparison:
    """Compare every ok record with its server line (matched by request id)."""
    result = Comparison()
    for row in records.to_pylist():
        if row["status"] != "ok":
            continue
        server = truth.get(row["request_id"])
        if server is None:
            result.missing_on_server.append(row["request_id"])
            continue
        result.matched += 1
        if row["output_tokens"] != server.output_tokens:
            result.token_mismatches.append(
                (row["request_id"], row["output_tokens"], server.output_tokens)
            )
        if not row["streamed"]:
            assert row["t_first_token_s"] is None, "non-streamed TTFT must be absent"
            continue
        if server.first_token_written is None or server.end is None:
            continue
        client_ttft = row["t_first_token_s"] - row["t_sent_s"]
        server_ttft = server.first_token_written - server.arrival
        result.ttft_error_s.append(client_ttft - server_ttft)
        n = row["output_tokens"]
        if n >= 2:
            client_tpot = (row["t_end_s"] - row["t_first_token_s"]) / (n - 1)
            server_tpot = (server.end - server.first_token_written) / (n - 1)
            result.tpot_error_s.append(client_tpot - server_tpot)
    return result
