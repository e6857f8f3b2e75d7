"""Synthetic runs for report and site tests: request records, ``summary.json`` and ``run.json``.

``synthetic_run`` draws a plausible single-model run with a fixed seed: per-model TTFT and TPOT,
requested output lengths, failed requests of two kinds, and requests cut at the end. Records are
built with the shared ``tests.fakes.records`` builder, and the summary is computed by the real
:func:`servingperf.analysis.summary.summarize_run`, so the report is tested on exactly what a run
writes. ``write_run_dir`` lays such a run out as a real run directory (``run.json``, Parquet
records, ``summary.json``, optionally ``deployments.parquet`` from ``synthetic_deployments``), so
that store and site code read it through the same readers as a real run's.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from servingperf.analysis.summary import summarize_run
from servingperf.continuous.ingest import ingest
from servingperf.model.deployments import DeploymentRecord
from servingperf.model.records import RequestRecord
from servingperf.results.record_writer import write_segment
from servingperf.results.rundir import PhaseWindow, RunDir, RunInfo, write_json_atomic
from servingperf.results.store import Store
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
    slowdown: float,
) -> list[RequestRecord]:
    ttft0, tpot0 = PROFILES.get(model, (0.1, 0.02))
    ttft0, tpot0 = ttft0 * slowdown, tpot0 * slowdown
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
    slowdown: float = 1.0,
    run_id: str = "20240117-163500-abcd",
    scenario: str = "single-model-demo",
    started_at: datetime = datetime(2024, 1, 17, 16, 35, tzinfo=UTC),
    kind: str = "single-model",
) -> tuple[dict[str, Any], dict[str, Any], pa.Table]:
    """(run_info, summary, records) of a made-up run: one instance per model, a 5 s ramp-up.

    A model name may be anything (hostile names included); its instance name is derived from it.
    ``slowdown`` multiplies every model's TTFT and TPOT (a slower "release").
    """
    rng = np.random.default_rng(seed)
    records: list[RequestRecord] = []
    phases: list[PhaseWindow] = []
    for index, model in enumerate(models):
        instance = model if model in PROFILES else f"instance-{index}"
        records += _instance_records(
            rng,
            instance,
            model,
            requests_per_instance,
            duration_s,
            error_every,
            error_message,
            slowdown,
        )
        phases.append(PhaseWindow(instance, PHASE, 0.0, RAMP_S, duration_s, duration_s + 1.0))
    info = RunInfo(
        run_id=run_id,
        scenario=scenario,
        kind=kind,
        started_at=started_at.isoformat(timespec="microseconds"),
        t0_monotonic=1000.0,
        labels=dict(labels or {"release": "2.5.0"}),
        config={
            "name": scenario,
            "models": [{"name": m, "emulator": {"profile": m}} for m in models],
            "load": {"users": 16, "duration_s": duration_s, "ramp_up_s": RAMP_S},
            "dataset": {"kind": "bundled", "prompts": 32},
        },
        environment={"host": "test-host", "python": "3.11.2", "servingperf": "0.1.0", "cpus": 2},
        status="complete",
        ended_at=(started_at + timedelta(seconds=duration_s + 1.0)).isoformat(
            timespec="microseconds"
        ),
        phases=phases,
    )
    records_table = table(*records)
    summary = summarize_run(info, records_table)
    return info.to_json(), summary, records_table


def write_run_dir(
    path: Path,
    run_info: dict[str, Any],
    summary: dict[str, Any],
    records: pa.Table,
    deployments: list[DeploymentRecord] | None = None,
) -> RunDir:
    """Write the run as a run directory at ``path`` (created) and return it."""
    run_dir = RunDir(path)
    run_dir.create()
    run_dir.write_info(RunInfo.from_json(dict(run_info), "synthetic run"))
    write_segment(records, run_dir.records_dir / "part-w000-000001.parquet")
    write_json_atomic(run_dir.summary_json, summary)
    if deployments:
        run_dir.write_deployments(deployments)
    return run_dir


def synthetic_deployments(
    n: int,
    load_median_s: float,
    *,
    seed: int = 3,
    namespaces: int = 3,
    model: str = "flan-t5-small",
) -> list[DeploymentRecord]:
    """``n`` ready instances, created one second apart, load times lognormal around the median."""
    rng = np.random.default_rng(seed)
    origin = datetime(2024, 1, 17, 16, 35, tzinfo=UTC)
    out: list[DeploymentRecord] = []
    for k in range(n):
        created = origin + timedelta(seconds=k)
        load = load_median_s * float(rng.lognormal(0.0, 0.25))
        out.append(
            DeploymentRecord(
                instance=f"isvc-{k:03d}",
                namespace=f"ns-{k % namespaces}",
                model=model,
                platform="local",
                endpoint=None,
                clock_source="harness",
                created_at=created,
                ready_at=created + timedelta(seconds=load),
                t_created_s=float(k),
                t_ready_s=float(k) + load,
                t_first_validated_s=None,
                t_deleted_s=None,
                status="ready",
                failure_reason=None,
            )
        )
    return out


def record_release_history(
    store: Store,
    base_dir: Path,
    releases: Mapping[str, float],
    *,
    runs_per_release: int = 1,
    models: tuple[str, ...] = ("flan-t5-small",),
    requests_per_instance: int = 200,
    scenario: str = "single-model-demo",
    labels: Mapping[str, str] | None = None,
    load_times: Mapping[str, float] | None = None,
    kind: str = "single-model",
    first_run: int = 0,
) -> list[RunDir]:
    """Write and record one run directory per release and run, oldest release first.

    ``releases`` maps a release name to its slowdown (1.0: the reference speed); ``labels`` are
    added to every run; ``load_times`` gives a release's median instance load time (s), which
    adds a ``deployments.parquet`` to its runs. Runs are numbered from ``first_run`` and start an
    hour apart, so several calls on one store make one consistent history.
    """
    written: list[RunDir] = []
    origin = datetime(2024, 1, 17, 16, 35, tzinfo=UTC)
    for r, (release, slowdown) in enumerate(releases.items()):
        for k in range(runs_per_release):
            index = first_run + r * runs_per_release + k
            run_info, summary, records = synthetic_run(
                models=models,
                requests_per_instance=requests_per_instance,
                duration_s=20.0,
                seed=100 + index,
                slowdown=slowdown,
                labels={**(labels or {}), "release": release},
                run_id=f"{scenario[:20]}-run-{index:03d}",
                scenario=scenario,
                started_at=origin + timedelta(hours=index),
                kind=kind,
            )
            deployments = None
            if load_times and release in load_times:
                deployments = synthetic_deployments(12, load_times[release], seed=index)
            run_dir = write_run_dir(
                base_dir / f"run-{index:03d}", run_info, summary, records, deployments
            )
            ingest(store, run_dir)
            written.append(run_dir)
    return written
