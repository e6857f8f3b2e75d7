"""Emulator profiles: the named parameter sets of the latency model.

A *profile* fixes every number the emulator's timing depends on: the cost of one decode step
(``decode_base_s + decode_per_seq_s × batch``), the prefill cost per prompt token, the batch
limit, the natural output length distribution (used when a request does not force a length) and
the start-up ("load") time distribution (lognormal, clipped).

Profiles are *files* (format: :func:`profile_from_document`): the built-in ones are
``profile_files/*.json`` in the package, and a scenario may name its own by path
(``emulator: {profile: twins/release-2.5.yaml}``), so that a team keeps a versioned twin of each
release of its stack. Every built-in value is ILLUSTRATIVE, NOT A MEASUREMENT: the numbers are
chosen to order the seed's models from fast to slow with plausible magnitudes (milliseconds per
token, tens of seconds to load), so that scenarios written for real clusters exercise the tool in
a similar regime. They say nothing about how fast these models really are on any hardware.
``instant`` costs nothing and loads at once; it exists for benchmarks of the client and for
tests.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType

from servingperf.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Profile:
    """The parameters of one emulated model (all illustrative, not measurements).

    Times are seconds. ``output_tokens_*`` describe the *natural* output length, a normal draw
    rounded and clipped to ``[output_tokens_min, output_tokens_max]``, used when the request does
    not force a length. ``load_time_*`` describe the start-up time: a lognormal draw with the given
    median and shape ``sigma``, clipped to ``[load_time_min_s, load_time_max_s]``.
    ``prefix_cache_blocks`` > 0 turns on the prefix (KV) cache of that many blocks of
    ``block_tokens`` toy tokens (:mod:`servingperf.emulator.prefix_cache`): a cached leading block
    of a prompt costs no prefill. ``max_loras`` > 0 models LoRA adapter slots
    (:mod:`servingperf.emulator.adapter_slots`): at most that many adapters loaded at once, each
    load adding ``lora_load_s`` to the step that admits it; 0 serves adapters at no cost. Both are
    off (0) in every built-in profile: a scenario turns them on with ``overrides``.
    ``reasoning_tokens`` > 0 makes a reasoning model: the first that many tokens of every chat
    answer (all of a shorter one) are reasoning (``delta.reasoning``), the rest content.
    """

    name: str
    decode_base_s: float
    decode_per_seq_s: float
    prefill_per_token_s: float
    max_batch: int
    output_tokens_mean: float
    output_tokens_sd: float
    output_tokens_min: int
    output_tokens_max: int
    load_time_median_s: float
    load_time_sigma: float
    load_time_min_s: float
    load_time_max_s: float
    prefix_cache_blocks: int = 0
    block_tokens: int = 16
    max_loras: int = 0
    lora_load_s: float = 0.0
    reasoning_tokens: int = 0


# Fields a scenario may override, with the type each must have.
_INT_FIELDS = frozenset(
    {
        "max_batch",
        "output_tokens_min",
        "output_tokens_max",
        "prefix_cache_blocks",
        "block_tokens",
        "max_loras",
        "reasoning_tokens",
    }
)
OVERRIDABLE: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(Profile) if f.name != "name"
)

PROFILE_FORMAT = 1  # the version of the profile file format (``servingperf_profile``)
PROFILE_SUFFIXES = (".yaml", ".yml", ".json")
_REQUIRED = tuple(f.name for f in dataclasses.fields(Profile) if f.default is dataclasses.MISSING)


def is_profile_path(name: str) -> bool:
    """Whether a scenario's ``emulator.profile`` names a file rather than a built-in profile: by
    its suffix (.yaml, .yml, .json), so that any other text is looked up among the built-ins."""
    return name.endswith(PROFILE_SUFFIXES)


def profile_from_document(document: object, source: str) -> Profile:
    """The profile a profile file holds (see docs/emulator.md, "Profile files").

    A document is a mapping: ``servingperf_profile`` (the format version, 1), ``name``, optional
    ``version`` and ``source`` (free text: which release it twins, how it was made), optional
    ``base`` (a built-in profile whose values the file's ``parameters`` replace) and
    ``parameters``. Without a base every parameter without a default must be given; parameters
    added to the model after the file was written take their defaults. Raises ``ConfigError``
    naming the file and the field.
    """
    if not isinstance(document, Mapping):
        raise ConfigError(f"{source}: a profile file is a mapping, got {type(document).__name__}")
    version = document.get("servingperf_profile")
    if version != PROFILE_FORMAT:
        raise ConfigError(
            f"{source}: servingperf_profile: expected {PROFILE_FORMAT} (the file format's"
            f" version), got {version!r}"
        )
    name = document.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{source}: name: a profile needs a name")
    parameters = document.get("parameters", {})
    if not isinstance(parameters, Mapping):
        raise ConfigError(f"{source}: parameters: expected a mapping of parameter to number")
    base_name = document.get("base")
    values: dict[str, float] = {}
    if base_name is not None:
        base = PROFILES.get(str(base_name))
        if base is None:
            raise ConfigError(
                f"{source}: base: unknown profile {base_name!r}; built-in: {', '.join(PROFILES)}"
            )
        values = {key: getattr(base, key) for key in OVERRIDABLE}
    else:
        missing = [key for key in _REQUIRED if key != "name" and key not in parameters]
        if missing:
            raise ConfigError(
                f"{source}: parameters: missing {', '.join(missing)} (or give a base profile)"
            )
    try:
        changes = _typed_changes(parameters, f"profile file {source}")
    except ConfigError as exc:
        raise ConfigError(f"{source}: parameters: {exc}") from None
    profile = Profile(name=name, **{**values, **changes})  # type: ignore[arg-type]
    problems = profile_problems(profile)
    if problems:
        raise ConfigError(f"{source}: parameters: " + "; ".join(problems))
    return profile


def load_profile_file(path: Path) -> Profile:
    """Read a profile file (YAML, or JSON) into a :class:`Profile`; ``ConfigError`` if bad."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such profile file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the profile file: {exc}") from None
    if path.suffix == ".json":
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{path}: invalid JSON: {exc}") from None
    else:
        import yaml  # only for a YAML profile: the emulator process stays lean without it

        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    return profile_from_document(document, str(path))


def profile_document(
    profile: Profile, *, version: str = "1", source: str = ""
) -> dict[str, object]:
    """The profile file document of ``profile`` (every parameter given: no base)."""
    parameters = {key: getattr(profile, key) for key in OVERRIDABLE}
    return {
        "servingperf_profile": PROFILE_FORMAT,
        "name": profile.name,
        "version": version,
        "source": source,
        "parameters": parameters,
    }


def _builtin_profiles() -> dict[str, Profile]:
    folder = resources.files("servingperf.emulator") / "profile_files"
    found: dict[str, Profile] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            source = f"built-in profile {entry.name}"
            profile = profile_from_document(json.loads(entry.read_text(encoding="utf-8")), source)
            found[profile.name] = profile
    first = [name for name in _BUILTIN_ORDER if name in found]
    return {name: found[name] for name in (*first, *sorted(set(found) - set(first)))}


def profile_problems(profile: Profile) -> list[str]:
    """Say what is wrong with a profile's values (empty when it is usable).

    Checked once, before serving, so that the step loop never meets a negative cost or a batch
    limit of zero.
    """
    problems: list[str] = []
    for name in OVERRIDABLE:
        value = getattr(profile, name)
        if not math.isfinite(value) or value < 0:
            problems.append(f"{name} must be a finite number >= 0, got {value!r}")
    if profile.max_batch < 1:
        problems.append(f"max_batch must be >= 1, got {profile.max_batch}")
    if profile.block_tokens < 1:
        problems.append(f"block_tokens must be >= 1, got {profile.block_tokens}")
    if profile.output_tokens_min < 1:
        problems.append(f"output_tokens_min must be >= 1, got {profile.output_tokens_min}")
    if profile.output_tokens_max < profile.output_tokens_min:
        problems.append(
            f"output_tokens_max ({profile.output_tokens_max}) must be >= output_tokens_min"
            f" ({profile.output_tokens_min})"
        )
    if profile.load_time_max_s < profile.load_time_min_s:
        problems.append(
            f"load_time_max_s ({profile.load_time_max_s}) must be >= load_time_min_s"
            f" ({profile.load_time_min_s})"
        )
    return problems


def _typed_changes(values: Mapping[str, object], what: str) -> dict[str, float | int]:
    """Parameter values checked by key and type: integer parameters (``_INT_FIELDS``) take
    floats only when whole, since YAML gives every number as it was written."""
    changes: dict[str, float | int] = {}
    for key, raw in values.items():
        if key not in OVERRIDABLE:
            raise ConfigError(
                f"unknown override {key!r} for {what}; valid keys: {', '.join(OVERRIDABLE)}"
            )
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ConfigError(f"override {key!r} must be a number, got {raw!r}")
        value = float(raw)
        if key in _INT_FIELDS:
            if not value.is_integer():
                raise ConfigError(f"override {key!r} must be a whole number, got {raw!r}")
            changes[key] = int(value)
        else:
            changes[key] = value
    return changes


def resolve_profile(name: str, overrides: Mapping[str, float]) -> Profile:
    """The named profile (built-in, or a profile file's path) with ``overrides`` applied,
    validated.

    Raises ``ConfigError`` naming an unknown profile, an unknown override key or an invalid value,
    and listing what is valid. Integer parameters (``_INT_FIELDS``) accept floats only when
    they are whole numbers, since scenario files give every override as a number.
    """
    if is_profile_path(name):
        base = load_profile_file(Path(name))
    else:
        found = PROFILES.get(name)
        if found is None:
            raise ConfigError(
                f"unknown emulator profile {name!r}; valid profiles: {', '.join(PROFILES)},"
                " or a profile file (.yaml, .yml, .json)"
            )
        base = found
    changes = _typed_changes(overrides, f"emulator profile {name!r}")
    profile = dataclasses.replace(base, **changes)  # type: ignore[arg-type]
    problems = profile_problems(profile)
    if problems:
        raise ConfigError(f"emulator profile {name!r} with overrides: " + "; ".join(problems))
    return profile


def draw_load_time_s(profile: Profile, seed: int) -> float:
    """Draw the start-up time once, reproducibly from ``seed``: lognormal, then clipped."""
    if profile.load_time_median_s <= 0:
        return min(max(0.0, profile.load_time_min_s), profile.load_time_max_s)
    rng = random.Random(f"load-time:{seed}")
    draw = profile.load_time_median_s * math.exp(profile.load_time_sigma * rng.gauss(0.0, 1.0))
    return min(max(draw, profile.load_time_min_s), profile.load_time_max_s)


_BUILTIN_ORDER = ("flan-t5-small", "flan-t5-large", "bloom-560m", "mpt-7b-instruct2", "instant")
PROFILES: Mapping[str, Profile] = MappingProxyType(_builtin_profiles())
"""The built-in profiles (``profile_files/*.json`` in the package), fast to slow, then
``instant``. Read-only."""
