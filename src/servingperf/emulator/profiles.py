"""Emulator profiles: the named parameter sets of the latency model.

A *profile* fixes every number the emulator's timing depends on: the cost of one decode step
(``decode_base_s + decode_per_seq_s × batch``), the prefill cost per prompt token, the batch
limit, the natural output length distribution (used when a request does not force a length) and
the start-up ("load") time distribution (lognormal, clipped).

Every value below is ILLUSTRATIVE, NOT A MEASUREMENT: the numbers are chosen to order the seed's
models from fast to slow with plausible magnitudes (milliseconds per token, tens of seconds to
load), so that scenarios written for real clusters exercise the tool in a similar regime. They
say nothing about how fast these models really are on any hardware. ``instant`` costs nothing and
loads at once; it exists for benchmarks of the client and for tests.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
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

_PROFILE_LIST = (
    Profile(
        name="flan-t5-small",
        decode_base_s=0.005,
        decode_per_seq_s=0.00005,
        prefill_per_token_s=0.00002,
        max_batch=256,
        output_tokens_mean=40.0,
        output_tokens_sd=20.0,
        output_tokens_min=1,
        output_tokens_max=512,
        load_time_median_s=40.0,
        load_time_sigma=0.25,
        load_time_min_s=20.0,
        load_time_max_s=120.0,
    ),
    Profile(
        name="flan-t5-large",
        decode_base_s=0.010,
        decode_per_seq_s=0.0001,
        prefill_per_token_s=0.00005,
        max_batch=128,
        output_tokens_mean=60.0,
        output_tokens_sd=30.0,
        output_tokens_min=1,
        output_tokens_max=512,
        load_time_median_s=55.0,
        load_time_sigma=0.25,
        load_time_min_s=25.0,
        load_time_max_s=180.0,
    ),
    Profile(
        name="bloom-560m",
        decode_base_s=0.014,
        decode_per_seq_s=0.00012,
        prefill_per_token_s=0.00006,
        max_batch=128,
        output_tokens_mean=100.0,
        output_tokens_sd=60.0,
        output_tokens_min=1,
        output_tokens_max=1024,
        load_time_median_s=60.0,
        load_time_sigma=0.3,
        load_time_min_s=25.0,
        load_time_max_s=200.0,
    ),
    Profile(
        name="mpt-7b-instruct2",
        decode_base_s=0.045,
        decode_per_seq_s=0.0004,
        prefill_per_token_s=0.0002,
        max_batch=64,
        output_tokens_mean=150.0,
        output_tokens_sd=80.0,
        output_tokens_min=1,
        output_tokens_max=2048,
        load_time_median_s=90.0,
        load_time_sigma=0.3,
        load_time_min_s=45.0,
        load_time_max_s=300.0,
    ),
    Profile(
        name="instant",
        decode_base_s=0.0,
        decode_per_seq_s=0.0,
        prefill_per_token_s=0.0,
        max_batch=4096,
        output_tokens_mean=16.0,
        output_tokens_sd=4.0,
        output_tokens_min=1,
        output_tokens_max=64,
        load_time_median_s=0.0,
        load_time_sigma=0.0,
        load_time_min_s=0.0,
        load_time_max_s=0.0,
    ),
)

PROFILES: Mapping[str, Profile] = MappingProxyType({p.name: p for p in _PROFILE_LIST})
"""The named profiles, fast to slow, then ``instant``. Read-only."""


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


def resolve_profile(name: str, overrides: Mapping[str, float]) -> Profile:
    """The named profile with ``overrides`` applied, validated.

    Raises ``ConfigError`` naming an unknown profile, an unknown override key or an invalid value,
    and listing what is valid. Integer parameters (``_INT_FIELDS``) accept floats only when
    they are whole numbers, since scenario files give every override as a number.
    """
    base = PROFILES.get(name)
    if base is None:
        raise ConfigError(
            f"unknown emulator profile {name!r}; valid profiles: {', '.join(PROFILES)}"
        )
    changes: dict[str, float | int] = {}
    for key, raw in overrides.items():
        if key not in OVERRIDABLE:
            raise ConfigError(
                f"unknown override {key!r} for emulator profile {name!r}; valid keys:"
                f" {', '.join(OVERRIDABLE)}"
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
