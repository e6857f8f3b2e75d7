"""Docs and examples stay true to the code: every example scenario validates, the generated
scenario reference is current, and every file the README names exists."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from servingperf.config import load_scenario

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (ROOT / "examples").rglob("*.yaml") if p.name != "releases.yaml")


@pytest.mark.parametrize("path", EXAMPLES, ids=[str(p.relative_to(ROOT)) for p in EXAMPLES])
def test_every_example_scenario_validates(path: Path) -> None:
    load_scenario(path)


def test_scenario_reference_is_generated_from_the_current_specs() -> None:
    spec = importlib.util.spec_from_file_location("gen", ROOT / "scripts" / "gen_scenario_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    current = (ROOT / "docs" / "scenarios.md").read_text()
    assert module.render() == current, "run scripts/gen_scenario_docs.py"


def test_files_named_in_the_readme_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    named = set(
        re.findall(r"`((?:examples|docs|benchmarks|deploy|scripts|tests)/[\w./-]+)`", readme)
    )
    assert named, "the README names no files?"
    missing = sorted(p for p in named if not (ROOT / p.rstrip("/")).exists())
    assert missing == []
