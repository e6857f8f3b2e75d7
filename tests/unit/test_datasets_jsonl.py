"""JSONL reading: both line formats, and every error naming its file and line."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from servingperf.datasets import MAX_PROMPT_BYTES, Prompt, parse_jsonl, read_jsonl
from servingperf.errors import ConfigError


def write_lines(path: Path, lines: list[str | bytes]) -> Path:
    data = b"".join((ln if isinstance(ln, bytes) else ln.encode()) + b"\n" for ln in lines)
    path.write_bytes(data)
    return path


def row(**fields: object) -> str:
    return json.dumps(fields)


def read(path: Path) -> list[Prompt]:
    return list(read_jsonl(path))


def test_openorca_lines(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "orca.jsonl",
        [
            row(id="a1", system_prompt="Be brief.", question="Why?", expected_output_tokens=20),
            row(system_prompt="", question="How?", response="one two three"),
            row(question="What?", expected_output_tokens=7, response="ignored when expected given"),
            row(system_prompt=None, question="Who?", response=""),
            row(system_prompt="   ", question="When?", expected_output_tokens=64.0),
        ],
    )
    assert read(path) == [
        Prompt(0, "Why?", "Be brief.", 20),
        Prompt(1, "How?", None, 3),
        Prompt(2, "What?", None, 7),
        Prompt(3, "Who?", None, None),
        Prompt(4, "When?", None, 64),
    ]


def test_plain_lines(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "plain.jsonl",
        [
            row(prompt="Hello there", output_tokens=32),
            row(prompt="No length", extra={"kept": False}),
            row(prompt="With system", system_prompt="You are terse."),
        ],
    )
    assert read(path) == [
        Prompt(0, "Hello there", None, 32),
        Prompt(1, "No length", None, None),
        Prompt(2, "With system", "You are terse.", None),
    ]


def test_text_is_kept_verbatim(tmp_path: Path) -> None:
    text = "  Line one\n\tLine two — ünïcödé ✓  "
    path = write_lines(tmp_path / "p.jsonl", [row(prompt=text)])
    assert read(path)[0].text == text


def test_blank_lines_bom_and_crlf_are_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_bytes(
        b"\xef\xbb\xbf"
        + row(prompt="first").encode()
        + b"\r\n\r\n   \n"
        + row(prompt="second").encode()
        + b"\r\n\n"
        + row(prompt="third").encode()  # no final newline
    )
    assert [(p.index, p.text) for p in read(path)] == [(0, "first"), (1, "second"), (2, "third")]


def test_prompts_are_yielded_as_lines_are_read() -> None:
    stream = io.BytesIO(b"\n".join([row(prompt="a").encode(), row(prompt="b").encode(), b"{"]))
    prompts = parse_jsonl(stream, "mem")
    assert next(prompts).text == "a"
    assert next(prompts).text == "b"
    with pytest.raises(ConfigError, match=r"^mem:3: not valid JSON"):
        next(prompts)


ERROR_CASES = [
    pytest.param(
        [row(question="ok"), row(question="ok"), '{"question": "unterminated'],
        3,
        "not valid JSON: Unterminated string",
        id="bad-json",
    ),
    pytest.param(
        [row(question="ok"), '["a list"]'],
        2,
        "expected a JSON object, got an array",
        id="not-an-object",
    ),
    pytest.param(
        [row(question="ok"), "42"], 2, "expected a JSON object, got the number 42", id="number-line"
    ),
    pytest.param(
        [row(question="ok"), row(system_prompt="s", prompt="x")],
        2,
        "field 'question' is missing (the file is OpenOrca-style, as its line 1 shows)",
        id="missing-question",
    ),
    pytest.param(
        ["", row(prompt="ok"), row(question="x")],
        3,
        "field 'prompt' is missing (the file is plain, as its line 2 shows)",
        id="missing-prompt",
    ),
    pytest.param(
        [row(text="hi", id=3)],
        1,
        "field 'question' (OpenOrca-style) or 'prompt' (plain) is missing; keys found: 'text', 'id'",
        id="no-known-field",
    ),
    pytest.param([row(question="a", prompt="b")], 1, "has both 'question'", id="both-fields"),
    pytest.param(
        [row(question="ok"), row(question=5)],
        2,
        "field 'question' must be a string, not the number 5",
        id="question-number",
    ),
    pytest.param(
        [row(prompt=None)], 1, "field 'prompt' must be a string, not null", id="prompt-null"
    ),
    pytest.param(
        [row(question="ok"), row(question="")], 2, "field 'question' is empty", id="empty-question"
    ),
    pytest.param([row(prompt=" \n\t ")], 1, "field 'prompt' is empty", id="blank-prompt"),
    pytest.param(
        [row(question="q", system_prompt=["x"])],
        1,
        "field 'system_prompt' must be a string or null, not an array",
        id="system-prompt-type",
    ),
    pytest.param(
        [row(question="q", expected_output_tokens="many")],
        1,
        "field 'expected_output_tokens' must be a whole number from 1 to 1000000, not \"many\"",
        id="expected-string",
    ),
    pytest.param([row(question="q", expected_output_tokens=0)], 1, "not 0", id="expected-zero"),
    pytest.param(
        [row(question="q", expected_output_tokens=True)], 1, "not true", id="expected-bool"
    ),
    pytest.param(
        [row(question="q", expected_output_tokens=12.5)], 1, "not 12.5", id="expected-fraction"
    ),
    pytest.param(
        [row(prompt="q", output_tokens=2_000_000)],
        1,
        "field 'output_tokens' must be a whole number",
        id="output-too-large",
    ),
    pytest.param(
        [row(question="q", response=17)],
        1,
        "field 'response' must be a string or null, not the number 17",
        id="response-type",
    ),
    pytest.param(
        [row(question="ok"), b'{"question": "caf\xe9"}'],
        2,
        "not valid UTF-8 (byte 0xe9 at byte 18 of the line)",
        id="not-utf8",
    ),
    pytest.param(
        [row(question="ok"), '{"question": "a\\ud800b"}'],
        2,
        "unpaired surrogate escape (\\ud800 at character 2)",
        id="lone-surrogate",
    ),
    pytest.param(["[" * 100_000], 1, "nested too deeply", id="deep-nesting"),
]


@pytest.mark.parametrize(("lines", "line_no", "message"), ERROR_CASES)
def test_errors_name_file_line_and_problem(
    tmp_path: Path, lines: list[str | bytes], line_no: int, message: str
) -> None:
    path = write_lines(tmp_path / "bad.jsonl", lines)
    with pytest.raises(ConfigError) as caught:
        read(path)
    text = str(caught.value)
    assert text.startswith(f"{path}:{line_no}: "), text
    assert message in text


def test_foreign_errors_are_chained(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "bad.jsonl", ["{nope"])
    with pytest.raises(ConfigError) as caught:
        read(path)
    assert isinstance(caught.value.__cause__, json.JSONDecodeError)


def test_prompt_size_is_capped_system_prompt_included(tmp_path: Path) -> None:
    at_limit = "x" * MAX_PROMPT_BYTES
    half = "y" * (MAX_PROMPT_BYTES // 2)
    path = write_lines(
        tmp_path / "big.jsonl",
        [
            row(prompt=at_limit),
            row(prompt=half, system_prompt=half),
            row(prompt=half + "é", system_prompt=half),  # é is 2 bytes in UTF-8
        ],
    )
    with pytest.raises(ConfigError) as caught:
        read(path)
    assert str(caught.value) == (
        f"{path}:3: prompt is 1000002 bytes (UTF-8, system prompt included); the limit is"
        " 1000000 bytes"
    )


def test_overlong_line_is_refused_without_reading_it_whole() -> None:
    stream = io.BytesIO(row(prompt="short").encode() + b"\n" + row(prompt="z" * 500).encode())
    with pytest.raises(ConfigError, match=r"^mem:2: line is longer than 100 bytes; a prompt"):
        list(parse_jsonl(stream, "mem", max_line_bytes=100))
    assert stream.tell() <= len(row(prompt="short")) + 1 + 101


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_a_file_without_prompts_is_an_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=re.escape(f"{path}: no prompts")):
        read(path)


def test_missing_file_and_directory_are_config_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(ConfigError, match=re.escape(f"dataset file {missing}: cannot be opened")):
        read(missing)
    with pytest.raises(ConfigError, match=re.escape(f"dataset file {tmp_path}: cannot be opened")):
        read(tmp_path)
