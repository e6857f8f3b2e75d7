"""A real Hugging Face ``tokenizer.json`` for the emulator's toy tokens, made on the spot.

Word-level over the emulator's generated words, split by the ``Whitespace`` pre-tokenizer, so that
the ``tokenizers`` library counts a text of ``n`` emulator tokens as ``n``: the tokenizer a test
scenario names (nothing is downloaded; the file is built from the emulator's own word list).
"""

from __future__ import annotations

from pathlib import Path

from servingperf.emulator.tokenizer import TOKEN_TEXTS


def write_toy_tokenizer(folder: Path) -> Path:
    """Write ``folder/tokenizer.json`` and return its path."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = sorted({text.strip() for text in TOKEN_TEXTS})
    vocab = {"[UNK]": 0, **{word: i + 1 for i, word in enumerate(words)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tokenizer.json"
    tokenizer.save(str(path))
    return path
