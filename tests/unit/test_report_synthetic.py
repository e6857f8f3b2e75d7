"""Synthetic runs for the report tests: request records, ``summary.json`` and ``run.json`` dicts.

``synthetic_run`` draws a plausible single-model run with a fixed seed: per-model TTFT and TPOT,
requested output lengths, failed requests of two kinds, and requests cut at the end. Records are
built with the shared ``tests.fakes.records`` builder, and the summary is computed by the real
:func:`servingperf.analysis.summary.summarize_run`, so the report is tested on exactly what a run
writes. The module also tests the helper itself, so that a broken helper cannot pass silently.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from servingperf.analysis.summary import summarize_run
from servingperf.model.records import RequestRecord
from servingperf.results.rundir import PhaseWindow, RunInfo
from tests.fakes.records import record, table

PROFILES = {  # model: (ttft_s, tpot_s)
    "flan-t5-small": (0.030, 0.004),
    "flan-t5-large": (0.060, 0.009),
    "bloom-560m": (0.050, 0.012),
    "mpt-7b-instruct2": (0.150, 0.035),
}
REQUESTED = (16, 32, 64, 128, 256)
RAMP_S = 5.0
PHASE = "load"


def _instance_records(
    rng: np.random.Generator,
    instance: str,
    model: str,
    n: int,
    duration_s: float,
    error_every: int,
    error_message: str,
) -> list[RequestRecord]:
    ttft0, tpot0 = PROFILES.get(model, (0.1, 0.02))
    out: list[RequestRecord] = []
    for k in range(n):
        scheduled = float(rng.uniform(0.0, duration_s))
        sent = scheduled + float(rng.exponential(0.0005))
        requested = int(rng.choice(REQUESTED))
        ttft = ttft0 * float(rng.lognormal(0.0, 0.25))
        tpot = tpot0 * (1 + requested / 512) * float(rng.lognormal(0.0, 0.15))
        common: dict[str, Any] = {
            "request_id": f"{instance}-{k:06d}",
            "instance": instance,
            "model": model,
            "phase": PHASE,
            "worker": k % 2,
            "user": k % 16,
            "prompt_index": k % 32,
            "requested_output_tokens": requested,
            "input_tokens": 20 + k % 300,
            "t_scheduled_s": scheduled,
            "t_sent_s": sent,
        }
        if error_every and k % error_every == error_every - 1:
            kind = "timeout" if (k // error_every) % 3 == 0 else "http_status"
            out.append(
                record(
                    **common,
                    t_end_s=sent + (5.0 if kind == "timeout" else 0.02),
                    status="error",
                    error_kind=kind,
                    error_message=f"{error_message} ({kind})",
                )
            )
            continue
        first = sent + ttft
        end = first + tpot * (requested - 1)
        cut = end > duration_s
        offsets = [ttft + tpot * j for j in range(min(requested, 8))]
        out.append(
            record(
                **common,
                output_tokens=requested,
                t_first_token_s=first,
                t_first_content_s=first,
                t_end_s=None if cut else end,
                chunk_offsets_s=offsets,
                chunk_tokens=[1] * len(offsets),
                status="cut" if cut else "ok",
                error_kind="cut" if cut else None,
                finish_reason=None if cut else "length",
            )
        )
    return out


def synthetic_run(
    models: tuple[str, ...] = ("flan-t5-small", "mpt-7b-instruct2"),
    requests_per_instance: int = 300,
    *,
    duration_s: float = 60.0,
    error_every: int = 50,
    seed: int = 7,
    labels: dict[str, str] | None = None,
    error_message: str = "HTTP 503: overloaded",
) -> tuple[dict[str, Any], dict[str, Any], pa.Table]:
    """(run_info, summary, records) of a made-up run: one instance per model, a 5 s ramp-up.

    A model name may be anything (hostile names included); its instance name is derived from it.
    """
    rng = np.random.default_rng(seed)
    records: list[RequestRecord] = []
    phases: list[PhaseWindow] = []
    for index, model in enumerate(models):
        instance = model if model in PROFILES else f"instance-{index}"
        records += _instance_records(
            rng, instance, model, requests_per_instance, duration_s, error_every, error_message
        )
        phases.append(PhaseWindow(instance, PHASE, 0.0, RAMP_S, duration_s, duration_s + 1.0))
    info = RunInfo(
        run_id="20240117-163500-abcd",
        scenario="single-model-demo",
        kind="single-model",
        started_at="2024-01-17T16:35:00.000000+00:00",
        t0_monotonic=1000.0,
        labels=dict(labels or {"release": "2.5.0"}),
        config={
            "name": "single-model-demo",
            "models": [{"name": m, "emulator": {"profile": m}} for m in models],
            "load": {"users": 16, "duration_s": duration_s, "ramp_up_s": RAMP_S},
            "dataset": {"kind": "bundled", "prompts": 32},
        },
        environment={"host": "test-host", "python": "3.11.2", "servingperf": "0.1.0", "cpus": 2},
        status="complete",
        ended_at="2024-01-17T16:36:01.000000+00:00",
        phases=phases,
    )
    records_table = table(*records)
    summary = summarize_run(info, records_table)
    return info.to_json(), summary, records_table


def test_synthetic_run_is_consistent() -> None:
    _, summary, records = synthetic_run(requests_per_instance=120)
    assert records.num_rows == 240
    assert set(records.column("status").to_pylist()) == {"ok", "error", "cut"}
    for entry in summary["instances"].values():
        counts = entry["counts"]
        assert counts["error"] > 0
        assert entry["stats"]["e2e_s"]["n"] == counts["measured"] > 0
