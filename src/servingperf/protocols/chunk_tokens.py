"""The one rule every streaming client follows to count the tokens of a response chunk.

Terms. A chunk is *token-bearing* when it carries generated text (content or reasoning); a chunk
without text (a role chunk, a usage chunk, a token whose text the server holds back) never sets
the first-token time. Its tokens are counted, best source first (:class:`ChunkTokenSource`):

1. the server's per-chunk count when the chunk has one (vLLM's running usage with
   ``continuous_usage_stats``, its ``token_ids`` with ``return_token_ids``; TGIS's and caikit's
   cumulative counts; KServe's ``num_output_tokens``);
2. else the chunk's text through the scenario's tokenizer (:mod:`servingperf.protocols.token_counter`);
3. else one token per token-bearing chunk.

Tokens the server counts on a chunk without text (vLLM streams ``""`` for a token that ends in an
incomplete UTF-8 sequence, or a special token skipped in detokenisation) are *carried*: the next
token-bearing chunk, which brings their text, carries them too, so ITL stays per token; tokens
still carried when the stream ends (an end-of-sequence token) count in the streamed count but in
no chunk (``Exchange.tokens_without_text``). Where the server counts, its count is the authority:
a chunk with text but no new token (its text belongs to tokens already counted) bears none.
"""

from __future__ import annotations

from servingperf.model.records import ChunkTokenSource, Exchange
from servingperf.protocols.token_counter import TokenCounter

SERVER = ChunkTokenSource.SERVER
TOKENIZER = ChunkTokenSource.TOKENIZER
CHUNKS = ChunkTokenSource.CHUNKS


def note_chunk(
    exchange: Exchange,
    now: float,
    text: str,
    server_tokens: int | None,
    counter: TokenCounter | None,
    *,
    content: bool = True,
) -> None:
    """Account one chunk that arrived at ``now`` with ``text`` ("" for none) and the server's
    count of its tokens (None when the server gave none for it)."""
    if not text:
        if server_tokens:
            exchange.tokens_without_text += server_tokens
        return
    carried = exchange.tokens_without_text
    if server_tokens is not None:
        tokens, source = server_tokens + carried, SERVER
        if tokens <= 0:  # text of tokens already counted: the server's count is the authority
            return
    elif counter is not None:
        tokens, source = max(1, counter.count(text)) + carried, TOKENIZER
    else:
        tokens, source = 1 + carried, CHUNKS
    exchange.tokens_without_text = 0
    exchange.token_chunk(now, tokens, content=content, source=source)
