"""The comparability fingerprint of a run, and the policy that says which differences forbid
comparing two runs.

Terms. A *fingerprint* is a flat mapping ``field -> text`` of what must match for a fair
comparison, derived from ``run.json`` alone (:func:`fingerprint_of`): the machine (``hardware.*``:
architecture, CPU model, usable CPUs, memory, GPU model and count seen on it), each instance's
engine as its server reported it (``engine.<instance>.name`` / ``.version``; for the embedded
emulator the version also names its profile and overrides), the model id and protocol per
instance (``model.<instance>``, ``protocol.<instance>``), the scenario knobs that change the load
(``load.*``, ``dataset.*``, ``scenario.kind``, ``platform.kind``) and the servingperf version.
A *policy* maps field patterns (``fnmatch`` globs, the most specific, i.e. longest, match wins)
to an action: ``refuse`` (the gate and compare will not judge), ``warn`` (they judge and say so)
or ``ignore``. *Release fields* are those expected to change between the releases under test:
by default the engine version (``engine.*.version``) is ignored.
"""

from __future__ import annotations

import enum
import fnmatch
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from servingperf.errors import ConfigError

FINGERPRINT_VERSION = 1
Fingerprint = Mapping[str, str]

# Load knobs that change what the server sees (workers, timeouts and the breaker do not).
LOAD_KNOBS = ("users", "duration_s", "ramp_up_s", "drain_s", "stream", "force_output_length")
DATASET_KNOBS = ("source", "path", "prompts", "seed", "output_tokens", "synthetic_input_tokens")


class Action(enum.StrEnum):
    REFUSE = "refuse"
    WARN = "warn"
    IGNORE = "ignore"


DEFAULT_POLICY: Mapping[str, Action] = {
    "*": Action.REFUSE,
    "engine.*.version": Action.IGNORE,  # the release under test
    "servingperf.version": Action.WARN,  # the tool changed: definitions may have
}


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def fingerprint_of(config: Mapping[str, Any], environment: Mapping[str, Any]) -> dict[str, str]:
    """The fingerprint of a run from its ``run.json`` ``config`` and ``environment``."""
    result: dict[str, str] = {"fingerprint.version": str(FINGERPRINT_VERSION)}
    memory = environment.get("memory_bytes")
    gpus = environment.get("gpus")
    gpu_names = sorted({str(g) for g in gpus}) if isinstance(gpus, list) else []
    hardware = {
        "machine": environment.get("machine"),
        "cpu_model": environment.get("cpu_model"),
        "cpus": environment.get("usable_cpus") or environment.get("cpu_count"),
        "memory_gib": round(memory / 2**30) if isinstance(memory, int | float) else None,
        "gpu_model": ",".join(gpu_names) if gpu_names else "none",
        "gpu_count": len(gpus) if isinstance(gpus, list) else 0,
    }
    for key, value in hardware.items():
        result[f"hardware.{key}"] = "unknown" if value is None else _text(value)
    engines = _mapping(environment.get("engines"))
    for model in config.get("models") or []:
        if not isinstance(model, Mapping) or not isinstance(model.get("name"), str):
            continue
        name = model["name"]
        emulator = model.get("emulator") if isinstance(model.get("emulator"), Mapping) else None
        reported = _mapping(engines.get(name))
        engine_name = reported.get("name") or ("servingperf-emulator" if emulator else "unknown")
        version = reported.get("version") or (
            str(environment.get("servingperf", "unknown")) if emulator else "unknown"
        )
        if emulator is not None:
            tuning = {"profile": emulator.get("profile"), "overrides": emulator.get("overrides")}
            version = f"{version} {emulator.get('profile')} #{_digest(tuning)}"
        result[f"engine.{name}.name"] = str(engine_name)
        result[f"engine.{name}.version"] = str(version)
        model_id = model.get("model_id") or _mapping(emulator).get("profile") or name
        result[f"model.{name}"] = str(model_id)
        result[f"protocol.{name}"] = str(model.get("protocol", "unknown"))
    load = _mapping(config.get("load"))
    for knob in LOAD_KNOBS:
        if knob in load:
            result[f"load.{knob}"] = _text(load[knob])
    if "schedule" in load:
        result["load.schedule"] = _text(load["schedule"])
    dataset = _mapping(config.get("dataset"))
    for knob in DATASET_KNOBS:
        if knob in dataset:
            result[f"dataset.{knob}"] = _text(dataset[knob])
    result["scenario.kind"] = str(config.get("kind", "unknown"))
    platform = _mapping(config.get("platform"))
    result["platform.kind"] = str(platform.get("kind", "unknown"))
    result["servingperf.version"] = str(environment.get("servingperf", "unknown"))
    return result


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _digest(value: Any) -> str:
    return hashlib.sha256(_text(value).encode()).hexdigest()[:8]


@dataclass(frozen=True, slots=True)
class Policy:
    rules: Mapping[str, Action]

    @classmethod
    def default(cls) -> Policy:
        return cls(dict(DEFAULT_POLICY))

    def with_rules(self, pairs: Mapping[str, str]) -> Policy:
        """This policy with ``FIELD_PATTERN=ACTION`` pairs added (ConfigError names a bad one)."""
        rules = dict(self.rules)
        for pattern, action in pairs.items():
            try:
                rules[pattern] = Action(action)
            except ValueError:
                raise ConfigError(
                    f"--comparability {pattern}={action}: use refuse, warn or ignore"
                ) from None
        return Policy(rules)

    def relaxed(self) -> Policy:
        """Every ``refuse`` made a ``warn`` (``--allow-incomparable``)."""
        return Policy({k: Action.WARN if v is Action.REFUSE else v for k, v in self.rules.items()})

    def action(self, field: str) -> Action:
        matches = [p for p in self.rules if fnmatch.fnmatchcase(field, p)]
        if not matches:
            return Action.IGNORE
        return self.rules[max(matches, key=lambda p: (len(p.replace("*", "")), len(p)))]


@dataclass(frozen=True, slots=True)
class FieldDifference:
    field: str
    reference: tuple[str, ...]  # the values on the reference side (several runs may differ)
    candidate: tuple[str, ...]
    action: Action

    def describe(self) -> str:
        def side(values: tuple[str, ...]) -> str:
            return " | ".join(values) if values else "(absent)"

        return f"{self.field}: reference {side(self.reference)}, candidate {side(self.candidate)}"


@dataclass(frozen=True, slots=True)
class Comparability:
    differences: tuple[FieldDifference, ...]
    unknown: tuple[str, ...] = ()  # run ids without a fingerprint (recorded before there was one)

    @property
    def refused(self) -> tuple[FieldDifference, ...]:
        return tuple(d for d in self.differences if d.action is Action.REFUSE)

    @property
    def warned(self) -> tuple[FieldDifference, ...]:
        return tuple(d for d in self.differences if d.action is Action.WARN)

    @property
    def comparable(self) -> bool:
        return not self.refused

    def notes(self) -> list[str]:
        notes = [f"not comparable: {d.describe()}" for d in self.refused]
        notes += [f"differs (warn): {d.describe()}" for d in self.warned]
        if self.unknown:
            notes.append(
                f"no fingerprint for {', '.join(self.unknown)} (recorded before servingperf kept"
                " one): comparability not checked for it"
            )
        return notes


def compare_fingerprints(
    reference: Sequence[tuple[str, Fingerprint | None]],
    candidate: Sequence[tuple[str, Fingerprint | None]],
    policy: Policy | None = None,
) -> Comparability:
    """The fields whose values differ between the two sides (a side with several runs holds the
    set of its runs' values), each with the policy's action; ignored fields are left out."""
    policy = policy or Policy.default()
    unknown = tuple(run_id for run_id, fp in (*reference, *candidate) if fp is None)
    ref = [fp for _, fp in reference if fp is not None]
    cand = [fp for _, fp in candidate if fp is not None]
    if not ref or not cand:
        return Comparability((), unknown)
    fields = sorted(_keys(ref) | _keys(cand))
    differences = []
    for name in fields:
        if name == "fingerprint.version":
            continue
        left = tuple(sorted({fp[name] for fp in ref if name in fp}))
        right = tuple(sorted({fp[name] for fp in cand if name in fp}))
        if left == right:
            continue
        action = policy.action(name)
        if action is not Action.IGNORE:
            differences.append(FieldDifference(name, left, right, action))
    return Comparability(tuple(differences), unknown)


def _keys(fingerprints: Iterable[Fingerprint]) -> set[str]:
    return {key for fp in fingerprints for key in fp}
