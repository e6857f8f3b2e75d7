"""The prompt: one unit of input a virtual user sends, whatever source it came from.

A *toy token* is a whitespace-separated word. It is the unit of ``synthetic_input_tokens`` and of
the estimate made from an OpenOrca ``response`` when a line gives no expected output length; it is
not any model's tokenizer, only a stable, tokenizer-free measure of length.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Prompt:
    """One prompt, immutable and cheap to pass to the engine's workers.

    ``index`` is the prompt's 0-based position in its source (the line order of a JSONL file, not
    counting blank lines), so a request record's ``prompt_index`` leads back to the exact prompt
    for as long as the source file is unchanged. ``system_prompt`` is ``None`` when the source has
    none or an empty one. ``expected_output_tokens`` is the source's own output length, used only
    when the dataset's ``output_tokens`` is ``dataset``.
    """

    index: int
    text: str
    system_prompt: str | None
    expected_output_tokens: int | None


def toy_token_count(text: str) -> int:
    """Count toy tokens (whitespace-separated words) in ``text``."""
    return len(text.split())
