"""Counting the tokens of a streamed chunk's text with a model's own tokenizer, read from a local
Hugging Face ``tokenizer.json`` (a file, or a folder holding one) through the ``tokenizers``
library (the ``tokenizers`` extra). Nothing is ever downloaded: a path that does not exist is a
configuration error, also when it looks like a model hub name.

Limits, stated in the README: each chunk's text is tokenised on its own, without special tokens,
so at chunk boundaries the count can differ from tokenising the whole answer (a merge across the
boundary, a prefix space a SentencePiece tokenizer adds to every piece); and text that the server
holds back (an incomplete UTF-8 sequence) is counted with the chunk that finally carries it. The
server's own per-chunk counts, where it gives them, are always preferred
(:mod:`servingperf.protocols.chunk_tokens`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Protocol

from servingperf.errors import ConfigError

TOKENIZER_FILE = "tokenizer.json"
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


class TokenCounter(Protocol):
    """Counts the tokens of a piece of generated text."""

    def count(self, text: str) -> int: ...


class HuggingFaceCounter:
    """A ``tokenizers.Tokenizer``: the tokens of ``text`` encoded alone, no special tokens."""

    __slots__ = ("_encode", "path")

    def __init__(self, tokenizer: Any, path: Path) -> None:
        self._encode = tokenizer.encode
        self.path = path

    def count(self, text: str) -> int:
        return len(self._encode(text, add_special_tokens=False))


def tokenizer_file(raw: str, base_dir: Path) -> Path:
    """The ``tokenizer.json`` that ``raw`` names (a file, or a folder holding one), relative
    paths from ``base_dir``; ConfigError saying what is wrong, never a download."""
    path = (base_dir / Path(raw).expanduser()).resolve()
    if path.is_dir():
        inside = path / TOKENIZER_FILE
        if not inside.is_file():
            raise ConfigError(f"{raw!r}: the folder {path} holds no {TOKENIZER_FILE}")
        return inside
    if path.is_file():
        return path
    if _HUB_NAME.fullmatch(raw) and not raw.startswith("."):
        raise ConfigError(
            f"{raw!r} is not a local file or folder (it looks like a model hub name): servingperf"
            f" never downloads tokenizers; save the model's {TOKENIZER_FILE} and give its path"
        )
    raise ConfigError(f"{raw!r}: no such file or folder ({path})")


def load_counter(path: str | Path) -> HuggingFaceCounter:
    """The counter of the tokenizer file ``path`` (already resolved by :func:`tokenizer_file`);
    ConfigError when the library is missing or the file is not a tokenizer."""
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise ConfigError(
            "counting tokens with a tokenizer needs the 'tokenizers' package:"
            " pip install 'servingperf[tokenizers]'"
        ) from exc
    file = Path(path)
    try:
        tokenizer = Tokenizer.from_file(str(file))
    except Exception as exc:  # the library raises a bare Exception for a file it cannot read
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{file}: not a Hugging Face tokenizer file: {reason}") from exc
    return HuggingFaceCounter(tokenizer, file)
