"""The one counting rule of streamed chunks (servingperf.protocols.chunk_tokens): the server's
per-chunk count first, then the tokenizer, then one per chunk; tokens on chunks without text
are carried by the next chunk with text."""

from __future__ import annotations

from pathlib import Path

import pytest

from servingperf.errors import ConfigError
from servingperf.model.records import ChunkTokenSource, Exchange, GenerationRequest
from servingperf.protocols.chunk_tokens import note_chunk
from servingperf.protocols.token_counter import load_counter, tokenizer_file
from tests.support.toy_tokenizer import write_toy_tokenizer


class Words:
    """Counts whitespace-separated words (a stand-in with a known answer)."""

    def count(self, text: str) -> int:
        return len(text.split())


def _exchange() -> Exchange:
    return Exchange(GenerationRequest("r", "m", "p", 8), 0.0, 0.0)


def test_server_counts_win_and_text_less_tokens_are_carried() -> None:
    ex = _exchange()
    note_chunk(ex, 1.0, "", 1, Words())  # held back: no first token yet
    note_chunk(ex, 2.0, "", 1, Words())
    assert (ex.chunk_monos, ex.tokens_without_text) == ([], 2)
    note_chunk(ex, 3.0, "日本", 1, Words())
    note_chunk(ex, 4.0, " a b", 2, Words())
    assert ex.chunk_tokens == [3, 2] and ex.chunk_monos == [3.0, 4.0]
    assert ex.mono_first_token == 3.0  # the first chunk with text
    note_chunk(ex, 5.0, "", 1, Words())  # end of sequence, no text after it
    assert ex.streamed_tokens == 6 and ex.tokens_without_text == 1
    assert ex.chunk_source is ChunkTokenSource.SERVER


def test_text_the_server_counts_no_token_for_bears_none() -> None:
    ex = _exchange()
    note_chunk(ex, 1.0, "a", 1, None)
    note_chunk(ex, 2.0, "b", 0, None)  # text of a token already counted
    assert ex.chunk_tokens == [1] and ex.streamed_tokens == 1


def test_tokenizer_then_one_per_chunk() -> None:
    ex = _exchange()
    note_chunk(ex, 1.0, " a b c d", None, Words())
    note_chunk(ex, 2.0, "   ", None, Words())  # text that tokenises to nothing is still a token
    note_chunk(ex, 3.0, " a b", None, None)
    note_chunk(ex, 4.0, "", None, None)  # nothing: no count, no text
    assert ex.chunk_tokens == [4, 1, 1]
    assert ex.chunk_source is ChunkTokenSource.MIXED


def test_reasoning_text_is_a_first_token_not_a_first_content() -> None:
    ex = _exchange()
    note_chunk(ex, 1.0, "thinking", None, None, content=False)
    note_chunk(ex, 2.0, "answer", None, None)
    assert (ex.mono_first_token, ex.mono_first_content) == (1.0, 2.0)


def test_a_real_tokenizer_file_counts_the_emulators_words(tmp_path: Path) -> None:
    path = write_toy_tokenizer(tmp_path / "toy")
    assert tokenizer_file(str(tmp_path / "toy"), Path("/")) == path  # a folder holding one
    counter = load_counter(tokenizer_file("toy/tokenizer.json", tmp_path))  # relative path
    assert counter.count(" the model serves a") == 4


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("meta-llama/Llama-3.1-8B", "looks like a model hub name"),
        ("missing.json", "no such file or folder"),
        ("empty", "holds no tokenizer.json"),
    ],
)
def test_a_tokenizer_that_is_not_a_local_file_is_a_config_error(
    tmp_path: Path, raw: str, message: str
) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=message):
        tokenizer_file(raw, tmp_path)


def test_a_file_that_is_not_a_tokenizer_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "tokenizer.json"
    bad.write_text('{"not": "a tokenizer"}')
    with pytest.raises(ConfigError, match="not a Hugging Face tokenizer file"):
        load_counter(bad)
