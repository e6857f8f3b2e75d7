"""The comparability fingerprint and the policy that says which differences forbid a comparison."""

from __future__ import annotations

import pytest

from servingperf.analysis.fingerprint import (
    Action,
    Policy,
    compare_fingerprints,
    fingerprint_of,
)
from servingperf.errors import ConfigError

CONFIG = {
    "kind": "single-model",
    "platform": {"kind": "local"},
    "models": [
        {
            "name": "small",
            "protocol": "openai",
            "emulator": {"profile": "flan-t5-small", "overrides": {}},
        },
        {"name": "remote", "model_id": "meta/llama", "protocol": "openai-chat"},
    ],
    "load": {
        "users": 16,
        "duration_s": 600,
        "ramp_up_s": 10,
        "workers": 2,
        "schedule": {"kind": "users"},
    },
    "dataset": {"source": "bundled", "prompts": 32, "seed": 42, "output_tokens": "dataset"},
}
ENVIRONMENT = {
    "servingperf": "0.1.0",
    "machine": "x86_64",
    "cpu_model": "AMD EPYC 7763",
    "usable_cpus": 2,
    "memory_bytes": 24 * 2**30,
    "gpus": ["NVIDIA A100-SXM4-40GB", "NVIDIA A100-SXM4-40GB"],
    "engines": {"remote": {"name": "vllm", "version": "0.32.0"}},
}


def test_fingerprint_fields() -> None:
    fp = fingerprint_of(CONFIG, ENVIRONMENT)
    assert fp["hardware.cpu_model"] == "AMD EPYC 7763"
    assert fp["hardware.cpus"] == "2" and fp["hardware.memory_gib"] == "24"
    assert fp["hardware.gpu_model"] == "NVIDIA A100-SXM4-40GB" and fp["hardware.gpu_count"] == "2"
    assert fp["engine.remote.name"] == "vllm" and fp["engine.remote.version"] == "0.32.0"
    assert fp["engine.small.name"] == "servingperf-emulator"
    assert fp["engine.small.version"].startswith("0.1.0 flan-t5-small #")
    assert fp["model.remote"] == "meta/llama" and fp["model.small"] == "flan-t5-small"
    assert fp["protocol.remote"] == "openai-chat"
    assert fp["load.users"] == "16" and fp["load.schedule"] == '{"kind":"users"}'
    assert "load.workers" not in fp  # where the load comes from does not change it
    assert fp["dataset.prompts"] == "32" and fp["servingperf.version"] == "0.1.0"


def test_emulator_overrides_change_the_engine_version_only() -> None:
    tuned = {
        **CONFIG,
        "models": [
            {
                **CONFIG["models"][0],
                "emulator": {  # type: ignore[dict-item]
                    "profile": "flan-t5-small",
                    "overrides": {"decode_base_s": 0.0065},
                },
            }
        ],
    }
    a, b = fingerprint_of(CONFIG, ENVIRONMENT), fingerprint_of(tuned, ENVIRONMENT)
    assert a["engine.small.version"] != b["engine.small.version"]
    result = compare_fingerprints(
        [("a", a)],
        [
            (
                "b",
                {
                    **b,
                    "engine.remote.name": "vllm",
                    "engine.remote.version": "0.32.0",
                    "model.remote": "meta/llama",
                    "protocol.remote": "openai-chat",
                },
            )
        ],
    )
    assert result.comparable  # the release under test changed: ignored by default


def test_default_policy_refuses_hardware_warns_on_tool_version() -> None:
    ref = fingerprint_of(CONFIG, ENVIRONMENT)
    other = fingerprint_of(CONFIG, {**ENVIRONMENT, "gpus": ["NVIDIA H100"], "servingperf": "0.2"})
    result = compare_fingerprints([("r1", ref)], [("c1", other)])
    refused = {d.field for d in result.refused}
    assert refused == {"hardware.gpu_model", "hardware.gpu_count"}
    assert {d.field for d in result.warned} == {"servingperf.version"}
    assert not result.comparable
    assert any("hardware.gpu_model: reference NVIDIA A100" in n for n in result.notes())


def test_policy_rules_relax_and_the_longest_pattern_wins() -> None:
    policy = Policy.default().with_rules({"hardware.*": "warn", "hardware.gpu_count": "refuse"})
    assert policy.action("hardware.gpu_model") is Action.WARN
    assert policy.action("hardware.gpu_count") is Action.REFUSE
    assert policy.action("engine.x.version") is Action.IGNORE
    assert policy.relaxed().action("hardware.gpu_count") is Action.WARN
    with pytest.raises(ConfigError, match=r"--comparability hardware\.cpus=maybe"):
        Policy.default().with_rules({"hardware.cpus": "maybe"})


def test_a_side_of_several_runs_compares_its_set_of_values() -> None:
    a = fingerprint_of(CONFIG, ENVIRONMENT)
    b = fingerprint_of({**CONFIG, "load": {**CONFIG["load"], "users": 32}}, ENVIRONMENT)  # type: ignore[dict-item]
    assert compare_fingerprints([("1", a), ("2", a)], [("3", a)]).comparable
    mixed = compare_fingerprints([("1", a), ("2", b)], [("3", a)])
    assert [(d.field, d.reference, d.candidate) for d in mixed.refused] == [
        ("load.users", ("16", "32"), ("16",))
    ]


def test_runs_without_a_fingerprint_are_noted_not_refused() -> None:
    result = compare_fingerprints([("old", None)], [("new", fingerprint_of(CONFIG, ENVIRONMENT))])
    assert result.comparable and result.unknown == ("old",)
    assert "no fingerprint for old" in result.notes()[0]
