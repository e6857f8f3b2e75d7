"""Choosing the run's subset, output lengths, and the per-user prompt sampler."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from servingperf.datasets import (
    Prompt,
    PromptSampler,
    choose_subset,
    load_prompts,
    output_tokens_for,
    read_bundled,
    toy_token_count,
)
from servingperf.errors import ConfigError
from servingperf.model.specs import DatasetSource, DatasetSpec, OutputLength


def write_prompts(path: Path, count: int, *, with_lengths: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(count):
        fields: dict[str, object] = {"prompt": f"prompt number {i}"}
        if with_lengths:
            fields["output_tokens"] = 10 + i
        lines.append(json.dumps(fields))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def pool(count: int) -> list[Prompt]:
    return [Prompt(i, f"p{i}", None, None) for i in range(count)]


def test_relative_path_is_read_from_base_dir_not_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_prompts(tmp_path / "scenario" / "data" / "p.jsonl", 5)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    spec = DatasetSpec(source=DatasetSource.JSONL, path="data/p.jsonl", prompts=5)
    prompts = load_prompts(spec, tmp_path / "scenario")
    assert [p.text for p in prompts] == [f"prompt number {i}" for i in range(5)]


def test_absolute_path_ignores_base_dir(tmp_path: Path) -> None:
    path = write_prompts(tmp_path / "p.jsonl", 3)
    spec = DatasetSpec(source=DatasetSource.JSONL, path=str(path), prompts=3)
    assert len(load_prompts(spec, Path("/nonexistent"))) == 3


def test_missing_file_error_names_the_resolved_path(tmp_path: Path) -> None:
    spec = DatasetSpec(source=DatasetSource.JSONL, path="nope.jsonl")
    with pytest.raises(ConfigError, match=re.escape(str(tmp_path / "nope.jsonl"))):
        load_prompts(spec, tmp_path)


def test_subset_is_deterministic_for_a_seed_and_differs_across_seeds() -> None:
    spec = DatasetSpec(prompts=32, seed=5)
    first = load_prompts(spec, Path("."))
    assert load_prompts(spec, Path(".")) == first
    others = {load_prompts(DatasetSpec(prompts=32, seed=s), Path(".")) for s in (6, 7, -5)}
    assert first not in others
    assert len(others) == 3


def test_subset_has_no_repeats_is_in_source_order_and_from_the_source() -> None:
    bundled = tuple(read_bundled())
    chosen = load_prompts(DatasetSpec(prompts=100, seed=1), Path("."))
    indexes = [p.index for p in chosen]
    assert len(chosen) == 100
    assert indexes == sorted(set(indexes))
    assert all(bundled[p.index] == p for p in chosen)


def test_asking_for_the_whole_source_returns_all_of_it(tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.jsonl", 7)
    spec = DatasetSpec(source=DatasetSource.JSONL, path="p.jsonl", prompts=7, seed=3)
    assert [p.index for p in load_prompts(spec, tmp_path)] == list(range(7))


def test_a_source_too_small_says_how_many_it_has(tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.jsonl", 5)
    spec = DatasetSpec(source=DatasetSource.JSONL, path="p.jsonl", prompts=6)
    with pytest.raises(ConfigError) as caught:
        load_prompts(spec, tmp_path)
    assert str(caught.value) == (
        f"{tmp_path / 'p.jsonl'} has 5 prompts, fewer than the 6 that dataset 'prompts' asks for;"
        " lower 'prompts' to at most 5"
    )
    with pytest.raises(ConfigError, match=r"^bundled sample .* has \d+ prompts, fewer than"):
        load_prompts(DatasetSpec(prompts=100_000), tmp_path)


def test_subset_choice_is_not_biased_by_position() -> None:
    counts: Counter[int] = Counter()
    for seed in range(400):
        counts.update(p.index for p in choose_subset(pool(100), 10, seed, "mem"))
    # 400 draws of 10 from 100: each prompt expected 40 times; far outside [15, 70] means bias.
    assert set(counts) == set(range(100))
    assert min(counts.values()) >= 15
    assert max(counts.values()) <= 70
    first_half = sum(counts[i] for i in range(50))
    assert 1600 <= first_half <= 2400


def test_dataset_output_lengths_are_used_when_asked(tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.jsonl", 4)
    spec = DatasetSpec(
        source=DatasetSource.JSONL, path="p.jsonl", prompts=4, output_tokens=OutputLength.DATASET
    )
    prompts = load_prompts(spec, tmp_path)
    assert [output_tokens_for(p, spec) for p in prompts] == [10, 11, 12, 13]


def test_fixed_output_length_wins_over_the_dataset(tmp_path: Path) -> None:
    spec = DatasetSpec(prompts=3, output_tokens=77)
    prompts = load_prompts(spec, tmp_path)
    assert {output_tokens_for(p, spec) for p in prompts} == {77}
    assert output_tokens_for(Prompt(0, "x", None, None), spec) == 77


def test_missing_dataset_lengths_fail_at_load_time(tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.jsonl", 8, with_lengths=False)
    spec = DatasetSpec(
        source=DatasetSource.JSONL, path="p.jsonl", prompts=7, output_tokens=OutputLength.DATASET
    )
    with pytest.raises(ConfigError) as caught:
        load_prompts(spec, tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'p.jsonl'}: dataset 'output_tokens' is 'dataset'")
    assert "7 of the 7 chosen prompts have no output length" in message
    assert re.search(r"blank lines not counted: \d+, \d+, \d+, \d+, \d+, \.\.\.\)", message)
    with pytest.raises(ConfigError, match=r"prompt 3 has no output length"):
        output_tokens_for(Prompt(3, "x", None, None), spec)


def test_bundled_prompts_all_have_dataset_lengths(tmp_path: Path) -> None:
    spec = DatasetSpec(prompts=200, output_tokens=OutputLength.DATASET)
    lengths = [output_tokens_for(p, spec) for p in load_prompts(spec, tmp_path)]
    assert all(16 <= n <= 512 for n in lengths)


def test_synthetic_source_gives_exact_lengths(tmp_path: Path) -> None:
    spec = DatasetSpec(source=DatasetSource.SYNTHETIC, prompts=9, synthetic_input_tokens=33)
    prompts = load_prompts(spec, tmp_path)
    assert len(prompts) == 9
    assert {toy_token_count(p.text) for p in prompts} == {33}
    assert load_prompts(spec, tmp_path) == prompts


def test_synthetic_source_has_no_dataset_lengths(tmp_path: Path) -> None:
    spec = DatasetSpec(source=DatasetSource.SYNTHETIC, output_tokens=OutputLength.DATASET)
    with pytest.raises(ConfigError, match="synthetic prompts have no output length"):
        load_prompts(spec, tmp_path)


def draws(sampler: PromptSampler, count: int) -> list[int]:
    return [sampler.next().index for _ in range(count)]


def test_sampler_is_reproducible_per_seed_and_user() -> None:
    prompts = tuple(pool(50))
    assert draws(PromptSampler(prompts, seed=1, user=4), 200) == draws(
        PromptSampler(prompts, seed=1, user=4), 200
    )
    sequences = {
        tuple(draws(PromptSampler(prompts, seed=seed, user=user), 50))
        for seed, user in [(1, 4), (1, 5), (2, 4), (4, 1), (-1, 4)]
    }
    assert len(sequences) == 5


def test_sampler_draws_uniformly_from_its_prompts_only() -> None:
    prompts = tuple(pool(10))
    counts = Counter(draws(PromptSampler(prompts, seed=0, user=0), 5000))
    # Each expected 500 times; a bound this wide only trips on a real bias.
    assert set(counts) == set(range(10))
    assert all(380 <= n <= 620 for n in counts.values())


def test_sampler_returns_the_same_prompt_objects() -> None:
    prompts = tuple(pool(3))
    sampler = PromptSampler(prompts, seed=0, user=0)
    assert all(any(p is q for q in prompts) for p in (sampler.next() for _ in range(20)))


def test_sampler_needs_prompts() -> None:
    with pytest.raises(ConfigError, match="at least one prompt"):
        PromptSampler((), seed=0, user=0)
