"""Profile files (#20 item 3): a scenario names a versioned profile file instead of a built-in
profile; the built-ins are such files too. Relative paths are taken from the scenario's folder;
a bad file is a clear error naming the file and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from servingperf.config import load_scenario, parse_scenario
from servingperf.emulator.command_line import parse_options
from servingperf.emulator.profiles import (
    PROFILES,
    load_profile_file,
    profile_document,
    profile_from_document,
    resolve_profile,
)
from servingperf.errors import ConfigError

TWIN = {
    "servingperf_profile": 1,
    "name": "stack-2.5-twin",
    "version": "2.5.0",
    "source": "calibrated from runs of release 2.5.0",
    "base": "flan-t5-small",
    "parameters": {"decode_base_s": 0.02, "max_batch": 8},
}


def write(path: Path, document: object) -> Path:
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def test_a_profile_file_replaces_its_base_values(tmp_path: Path) -> None:
    profile = load_profile_file(write(tmp_path / "twin.yaml", TWIN))
    small = PROFILES["flan-t5-small"]
    assert profile.name == "stack-2.5-twin"
    assert (profile.decode_base_s, profile.max_batch) == (0.02, 8)
    assert profile.decode_per_seq_s == small.decode_per_seq_s  # from the base


@pytest.mark.parametrize("name", list(PROFILES))
def test_every_built_in_profile_round_trips_through_its_document(name: str, tmp_path: Path) -> None:
    profile = PROFILES[name]
    document = profile_document(profile, version="7")
    assert profile_from_document(json.loads(json.dumps(document)), "x") == profile
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    assert resolve_profile(str(path), {}) == profile


def test_a_scenario_takes_a_relative_profile_path_from_its_folder(tmp_path: Path) -> None:
    (tmp_path / "twins").mkdir()
    write(tmp_path / "twins" / "twin.yaml", TWIN)
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(
        "name: s\nmodels:\n  - name: m\n    emulator: {profile: twins/twin.yaml, load_time_s: 0}\n",
        encoding="utf-8",
    )
    spec = load_scenario(scenario)
    emulator = spec.models[0].emulator
    assert emulator is not None
    assert emulator.profile == str((tmp_path / "twins" / "twin.yaml").resolve())
    options = parse_options(["serve", "--profile", emulator.profile])
    assert resolve_profile(options.profile, {}).decode_base_s == 0.02


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"servingperf_profile": 2}, "servingperf_profile"),
        ({"name": ""}, "name"),
        ({"base": "nope"}, "base"),
        ({"parameters": {"decode_base_s": "fast"}}, "parameters"),
        ({"parameters": {"warp_speed": 1}}, "parameters"),
        ({"parameters": {"max_batch": 0}}, "parameters"),
        ({"base": None, "parameters": {"decode_base_s": 0.01}}, "parameters: missing"),
    ],
)
def test_a_bad_profile_file_names_the_file_and_the_field(
    tmp_path: Path, change: dict[str, object], field: str
) -> None:
    path = write(
        tmp_path / "bad.yaml", {k: v for k, v in {**TWIN, **change}.items() if v is not None}
    )
    with pytest.raises(ConfigError) as caught:
        load_profile_file(path)
    assert str(path) in str(caught.value) and field in str(caught.value)


def test_a_scenario_naming_a_missing_profile_file_fails_at_load(tmp_path: Path) -> None:
    text = "name: s\nmodels:\n  - name: m\n    emulator: {profile: missing.yaml}\n"
    with pytest.raises(ConfigError) as caught:
        parse_scenario(text, "s.yaml", base_dir=tmp_path)
    message = str(caught.value)
    assert "s.yaml:4" in message and "models[0].emulator.profile" in message
    assert "no such profile file" in message
