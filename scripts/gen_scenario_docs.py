"""Write docs/scenarios.md from the scenario spec models, so the reference never drifts from the code.

Run: .venv/bin/python scripts/gen_scenario_docs.py   (tests/unit/test_docs.py fails when it is stale)
"""

from __future__ import annotations

import enum
import sys
import types
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from servingperf.model.specs import ScenarioSpec

HEADER = """# Scenario files

A scenario is one YAML file. Unknown keys are errors; every error names the file, the line and the
field. Secrets never go here: bearer tokens come from an environment variable (`token_env`) or a
file (`token_file`). This page is generated from the code by `scripts/gen_scenario_docs.py`.

Examples: `examples/single-model.yaml` (the seed's settings), `examples/demo/` (demo scale).
"""


def _type_name(annotation: object) -> str:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is typing.Literal:
        return " / ".join(repr(a) for a in typing.get_args(annotation))
    if origin is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin in (list, tuple):
        return f"list of {_type_name(typing.get_args(annotation)[0])}"
    if origin is dict:
        key, value = typing.get_args(annotation)
        return f"mapping {_type_name(key)} → {_type_name(value)}"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " / ".join(f"`{m.value}`" for m in annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return "(section defaults)"
        return f"`{value!r}`"
    value = field.default
    if isinstance(value, enum.Enum):
        value = value.value
    return f"`{value!r}`" if value is not None else "null"


def _constraints(field: FieldInfo) -> str:
    parts = []
    for meta in field.metadata:
        for name, symbol in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            bound = getattr(meta, name, None)
            if bound is not None:
                parts.append(f"{symbol} {bound}")
        pattern = getattr(meta, "pattern", None)
        if pattern:
            parts.append("a DNS label")
    return ", ".join(parts)


def _models(root: type[BaseModel]) -> list[type[BaseModel]]:
    seen: list[type[BaseModel]] = []

    def visit(model: type[BaseModel]) -> None:
        if model in seen:
            return
        seen.append(model)
        for field in model.model_fields.values():
            for arg in _walk(field.annotation):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    visit(arg)

    visit(root)
    return seen


def _walk(annotation: object) -> list[object]:
    found = [annotation]
    for arg in typing.get_args(annotation):
        found.extend(_walk(arg))
    return found


def render() -> str:
    lines = [HEADER]
    for model in _models(ScenarioSpec):
        lines.append(f"## {model.__name__}\n")
        doc = (model.__doc__ or "").strip()
        if doc:
            lines.append(" ".join(doc.split()) + "\n")
        lines.append("| key | type | default | meaning |")
        lines.append("| --- | --- | --- | --- |")
        for name, field in model.model_fields.items():
            meaning = field.description or ""
            bounds = _constraints(field)
            if bounds:
                meaning = f"{meaning} ({bounds})" if meaning else bounds
            lines.append(
                f"| `{name}` | {_type_name(field.annotation)} | {_default(field)} | {meaning} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    target = Path(__file__).resolve().parent.parent / "docs" / "scenarios.md"
    target.write_text(render())
    sys.stdout.write(f"wrote {target}\n")


if __name__ == "__main__":
    main()
