"""``servingperf demo``: every flavour against the embedded emulator, then a release history made
on the spot and the gate catching the slow release. All output goes under one folder:
``runs/`` (run directories with their reports), ``results.db`` (the store), ``gate-*.md`` and
``site/index.html`` (every run, release and verdict on one offline page).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError
from rich.markdown import Markdown

from servingperf.cli.common import out
from servingperf.cli.running import record_run, run_spec
from servingperf.cli.tables import summary_table
from servingperf.config import load_scenario
from servingperf.errors import ConfigError
from servingperf.model.specs import Spec

FLAVOURS = ("single-model.yaml", "multi-model.yaml", "many-model.yaml")


class DemoRelease(Spec):
    release: str = Field(min_length=1, max_length=63)
    overrides: dict[str, float] = Field(default_factory=dict)


class ReleasePlan(Spec):
    """``releases.yaml``: one scenario run once per release with emulator overrides per release."""

    scenario: str
    reference: str
    releases: list[DemoRelease] = Field(min_length=2)


def load_plan(path: Path) -> ReleasePlan:
    try:
        return ReleasePlan.model_validate(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: {where}: {first['msg']}") from exc


def _release_spec(base: Any, release: DemoRelease) -> Any:
    models = []
    for model in base.models:
        emulator = model.emulator
        if emulator is not None:
            merged = {**emulator.overrides, **release.overrides}
            emulator = emulator.model_copy(update={"overrides": merged})
        models.append(model.model_copy(update={"emulator": emulator}))
    return base.model_copy(
        update={"labels": {**base.labels, "release": release.release}, "models": models}
    )


def run_demo(examples: Path, out_dir: Path) -> None:
    if not examples.is_dir():
        raise ConfigError(
            f"{examples}: no demo scenarios here; run the demo from the repository root"
        )
    started = time.monotonic()
    store = str(out_dir / "results.db")
    runs_dir = out_dir / "runs"
    reports: list[Path] = []
    for name in FLAVOURS:
        path = examples / name
        if not path.is_file():
            continue
        out.rule(f"{name.removesuffix('.yaml')}")
        outcome = run_spec(load_scenario(path), path.parent, runs_dir)
        out.print(summary_table(outcome.summary))
        record_run(outcome.run_dir, store)
        reports.append(outcome.run_dir.path / "report.html")

    plan_path = examples / "releases.yaml"
    if plan_path.is_file():
        plan = load_plan(plan_path)
        base = load_scenario(examples / plan.scenario)
        out.rule("release history")
        for release in plan.releases:
            outcome = run_spec(_release_spec(base, release), examples, runs_dir)
            record_run(outcome.run_dir, store)
            reports.append(outcome.run_dir.path / "report.html")
        _gate_releases(store, base.name, plan, out_dir)

    from servingperf.continuous.site import write_site
    from servingperf.results.store import open_store

    with open_store(store) as opened:
        site = write_site(opened, out_dir / "site")
    out.rule("reports")
    for report in reports:
        out.print(f"  {report}")
    out.print(f"index of every run, release and verdict: {site.index}")
    out.print(f"demo finished in {time.monotonic() - started:.0f} s; store: {store}")


def _gate_releases(store: str, scenario: str, plan: ReleasePlan, out_dir: Path) -> None:
    from datetime import UTC, datetime

    from servingperf.continuous.gating import gate_runs
    from servingperf.continuous.outputs import report_markdown
    from servingperf.continuous.selection import parse_selection
    from servingperf.continuous.site import gate_document, write_gate_document
    from servingperf.results.store import open_store

    reference = parse_selection(f"release={plan.reference}")
    names = [r.release for r in plan.releases]
    later = names[names.index(plan.reference) + 1 :] if plan.reference in names else []
    with open_store(store) as opened:
        for release in later:
            report = gate_runs(opened, reference, parse_selection(f"release={release}"), scenario)
            document = gate_document(
                report,
                scenario=scenario,
                candidate_run=report.candidate_runs[0].run_id,
                reference=reference,
                gated_at=datetime.now(UTC),
            )
            write_gate_document(out_dir / "site", document)
            text = report_markdown(report)
            (out_dir / f"gate-{release}.md").write_text(text)
            out.print(Markdown(text))
            verdict = "REGRESSION (exit code 1)" if report.exit_code else "pass (exit code 0)"
            out.print(f"gate {release} vs {plan.reference}: {verdict}")
