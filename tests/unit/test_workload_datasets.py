"""Workload sources (#18) as pure functions: traces in three formats, prompts cut from a word pool,
shared prefixes, conversations."""

from __future__ import annotations

from pathlib import Path

import pytest

from servingperf.datasets.conversations import read_conversations, synthetic_conversations
from servingperf.datasets.shared_prefix import expected_hit_share, shared_prefix_prompts
from servingperf.datasets.trace_prompts import TracePrompts
from servingperf.datasets.traces import TraceRequest, read_trace
from servingperf.datasets.word_pool import WordPool
from servingperf.errors import ConfigError


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_mooncake_trace_is_read_in_seconds_from_the_first_request(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "t.jsonl",
        '{"timestamp": 3052, "input_length": 7234, "output_length": 794, "hash_ids": [0, 28]}\n'
        "\n"
        '{"timestamp": 1000, "input_length": 655, "output_length": 52, "hash_ids": [0, 1]}\n',
    )
    trace = read_trace(path, "mooncake")
    assert trace == (
        TraceRequest(0.0, 655, 52, (0, 1)),  # sorted by arrival, offsets from the first
        TraceRequest(2.052, 7234, 794, (0, 28)),
    )


def test_an_azure_trace_is_read_with_its_fractional_seconds(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "t.csv",
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.6805900,374,44\n"
        "2023-11-16 18:15:50.9951690,396,109\n",
    )
    trace = read_trace(path, "azure")
    assert [(r.input_tokens, r.output_tokens) for r in trace] == [(374, 44), (396, 109)]
    assert trace[1].t_s == pytest.approx(50.995169 - 46.68059, abs=1e-6)
    assert trace[0].hash_ids is None


def test_our_own_trace_format(tmp_path: Path) -> None:
    path = _write(tmp_path, "t.jsonl", '{"t_s": 0.5, "input_tokens": 10, "output_tokens": 4}\n')
    assert read_trace(path, "jsonl") == (TraceRequest(0.0, 10, 4),)


@pytest.mark.parametrize(
    ("fmt", "text", "message"),
    [
        (
            "mooncake",
            '{"timestamp": 1, "input_length": 0, "output_length": 2}',
            ":1: 'input_length'",
        ),
        ("mooncake", '{"timestamp": -1, "input_length": 3, "output_length": 2}', ":1: 'timestamp'"),
        ("mooncake", "not json", ":1: not JSON"),
        (
            "mooncake",
            '{"timestamp": 1, "input_length": 3, "output_length": 2, "hash_ids": "x"}',
            "hash_ids",
        ),
        ("azure", "TIMESTAMP,Tokens\n2023-01-01 00:00:00,3", "lacks ContextTokens"),
        ("azure", "TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,3,4", ":2: 'TIMESTAMP'"),
        ("jsonl", "", "no requests"),
        ("parquet", "{}", "known formats"),
    ],
)
def test_a_bad_trace_names_the_file_line_and_field(
    tmp_path: Path, fmt: str, text: str, message: str
) -> None:
    path = _write(tmp_path, "bad.trace", text)
    with pytest.raises(ConfigError, match=message) as info:
        read_trace(path, fmt)
    if fmt in ("mooncake", "azure") and ":" in message:
        assert str(path) in str(info.value)


def test_word_pool_cuts_runs_of_words_and_wraps() -> None:
    pool = WordPool(1000, seed=1)
    words = pool.text(0, 1000).split(" ")
    assert len(words) == 1000
    assert pool.text(10, 5).split(" ") == words[10:15]
    assert pool.text(998, 4).split(" ") == words[998:] + words[:2]
    assert pool.text(3, 7) == WordPool(1000, seed=1).text(3, 7)  # reproducible
    assert pool.text(3, 7) != WordPool(1000, seed=2).text(3, 7)


def test_trace_prompts_share_the_blocks_their_hash_ids_share() -> None:
    trace = (
        TraceRequest(0.0, 10, 1, (7, 8, 9)),
        TraceRequest(0.1, 9, 1, (7, 8, 5)),
        TraceRequest(0.2, 5, 1, (6,)),
        TraceRequest(0.3, 6, 1, None),
    )
    prompts = TracePrompts(trace, block_tokens=4, seed=0)
    texts = [prompts.text(i).split(" ") for i in range(4)]
    assert [len(t) for t in texts] == [10, 9, 5, 6]  # each has its recorded length
    assert texts[0][:8] == texts[1][:8]  # blocks 7 and 8 in common: 8 words
    assert texts[0][8:] != texts[1][8:9]
    assert texts[2][:4] != texts[0][:4]  # another block from the start
    assert texts[3][:3] != texts[0][:3]
    assert prompts.text(0) == TracePrompts(trace, block_tokens=4, seed=0).text(0)


def test_shared_prefix_prompts_are_identical_within_a_group_only() -> None:
    prompts = shared_prefix_prompts(count=12, groups=3, prefix_tokens=20, suffix_tokens=5, seed=4)
    assert len(prompts) == 12
    prefix = [" ".join(p.text.split(" ")[:20]) for p in prompts]
    suffix = [" ".join(p.text.split(" ")[20:]) for p in prompts]
    assert all(len(p.text.split(" ")) == 25 for p in prompts)
    for i in range(12):
        assert prefix[i] == prefix[i % 3]  # byte-identical within the group
    assert len({prefix[i] for i in range(3)}) == 3
    assert len(set(suffix)) == 12
    assert expected_hit_share(512, 32) == pytest.approx(512 / 544)
    assert expected_hit_share(20, 5, cache_block_tokens=16) == pytest.approx(16 / 25)
    with pytest.raises(ConfigError, match="prefix groups"):
        shared_prefix_prompts(count=2, groups=3, prefix_tokens=2, suffix_tokens=2, seed=0)


def test_conversations_in_sharegpt_and_openai_shapes(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "c.jsonl",
        '{"id": "a", "conversations": [{"from": "system", "value": "be brief"},'
        ' {"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"},'
        ' {"from": "human", "value": "more"}]}\n'
        '{"messages": [{"role": "user", "content": "one"}, {"role": "assistant", "content": "x"},'
        ' {"role": "user", "content": "two"}, {"role": "user", "content": "three"}]}\n',
    )
    conversations = read_conversations(path)
    assert conversations[0].system_prompt == "be brief"
    assert conversations[0].user_turns == ("hi", "more")
    assert conversations[1].user_turns == ("one", "two", "three")
    assert read_conversations(path, max_turns=2)[1].user_turns == ("one", "two")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"conversations": [{"from": "gpt", "value": "x"}]}', "no user turn"),
        ('{"messages": [{"role": "wizard", "content": "x"}]}', "unknown role 'wizard'"),
        ('{"text": "x"}', "no 'conversations'"),
        ('{"turns": [{"role": "user"}]}', "turns\\[0\\]"),
    ],
)
def test_a_bad_conversation_names_its_line(tmp_path: Path, line: str, message: str) -> None:
    path = _write(tmp_path, "c.jsonl", line + "\n")
    with pytest.raises(ConfigError, match=message) as info:
        read_conversations(path)
    assert f"{path}:1" in str(info.value)


def test_synthetic_conversations_have_distinct_turns_of_the_asked_length() -> None:
    sessions = synthetic_conversations(sessions=3, turns=4, tokens_per_turn=7, seed=0)
    turns = [t for s in sessions for t in s.user_turns]
    assert len(turns) == 12 and len(set(turns)) == 12
    assert all(len(t.split(" ")) == 7 for t in turns)
