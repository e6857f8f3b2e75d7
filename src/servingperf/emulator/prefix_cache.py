"""The emulated prefix (KV) cache: prompt blocks a server keeps, so a repeated prefix skips prefill.

Terms, as vLLM's automatic prefix caching has them. A prompt's tokens are cut into *blocks* of
``block_tokens``; a block is identified by a *chained hash* of its tokens and the hash of the
block before it, so two prompts share block k only if they share all tokens up to its end. Only
full blocks are cached. A *lookup* counts the leading blocks of a prompt already cached (the
*hit*); the tokens of those blocks cost no prefill. After a sequence is admitted its prompt blocks
are inserted, and when it finishes the blocks of prompt plus generated tokens are (the next turn
of a conversation sends them back as history, so it hits them). The cache holds at most
``capacity_blocks`` blocks, evicting the least recently used.

Counters follow vLLM's ``vllm:prefix_cache_queries`` / ``_hits``: tokens looked up, and tokens hit.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence


def block_hashes(tokens: Sequence[str], block_tokens: int, salt: str = "") -> list[int]:
    """The chained hashes of the full blocks of ``tokens`` (within one process: Python's string
    hash is salted per process, as an emulator's cache is per process). ``salt`` starts the
    chain: the model id, so that two models (or LoRA adapters) on one device never share a
    block, as vLLM puts the adapter into its block hashes."""
    hashes: list[int] = []
    parent = hash(salt)
    for end in range(block_tokens, len(tokens) + 1, block_tokens):
        parent = hash((parent, *tokens[end - block_tokens : end]))
        hashes.append(parent)
    return hashes


class PrefixCache:
    """An LRU cache of block hashes with vLLM-style hit accounting."""

    __slots__ = ("_blocks", "block_tokens", "capacity_blocks", "hit_tokens", "queried_tokens")

    def __init__(self, capacity_blocks: int, block_tokens: int) -> None:
        if capacity_blocks < 1 or block_tokens < 1:
            raise ValueError("a prefix cache needs capacity_blocks >= 1 and block_tokens >= 1")
        self.capacity_blocks = capacity_blocks
        self.block_tokens = block_tokens
        self._blocks: OrderedDict[int, None] = OrderedDict()
        self.queried_tokens = 0
        self.hit_tokens = 0

    def lookup(self, hashes: Sequence[int], prompt_tokens: int) -> int:
        """Tokens of the prompt served by cached leading blocks; counted as one query of
        ``prompt_tokens`` tokens."""
        hit = 0
        blocks = self._blocks
        for h in hashes:
            if h not in blocks:
                break
            blocks.move_to_end(h)
            hit += 1
        tokens = hit * self.block_tokens
        self.queried_tokens += prompt_tokens
        self.hit_tokens += tokens
        return tokens

    def insert(self, hashes: Sequence[int]) -> None:
        """Keep these blocks (most recently used last), evicting the oldest beyond capacity."""
        blocks = self._blocks
        for h in hashes:
            if h in blocks:
                blocks.move_to_end(h)
            else:
                blocks[h] = None
        while len(blocks) > self.capacity_blocks:
            blocks.popitem(last=False)

    def __len__(self) -> int:
        return len(self._blocks)
