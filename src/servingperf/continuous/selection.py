"""How users name the runs of one side of a comparison: ``release=2.5.0`` (every stored run with
those labels; several ``key=value`` joined by commas), or a run id."""

from __future__ import annotations

from dataclasses import dataclass, field

from servingperf.errors import ConfigError
from servingperf.results.store import Store, StoredRun


@dataclass(frozen=True, slots=True)
class Selection:
    text: str
    run_id: str | None = None
    labels: dict[str, str] = field(default_factory=dict)


def parse_selection(text: str) -> Selection:
    text = text.strip()
    if not text:
        raise ConfigError("empty run selection: give a run id or KEY=VALUE[,KEY=VALUE]")
    if "=" not in text:
        return Selection(text=text, run_id=text)
    labels: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"run selection {text!r}: expected KEY=VALUE[,KEY=VALUE]")
        labels[key.strip()] = value.strip()
    return Selection(text=text, labels=labels)


def resolve(store: Store, selection: Selection, scenario: str | None) -> list[StoredRun]:
    """The complete runs a selection names (newest first); ConfigError when there are none."""
    if selection.run_id is not None:
        run = store.get_run(selection.run_id)
        if run is None:
            raise ConfigError(f"no run {selection.run_id!r} in the store {store.location}")
        return [run]
    runs = [r for r in store.runs(selection.labels, scenario=scenario) if r.status == "complete"]
    if not runs:
        where = f" of scenario {scenario!r}" if scenario else ""
        raise ConfigError(
            f"no complete run{where} with {selection.text} in the store {store.location}"
            " (see `servingperf history`)"
        )
    return runs
