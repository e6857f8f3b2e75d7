"""Shared-prefix prompts: the shape that exercises a server's prefix (KV) cache.

Terms. ``groups`` *prefix groups*, each with its own prefix of ``prefix_tokens`` words (a system
prompt, a long document); every prompt is its group's prefix followed by a *suffix* of
``suffix_tokens`` words of its own. Prompt ``i`` belongs to group ``i mod groups``, so groups are
the same size (within one). Prefixes are byte-identical within a group and differ between groups
from their first word; suffixes all differ. Lengths are toy tokens (words).

The *expected hit share* is the share of prompt tokens a prefix cache with blocks of
``cache_block_tokens`` serves once every group has been seen: the full blocks of the prefix over
the whole prompt (vLLM caches whole blocks, 16 tokens by default; the first request of each group
misses). A run states it, and the server's own counters measure it (``vllm:prefix_cache_*``).
"""

from __future__ import annotations

from servingperf.datasets.prompts import Prompt
from servingperf.datasets.word_pool import DEFAULT_POOL_WORDS, WordPool
from servingperf.errors import ConfigError

VLLM_BLOCK_TOKENS = 16


def shared_prefix_prompts(
    count: int, groups: int, prefix_tokens: int, suffix_tokens: int, seed: int
) -> tuple[Prompt, ...]:
    """``count`` prompts over ``groups`` prefix groups (see the module docstring)."""
    if groups < 1 or count < groups:
        raise ConfigError(
            f"shared-prefix prompts: {count} prompts cannot fill {groups} prefix groups; give"
            " 'prompts' >= 'prefix_groups' >= 1"
        )
    if prefix_tokens < 1 or suffix_tokens < 1:
        raise ConfigError("shared-prefix prompts need prefix and suffix tokens >= 1")
    words = groups * prefix_tokens + count * suffix_tokens
    pool = WordPool(max(DEFAULT_POOL_WORDS // 10, words), seed)
    prefixes = [pool.text(g * prefix_tokens, prefix_tokens) for g in range(groups)]
    base = groups * prefix_tokens
    return tuple(
        Prompt(
            index=i,
            text=f"{prefixes[i % groups]} {pool.text(base + i * suffix_tokens, suffix_tokens)}",
            system_prompt=None,
            expected_output_tokens=None,
        )
        for i in range(count)
    )


def expected_hit_share(
    prefix_tokens: int, suffix_tokens: int, cache_block_tokens: int = VLLM_BLOCK_TOKENS
) -> float:
    """The token share of a prompt a warm block cache serves: whole prefix blocks / prompt."""
    cached = (prefix_tokens // cache_block_tokens) * cache_block_tokens
    return cached / (prefix_tokens + suffix_tokens)
