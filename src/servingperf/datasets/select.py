"""From a :class:`~servingperf.model.specs.DatasetSpec` to the prompts a run uses.

The *subset* is ``spec.prompts`` prompts drawn from the source without replacement, fixed by
``spec.seed``, and kept in source order; the run's users then draw from it (see
:mod:`servingperf.datasets.sampler`). A file source is streamed through a reservoir, so only the
subset stays in memory however large the file, and every line is still validated. A synthetic
source is generated at the subset's size directly. Everything is checked here, before the first
request: a bad line, a too-small source, or a missing per-prompt output length is a
``ConfigError`` now, never a surprise mid-run.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path

from servingperf.datasets.bundled import BUNDLED_SOURCE, read_bundled
from servingperf.datasets.jsonl import read_jsonl
from servingperf.datasets.prompts import Prompt
from servingperf.datasets.shared_prefix import shared_prefix_prompts
from servingperf.datasets.synthetic import synthetic_prompts
from servingperf.errors import ConfigError
from servingperf.model.specs import DatasetSource, DatasetSpec, OutputLength


def load_prompts(spec: DatasetSpec, base_dir: Path) -> tuple[Prompt, ...]:
    """The validated subset ``spec`` describes; a relative ``spec.path`` is read from ``base_dir``.

    ``base_dir`` is the folder of the scenario file, so a scenario and its dataset can move
    together.
    """
    wants_dataset_lengths = spec.output_tokens is OutputLength.DATASET
    if spec.source in (DatasetSource.TRACE, DatasetSource.CONVERSATIONS):
        raise ConfigError(
            f"dataset source {spec.source.value!r} gives requests, not a prompt subset"
            " (servingperf.scenarios.requests builds them)"
        )
    if spec.source is DatasetSource.SHARED_PREFIX and spec.shared_prefix is not None:
        if wants_dataset_lengths:
            raise ConfigError(
                "dataset: shared-prefix prompts have no output length of their own; set"
                " 'output_tokens' to a number"
            )
        shape = spec.shared_prefix
        return shared_prefix_prompts(
            spec.prompts, shape.groups, shape.prefix_tokens, shape.suffix_tokens, spec.seed
        )
    if spec.source is DatasetSource.SYNTHETIC:
        if wants_dataset_lengths:
            raise ConfigError(
                "dataset: synthetic prompts have no output length of their own; set"
                " 'output_tokens' to a number"
            )
        return synthetic_prompts(spec.prompts, spec.synthetic_input_tokens, spec.seed)
    if spec.source is DatasetSource.JSONL:
        if spec.path is None:  # DatasetSpec already refuses this; kept for the type checker
            raise ConfigError("dataset: source 'jsonl' needs 'path' (a local JSONL file)")
        path = resolve_path(spec.path, base_dir)
        name = str(path)
        chosen = choose_subset(read_jsonl(path), spec.prompts, spec.seed, name)
    else:
        name = f"bundled sample {BUNDLED_SOURCE}"
        chosen = choose_subset(read_bundled(), spec.prompts, spec.seed, name)
    if wants_dataset_lengths:
        _require_output_lengths(chosen, name)
    return chosen


def resolve_path(path: str, base_dir: Path) -> Path:
    """``path`` with ``~`` expanded, taken relative to ``base_dir`` unless absolute."""
    expanded = Path(path).expanduser()
    return expanded if expanded.is_absolute() else base_dir / expanded


def choose_subset(
    prompts: Iterable[Prompt], count: int, seed: int, source: str
) -> tuple[Prompt, ...]:
    """``count`` of ``prompts`` drawn uniformly without replacement, fixed by ``seed``.

    Reservoir sampling (Algorithm R): one pass, memory for ``count`` prompts only. The result is
    sorted by prompt index, so the subset reads like its source.
    """
    # A string seed: random.Random(-n) would equal random.Random(n), and a str is hashed the same
    # way on every platform and in every process.
    rng = random.Random(f"servingperf-subset:{seed}")
    reservoir: list[Prompt] = []
    seen = 0
    for prompt in prompts:
        if seen < count:
            reservoir.append(prompt)
        else:
            slot = rng.randrange(seen + 1)
            if slot < count:
                reservoir[slot] = prompt
        seen += 1
    if seen < count:
        raise ConfigError(
            f"{source} has {seen} prompts, fewer than the {count} that dataset 'prompts' asks"
            f" for; lower 'prompts' to at most {seen}"
        )
    reservoir.sort(key=lambda p: p.index)
    return tuple(reservoir)


def output_tokens_for(prompt: Prompt, spec: DatasetSpec) -> int:
    """The output length to request for ``prompt``: the spec's fixed one, or the prompt's own.

    Prompts from :func:`load_prompts` always have their own length when the spec asks for it, so
    the error below means the prompt did not come from there.
    """
    fixed = spec.output_tokens
    if fixed is not OutputLength.DATASET:
        return fixed
    if prompt.expected_output_tokens is None:
        raise ConfigError(
            f"dataset: output_tokens is 'dataset' but prompt {prompt.index} has no output length"
        )
    return prompt.expected_output_tokens


def _require_output_lengths(chosen: tuple[Prompt, ...], source: str) -> None:
    missing = [p.index for p in chosen if p.expected_output_tokens is None]
    if missing:
        shown = ", ".join(str(i) for i in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise ConfigError(
            f"{source}: dataset 'output_tokens' is 'dataset', but {len(missing)} of the"
            f" {len(chosen)} chosen prompts have no output length (prompt numbers, 0-based, blank"
            f" lines not counted: {shown}); give each line 'expected_output_tokens' (or a"
            " 'response') for OpenOrca-style files, 'output_tokens' for plain ones, or set"
            " 'output_tokens' to a number"
        )
