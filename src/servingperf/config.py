"""Scenario files: YAML in, a validated :class:`ScenarioSpec` out, or one clear error line.

Every error names the file, the line and the field path (``single.yaml:7: load.users: Input should
be greater than or equal to 1``), because the person reading it is fixing a file, often from a CI log.
Line numbers come from PyYAML's node marks, looked up along pydantic's error location.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from servingperf.emulator.profiles import PROFILES, is_profile_path, resolve_profile
from servingperf.errors import ConfigError
from servingperf.model.specs import FieldError, ScenarioSpec

MAX_SCENARIO_BYTES = 4 * 1024 * 1024


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys instead of silently keeping the last."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, Hashable):  # YAML allows "? [a]": a list as a key
            raise yaml.constructor.ConstructorError(
                None, None, f"unusable mapping key {key!r:.40}", key_node.start_mark
            )
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def _line_of(root: yaml.Node | None, loc: Sequence[int | str]) -> int | None:
    """1-based line of the deepest YAML node along a pydantic error location."""
    node = root
    line = None if node is None else node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == part:
                    line = key_node.start_mark.line + 1
                    node = value_node
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _field_path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = str(part)
            if not text.isprintable():  # a key with a newline must not split the error line
                text = repr(text)
            out += ("." if out else "") + text
    return out or "(top level)"


def parse_scenario(
    text: str,
    source: str,
    overrides: Mapping[str, Any] | None = None,
    base_dir: Path | None = None,
) -> ScenarioSpec:
    """Validate scenario YAML text; ``source`` names it in errors. ``overrides`` are dotted keys
    (``load.duration_s``) applied before validation, as CLI flags do. A relative profile file
    path (``emulator.profile``) is taken from ``base_dir`` (the scenario file's folder; default:
    the working directory) and kept absolute, so the emulator process finds it wherever it runs."""
    try:
        root = yaml.compose(text, Loader=_UniqueKeyLoader)
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}" if mark else source
        raise ConfigError(f"{where}: invalid YAML: {exc.problem or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from exc
    except RecursionError as exc:  # PyYAML composes nested nodes recursively
        raise ConfigError(f"{source}: invalid YAML: nested too deeply") from exc
    if data is None:
        raise ConfigError(f"{source}: the file is empty; see examples/ for scenario files")
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: a scenario is a mapping of keys, got {type(data).__name__}")
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    try:
        spec = ScenarioSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = _strip_union_tags(tuple(p for p in first["loc"] if isinstance(p, (int, str))))
        cause = (first.get("ctx") or {}).get("error")
        if isinstance(cause, FieldError):
            loc = (*loc, *cause.loc)
        line = _line_of(root, loc)
        where = f"{source}:{line}" if line else source
        message = first["msg"].removeprefix("Value error, ")
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise ConfigError(f"{where}: {_field_path(loc)}: {message}{more}") from exc
    spec = _absolute_profile_paths(spec, base_dir or Path.cwd())
    _check_emulator_profiles(spec, root, source)
    return spec


def _absolute_profile_paths(spec: ScenarioSpec, base_dir: Path) -> ScenarioSpec:
    models = []
    for model in spec.models:
        emulator = model.emulator
        if emulator is not None and is_profile_path(emulator.profile):
            path = Path(emulator.profile).expanduser()
            absolute = str(path if path.is_absolute() else (base_dir / path).resolve())
            emulator = emulator.model_copy(update={"profile": absolute})
            model = model.model_copy(update={"emulator": emulator})
        models.append(model)
    return spec.model_copy(update={"models": models})


def _check_emulator_profiles(spec: ScenarioSpec, root: yaml.Node | None, source: str) -> None:
    """Resolve every emulator profile now, so a typo fails before anything is deployed."""
    for index, model in enumerate(spec.models):
        if model.emulator is None:
            continue
        try:
            resolve_profile(model.emulator.profile, model.emulator.overrides)
        except ConfigError as exc:
            loc: tuple[int | str, ...] = ("models", index, "emulator", "profile")
            if model.emulator.overrides and model.emulator.profile in PROFILES:
                loc = ("models", index, "emulator", "overrides")
            line = _line_of(root, loc)
            where = f"{source}:{line}" if line else source
            raise ConfigError(f"{where}: {_field_path(loc)}: {exc}") from exc


def _strip_union_tags(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """Drop pydantic's union-member tags (``int``, ``literal['dataset']``) from a location."""
    keep: list[int | str] = []
    for part in loc:
        if isinstance(part, str) and (part in {"int", "str", "float"} or "[" in part):
            continue
        keep.append(part)
    return tuple(keep)


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    node: dict[str, Any] = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted!r}: {part!r} is not a mapping in the scenario")
        node = child
    node[parts[-1]] = value


def load_scenario(path: Path, overrides: Mapping[str, Any] | None = None) -> ScenarioSpec:
    """Read and validate a scenario file (see :func:`parse_scenario`)."""
    try:
        size = path.stat().st_size
        if size > MAX_SCENARIO_BYTES:
            raise ConfigError(f"{path}: {size} bytes; a scenario file is at most 4 MiB")
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such scenario file") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{path}: is a directory, not a scenario file") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text") from exc
    return parse_scenario(text, str(path), overrides, base_dir=path.parent.resolve())
