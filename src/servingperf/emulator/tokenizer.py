"""The emulator's toy tokenizer: how prompts are counted and what generated tokens say.

This is NOT any real model's tokenizer. A *token*, here, is a run of word characters or a single
punctuation character (``\\w+|[^\\w\\s]``); whitespace separates and is not counted. Generated
token ``i`` is a short lower-case word with a leading space, taken from a fixed list, so a text of
``n`` generated tokens counts back as exactly ``n`` tokens. Everything is deterministic: the same
text always gives the same count and token ``i`` is always the same word.
"""

from __future__ import annotations

import json
import re

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")

_WORDS = (
    "the", "model", "serves", "a", "token", "stream", "of", "plain", "words", "for", "load",
    "tests", "and", "each", "one", "counts", "as", "single", "unit", "in", "this", "toy",
    "scheme", "so", "lengths", "stay", "exact", "when", "read", "back", "by", "client",
    "batch", "step", "queue", "prompt", "decode", "prefill", "cache", "reply", "short", "long",
    "fast", "slow", "steady", "quiet", "bright", "river", "stone", "cloud", "field", "light",
    "north", "south", "east", "west", "green", "blue", "red", "gold", "iron", "glass", "paper",
    "signal",
)  # fmt: skip

# Odd stride coprime with the list length: consecutive tokens differ, the cycle covers every word.
_STRIDE = 17

TOKEN_TEXTS: tuple[str, ...] = tuple(
    " " + _WORDS[(i * _STRIDE) % len(_WORDS)] for i in range(len(_WORDS))
)
"""Generated token texts by ``index % len(TOKEN_TEXTS)``."""

TOKEN_JSON: tuple[str, ...] = tuple(json.dumps(text) for text in TOKEN_TEXTS)
"""The same texts as JSON string literals, pre-encoded for the streaming hot path."""


TOKEN_ID_BASE = 100
"""Generated token ``i`` has id ``TOKEN_ID_BASE + i % len(TOKEN_TEXTS)`` (vLLM's ``token_ids``)."""


def token_id(index: int) -> int:
    """The id of generated token ``index``."""
    return TOKEN_ID_BASE + index % len(TOKEN_TEXTS)


def tokens_text(start: int, end: int) -> str:
    """The text of generated tokens ``start`` to ``end - 1``."""
    return "".join(token_text(i) for i in range(start, end))


def tokens_of(text: str) -> list[str]:
    """The toy tokens of ``text``, in order (what the prefix cache hashes)."""
    return _TOKEN_RE.findall(text)


def generated_tokens(tokens: int) -> list[str]:
    """The toy tokens of the first ``tokens`` generated tokens (a finished answer's, for the
    prefix cache: the next turn of a conversation sends the answer back)."""
    return [token_text(i).strip() for i in range(tokens)]


def count_tokens(text: str) -> int:
    """The number of toy tokens in ``text`` (words and punctuation marks)."""
    return len(_TOKEN_RE.findall(text))


def token_text(index: int) -> str:
    """The text of generated token ``index`` (0-based): a word with a leading space."""
    return TOKEN_TEXTS[index % len(TOKEN_TEXTS)]


def generated_text(tokens: int) -> str:
    """The full text of ``tokens`` generated tokens, as a non-streaming response carries it."""
    n = len(TOKEN_TEXTS)
    whole, rest = divmod(tokens, n)
    return "".join(TOKEN_TEXTS) * whole + "".join(TOKEN_TEXTS[:rest])
