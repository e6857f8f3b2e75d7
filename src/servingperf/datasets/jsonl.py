"""Prompts from JSONL files: one JSON object per line, streamed line by line.

A file uses one of two *line formats*; its first non-blank line decides which, and every other
line must follow it:

- *OpenOrca-style*: ``{"system_prompt": "...", "question": "...", "expected_output_tokens": 64}``.
  ``system_prompt`` may be absent, null or empty. Without ``expected_output_tokens``, a string
  ``response`` (as in the OpenOrca dumps) gives an estimate: its toy-token count.
- *plain*: ``{"prompt": "...", "output_tokens": 64}``; ``output_tokens`` and ``system_prompt``
  are optional.

Other keys (``id`` and the like, common in exported data sets) are ignored, because files come
from tools we do not control. Whitespace-only lines are skipped. A line is read with a size limit,
so one runaway line cannot exhaust memory, and prompts are yielded as they are parsed, so a large
file is held in memory at most once (by whoever keeps the prompts). Every problem is a
:class:`~servingperf.errors.ConfigError` naming the file, the line and what is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from servingperf.datasets.prompts import Prompt, toy_token_count
from servingperf.errors import ConfigError

MAX_PROMPT_BYTES = 1_000_000
"""Largest prompt accepted, in UTF-8 bytes of question plus system prompt."""

MAX_LINE_BYTES = 8_000_000
"""Largest line read, newline included: room for a maximal prompt plus a long ``response``."""

MAX_OUTPUT_TOKENS = 1_000_000
"""Largest output length a line may state (the bound ``DatasetSpec.output_tokens`` has too)."""


@dataclass(frozen=True, slots=True)
class LineFormat:
    """The keys one line format uses."""

    name: str
    text_key: str
    output_key: str
    response_key: str | None  # a reference answer whose length estimates the output length


OPENORCA = LineFormat("OpenOrca-style", "question", "expected_output_tokens", "response")
PLAIN = LineFormat("plain", "prompt", "output_tokens", None)


def read_jsonl(path: Path) -> Iterator[Prompt]:
    """Yield the prompts of the JSONL file at ``path``, in file order, validating each line.

    Lazy: the file is opened when iteration starts and closed when it ends (or the iterator is
    closed). Unreadable files raise ``ConfigError`` like bad lines do.
    """
    try:
        stream = path.open("rb")
    except OSError as exc:
        raise ConfigError(f"dataset file {path}: cannot be opened: {_os_reason(exc)}") from exc
    with stream:
        yield from parse_jsonl(stream, str(path))


def parse_jsonl(
    stream: IO[bytes],
    source: str,
    *,
    max_prompt_bytes: int = MAX_PROMPT_BYTES,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Iterator[Prompt]:
    """Yield prompts from a binary stream of JSONL; ``source`` names it in error messages.

    Raises ``ConfigError`` when the stream holds no prompt at all: an empty dataset is a mistake
    the user should hear about before any load is sent.
    """
    line_format: LineFormat | None = None
    format_line = 0
    index = 0
    line_no = 0
    while True:
        try:
            raw = stream.readline(max_line_bytes + 1)
        except OSError as exc:
            raise ConfigError(f"{source}:{line_no + 1}: cannot be read: {_os_reason(exc)}") from exc
        if not raw:
            break
        line_no += 1
        where = f"{source}:{line_no}"
        if len(raw) > max_line_bytes:
            raise ConfigError(
                f"{where}: line is longer than {max_line_bytes} bytes; a prompt may be at most"
                f" {max_prompt_bytes} bytes (UTF-8)"
            )
        obj = _decode_line(raw, where, first=line_no == 1)
        if obj is None:
            continue
        if line_format is None:
            line_format = _detect_format(obj, where)
            format_line = line_no
        yield _to_prompt(obj, line_format, format_line, index, where, max_prompt_bytes)
        index += 1
    if line_format is None:
        raise ConfigError(f"{source}: no prompts (the file is empty or has only blank lines)")


def _decode_line(raw: bytes, where: str, *, first: bool) -> dict[str, object] | None:
    """The line's JSON object, or None for a blank line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{where}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of"
            " the line); save the file as UTF-8"
        ) from exc
    if first and text.startswith("\ufeff"):
        text = text[1:]  # a byte-order mark some editors write
    text = text.rstrip("\r\n")  # else a line cut inside a string reads as a control character
    if not text.strip():
        return None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: not valid JSON: {exc.msg} (column {exc.colno})") from exc
    except RecursionError as exc:
        raise ConfigError(f"{where}: not usable JSON: nested too deeply") from exc
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {_json_kind(obj)}")
    return obj


def _detect_format(obj: dict[str, object], where: str) -> LineFormat:
    has_question = OPENORCA.text_key in obj
    has_prompt = PLAIN.text_key in obj
    if has_question and has_prompt:
        raise ConfigError(
            f"{where}: has both 'question' (OpenOrca-style) and 'prompt' (plain); a file uses"
            " one format, so keep one of the two fields"
        )
    if has_question:
        return OPENORCA
    if has_prompt:
        return PLAIN
    keys = ", ".join(repr(k) for k in list(obj)[:10]) or "none"
    raise ConfigError(
        f"{where}: field 'question' (OpenOrca-style) or 'prompt' (plain) is missing;"
        f" keys found: {keys}"
    )


def _to_prompt(
    obj: dict[str, object],
    line_format: LineFormat,
    format_line: int,
    index: int,
    where: str,
    max_prompt_bytes: int,
) -> Prompt:
    key = line_format.text_key
    if key not in obj:
        raise ConfigError(
            f"{where}: field {key!r} is missing (the file is {line_format.name}, as its line"
            f" {format_line} shows)"
        )
    text = obj[key]
    if not isinstance(text, str):
        raise ConfigError(f"{where}: field {key!r} must be a string, not {_json_kind(text)}")
    if not text.strip():
        raise ConfigError(f"{where}: field {key!r} is empty; every line needs a prompt")
    system = obj.get("system_prompt")
    if system is not None and not isinstance(system, str):
        raise ConfigError(
            f"{where}: field 'system_prompt' must be a string or null, not {_json_kind(system)}"
        )
    system_prompt = system if system and system.strip() else None
    size = _utf8_size(text, where, key)
    if system_prompt is not None:
        size += _utf8_size(system_prompt, where, "system_prompt")
    if size > max_prompt_bytes:
        raise ConfigError(
            f"{where}: prompt is {size} bytes (UTF-8, system prompt included); the limit is"
            f" {max_prompt_bytes} bytes"
        )
    return Prompt(
        index=index,
        text=text,
        system_prompt=system_prompt,
        expected_output_tokens=_output_tokens(obj, line_format, where),
    )


def _output_tokens(obj: dict[str, object], line_format: LineFormat, where: str) -> int | None:
    key = line_format.output_key
    value = obj.get(key)
    if value is not None:
        # bool is an int subclass; JSON's true is not a length.
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # pandas writes nullable integer columns as 64.0
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not 1 <= value <= MAX_OUTPUT_TOKENS
        ):
            raise ConfigError(
                f"{where}: field {key!r} must be a whole number from 1 to {MAX_OUTPUT_TOKENS},"
                f" not {json.dumps(value)[:40]}"
            )
        return value
    if line_format.response_key is None:
        return None
    response = obj.get(line_format.response_key)
    if response is None:
        return None
    if not isinstance(response, str):
        raise ConfigError(
            f"{where}: field {line_format.response_key!r} must be a string or null, not"
            f" {_json_kind(response)}"
        )
    estimate = toy_token_count(response)
    return min(estimate, MAX_OUTPUT_TOKENS) if estimate else None


def _utf8_size(text: str, where: str, key: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        # JSON escapes such as "\ud800" decode to lone surrogates no server could be sent.
        code = ord(text[exc.start])
        raise ConfigError(
            f"{where}: field {key!r} holds an unpaired surrogate escape (\\u{code:04x} at"
            f" character {exc.start + 1}); it cannot be sent as UTF-8"
        ) from exc


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc)
