"""Running a scenario from the command line, shared by ``run``, ``ci`` and ``demo``: live progress,
Ctrl-C as a graceful stop, kept platforms released, the end-of-run tables, recording in the store.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from servingperf.cli.common import console, fail, out, run_async
from servingperf.errors import ServingPerfError


def print_summary(summary: dict[str, Any]) -> None:
    """The summary table, then a sweep's stages and verdict when the run was a sweep."""
    from servingperf.cli.tables import summary_table, sweep_tables

    out.print(summary_table(summary))
    for table in sweep_tables(summary):
        out.print(table)
    _note_token_mismatches(summary)
    validity = summary.get("validity")
    if isinstance(validity, dict):
        usage = validity.get("client_usage_max")
        used = f"; the client used {usage:.1%} of what it can issue" if usage is not None else ""
        out.print(f"validity: {validity.get('verdict')}{used}", markup=False)
        for reason in validity.get("reasons", [])[:10]:
            out.print(f"  {reason}", markup=False)


def _note_token_mismatches(summary: dict[str, Any]) -> None:
    """Say which instances' servers gave usage counts that differ from what they streamed."""
    for key, entry in (summary.get("instances") or {}).items():
        tokens = entry.get("token_counts") or {}
        mismatched = int(tokens.get("mismatched") or 0)
        measured = int((entry.get("counts") or {}).get("measured") or 0)
        if mismatched and measured:
            console.print(
                f"note: {key}: {mismatched} of {measured} measured requests"
                f" ({100 * mismatched / measured:.1f}%) have a usage count that differs from the"
                f" streamed count ({tokens.get('mismatched_usage_tokens')} tokens by usage,"
                f" {tokens.get('mismatched_stream_tokens')} streamed); N comes from"
                " tokens.output_tokens_from",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )


def record_run(run_dir: Any, store: str | None) -> None:
    from servingperf.continuous.ingest import ingest, store_location
    from servingperf.results.store import open_store

    try:
        with open_store(store_location(store)) as opened:
            ingest(opened, run_dir)
            out.print(f"recorded in the store: {opened.location}")
    except ServingPerfError as exc:
        raise fail(exc) from None


def run_scenario_file(
    scenario: Path,
    out_dir: Path | None,
    runs_dir: Path,
    labels: dict[str, str],
    overrides: dict[str, Any],
    report: bool = True,
) -> Any:
    from servingperf.config import load_scenario

    spec = load_scenario(scenario, {k: v for k, v in overrides.items() if v is not None})
    if labels:  # command-line labels add to (and win over) the file's labels
        spec = spec.model_copy(update={"labels": {**spec.labels, **labels}})
    return run_spec(spec, scenario.parent, runs_dir, out_dir, report)


def run_spec(
    spec: Any, base_dir: Path, runs_dir: Path, out_dir: Path | None = None, report: bool = True
) -> Any:
    """Run a validated scenario with live progress; Ctrl-C stops it gracefully."""
    from servingperf.cli.progress import RichProgress
    from servingperf.scenarios.runner import RunOptions, run_scenario

    stop = asyncio.Event()
    options = RunOptions(base_dir=base_dir, runs_dir=runs_dir, out=out_dir, report=report)

    async def run_and_release() -> Any:
        outcome = await run_scenario(spec, options, RichProgress(console), stop)
        if outcome.kept is not None:  # keep_deployed: close our sessions, leave the instances
            await outcome.kept.release()
        return outcome

    return run_async(run_and_release(), stop)
