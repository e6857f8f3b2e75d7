"""Prompts for a replayed trace: each request's text has its recorded input length, and requests
whose trace rows share leading hash ids share that prompt prefix, byte for byte.

Terms (:mod:`servingperf.datasets.traces`). A trace row's *hash ids* name its prompt's blocks of
``block_tokens`` tokens; the text of block ``h`` is a fixed cut of the :class:`WordPool` chosen by
``h``, so every request naming ``h`` at the same position carries the same words there, and a
server's prefix cache sees what the recorded workload's would have. The last block is cut to the
row's input length; a row without hash ids gets a cut of its own (no prefix shared with any other
row). Lengths are in toy tokens (words), the unit of every synthetic prompt: a real tokenizer
gives about one token per word of this vocabulary, not exactly one.
"""

from __future__ import annotations

from collections.abc import Sequence

from servingperf.datasets.traces import TraceRequest
from servingperf.datasets.word_pool import DEFAULT_POOL_WORDS, WordPool

MOONCAKE_BLOCK_TOKENS = 512
_SPREAD = 104_729  # a prime: row k's own cut starts at k * _SPREAD (mod the pool), all distinct
_MIX = 2_654_435_761  # Knuth's multiplicative hash: block ids spread over the pool


class TracePrompts:
    """The prompt text of each row of ``trace``, built when asked (on the send path: a few
    string slices per request)."""

    __slots__ = ("_block", "_blocks", "_pool", "_trace")

    def __init__(
        self,
        trace: Sequence[TraceRequest],
        block_tokens: int = MOONCAKE_BLOCK_TOKENS,
        seed: int = 0,
    ) -> None:
        longest = max((r.input_tokens for r in trace), default=1)
        self._pool = WordPool(max(DEFAULT_POOL_WORDS, 2 * longest + block_tokens), seed)
        self._trace = trace
        self._block = block_tokens
        self._blocks: dict[int, str] = {}

    def text(self, row: int) -> str:
        request = self._trace[row]
        n = request.input_tokens
        if not request.hash_ids:
            return self._pool.text(row * _SPREAD, n)
        parts: list[str] = []
        left = n
        for h in request.hash_ids:
            if left <= 0:
                break
            if left >= self._block:
                parts.append(self._block_text(h))
                left -= self._block
            else:  # the row's last, partial block: the block's first words
                parts.append(" ".join(self._block_text(h).split(" ", left)[:left]))
                left = 0
        if left > 0:  # more tokens than its blocks hold: a tail of its own
            parts.append(self._pool.text(row * _SPREAD + 1, left))
        return " ".join(parts)

    def _block_text(self, h: int) -> str:
        text = self._blocks.get(h)
        if text is None:
            text = self._blocks[h] = self._pool.text((h * _MIX) % self._pool.size, self._block)
        return text
