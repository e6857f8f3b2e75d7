"""Property-based fuzzing of the scenario loader: ``config.parse_scenario`` returns a spec or raises
``ConfigError`` whose message names the file; nothing else, whatever the text (bounded budget).

Three sources of input: arbitrary text; YAML documents built from the scenario's own keys with
values of every type; and a valid scenario with one value somewhere replaced by a hostile one.
"""

from __future__ import annotations

import math
from typing import Any

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from servingperf.config import parse_scenario
from servingperf.errors import ConfigError
from servingperf.model.specs import ScenarioSpec

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOURCE = "fuzz.yaml"

VALID: dict[str, Any] = {
    "name": "fuzz",
    "labels": {"release": "1.0"},
    "platform": {"kind": "local", "ready_timeout_s": 10},
    "models": [
        {
            "name": "m",
            "emulator": {
                "profile": "instant",
                "load_time_s": 0,
                "overrides": {"decode_base_s": 0.001},
                "faults": {"stall_p": 0.1, "error_status": {503: 0.1}},
            },
        }
    ],
    "load": {"users": 2, "duration_s": 1, "ramp_up_s": 0, "breaker": {"max_error_rate": 0.5}},
    "dataset": {"source": "synthetic", "prompts": 4, "output_tokens": 8},
    "slo": {"ttft_s": 1.0},
}

KEYS = sorted(
    {
        *ScenarioSpec.model_fields,
        "kind",
        "profile",
        "overrides",
        "faults",
        "endpoint",
        "url",
        "token_env",
        "users",
        "duration_s",
        "schedule",
        "rate_rps",
        "source",
        "path",
        "error_status",
        "stall_p",
        "crash_after_s",
        "breaker",
        "max_error_rate",
    }
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["[/]", "../../etc/passwd", "{{x}}", "<script>", "\u202e", "1e400", ".nan"]),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), inner, max_size=5)
    ),
    max_leaves=25,
)


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def _load(text: str, overrides: dict[str, Any] | None = None) -> None:
    try:
        spec: ScenarioSpec | ConfigError = parse_scenario(text, SOURCE, overrides)
    except ConfigError as exc:
        spec = exc
    event(type(spec).__name__)
    if isinstance(spec, ConfigError):  # one line that names the file (or the override)
        message = str(spec)
        assert message.startswith(SOURCE) or message.startswith("override"), message
        assert "\n" not in message.strip() or "YAML" in message, message


def test_the_valid_scenario_is_valid() -> None:
    spec = parse_scenario(_dump(VALID), SOURCE)
    assert spec.models[0].emulator is not None
    assert spec.models[0].emulator.faults is not None


@FUZZ
@given(st.text(max_size=400))
def test_any_text_is_a_spec_or_a_config_error(text: str) -> None:
    _load(text)


@FUZZ
@given(st.dictionaries(st.sampled_from(KEYS), values, max_size=8))
def test_any_structure_of_known_keys_is_a_spec_or_a_config_error(data: dict[str, Any]) -> None:
    _load(_dump(data))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, child in node.items():
            out += _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            out += _paths(child, (*prefix, index))
    return out


PATHS = _paths(VALID)


def _replaced(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    import copy

    data = copy.deepcopy(VALID)
    node: Any = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return data


@FUZZ
@given(st.sampled_from(PATHS), values)
def test_one_hostile_value_anywhere_is_a_spec_or_a_config_error(
    path: tuple[Any, ...], value: Any
) -> None:
    _load(_dump(_replaced(path, value)))


@FUZZ
@given(
    st.dictionaries(
        st.one_of(
            st.sampled_from(["load.users", "load.duration_s", "load.ramp_up_s", "name", "x.y.z"]),
            st.text(max_size=12),
        ),
        scalars,
        max_size=3,
    )
)
def test_overrides_are_a_spec_or_a_config_error(overrides: dict[str, Any]) -> None:
    _load(_dump(VALID), overrides)


@FUZZ
@given(st.sampled_from(PATHS), st.sampled_from(["&a [*a]", "*missing", "!!binary x", "? [a]"]))
def test_hostile_yaml_syntax_is_a_config_error(path: tuple[Any, ...], fragment: str) -> None:
    text = _dump(_replaced(path, "PLACEHOLDER")).replace("PLACEHOLDER", fragment, 1)
    _load(text)


def test_non_finite_numbers_never_make_a_spec() -> None:
    for field in ("duration_s", "ramp_up_s", "request_timeout_s"):
        for bad in (math.nan, math.inf, -math.inf):
            data = _replaced(("load", field), bad)
            try:
                parse_scenario(_dump(data), SOURCE)
            except ConfigError:
                continue
            raise AssertionError(f"load.{field} = {bad} was accepted")
