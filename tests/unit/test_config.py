"""Scenario files: valid ones load; each kind of mistake gets one line naming file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from servingperf.config import load_scenario, parse_scenario
from servingperf.errors import ConfigError, ExitCode

VALID = """\
name: demo
models:
  - name: small
    emulator: {profile: flan-t5-small}
load:
  users: 4
  duration_s: 10
"""


def test_valid_scenario_and_defaults() -> None:
    spec = parse_scenario(VALID, "demo.yaml")
    assert spec.load.users == 4
    assert spec.dataset.prompts == 32  # the seed's subset size
    assert spec.models[0].request_model == "flan-t5-small"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (VALID.replace("users: 4", "users: 0"), "s.yaml:6: load.users: Input should be greater"),
        (VALID.replace("users: 4", "userz: 4"), "s.yaml:6: load.userz: Extra inputs are not"),
        (VALID.replace("users: 4", "users: many"), "s.yaml:6: load.users: Input should be a valid"),
        (
            VALID.replace("name: small", "name: Small_Model"),
            "s.yaml:3: models[0].name: String should",
        ),
        (VALID + "load: {}\n", "s.yaml:8: invalid YAML: duplicate key 'load'"),
        ("name: [unclosed\n", "s.yaml:2: invalid YAML"),
        ("", "s.yaml: the file is empty"),
        ("- a\n- b\n", "s.yaml:1: a scenario is a mapping"),
        (
            VALID.replace(
                "    emulator: {profile: flan-t5-small}", "    endpoint: {url: http://x}"
            ),
            "s.yaml:3: models[0]: platform 'local' starts the embedded emulator",
        ),
        (VALID + "dataset: {output_tokens: 0}\n", "s.yaml:8: dataset: output_tokens must be"),
    ],
)
def test_errors_name_file_line_and_field(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_scenario(text, "s.yaml")
    message = str(info.value)
    assert expected in message, message
    assert "\n" not in message
    assert info.value.exit_code is ExitCode.BAD_INPUT


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such scenario file"):
        load_scenario(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"name: demo\nmodels: \xff\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:2: not UTF-8"):
        load_scenario(bad)


def test_overrides_apply_before_validation(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(VALID)
    assert load_scenario(path, {"load.duration_s": 3}).load.duration_s == 3
    with pytest.raises(ConfigError, match=r"load\.users"):
        load_scenario(path, {"load.users": -1})


def test_cross_field_errors_point_at_the_field() -> None:
    text = VALID.replace("load:", "  - name: small\n    emulator: {profile: bloom-560m}\nload:")
    with pytest.raises(
        ConfigError, match=r"s.yaml:5: models\[1\].name: model name 'small' is repeated"
    ):
        parse_scenario(text, "s.yaml")


def test_unknown_emulator_profile_fails_before_anything_runs() -> None:
    with pytest.raises(
        ConfigError, match=r"s.yaml:4: models\[0\].emulator.profile: .*flan-t5-smal"
    ):
        parse_scenario(VALID.replace("flan-t5-small", "flan-t5-smal"), "s.yaml")
    text = VALID.replace("{profile: flan-t5-small}", "{profile: flan-t5-small, overrides: {x: 1}}")
    with pytest.raises(ConfigError, match=r"s.yaml:4: models\[0\].emulator.overrides: "):
        parse_scenario(text, "s.yaml")
