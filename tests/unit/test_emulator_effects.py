"""The emulator's workload effects as pure models: the block prefix cache and the LoRA slots."""

from __future__ import annotations

from servingperf.emulator.adapter_slots import AdapterSlots
from servingperf.emulator.prefix_cache import PrefixCache, block_hashes


def test_blocks_are_chained_so_only_a_shared_prefix_shares_blocks() -> None:
    a = block_hashes(list("abcdefgh"), 4)
    b = block_hashes(list("abcdxfgh"), 4)
    c = block_hashes(list("xxxxefgh"), 4)
    assert len(a) == 2 and a[0] == b[0] and a[1] != b[1]
    assert c[1] != a[1]  # same tokens in block 2, another prefix before them
    assert block_hashes(list("abcdefg"), 4) == a[:1]  # only full blocks


def test_a_prefix_cache_hits_leading_blocks_and_counts_tokens() -> None:
    cache = PrefixCache(capacity_blocks=10, block_tokens=4)
    first = block_hashes(list("abcdefghij"), 4)
    assert cache.lookup(first, 10) == 0
    cache.insert(first)
    second = block_hashes(list("abcdefghXY"), 4)
    assert cache.lookup(second, 10) == 8
    other = block_hashes(list("zbcdefgh"), 4)
    assert cache.lookup(other, 8) == 0
    assert (cache.queried_tokens, cache.hit_tokens) == (28, 8)


def test_the_prefix_cache_evicts_the_least_recently_used_block() -> None:
    cache = PrefixCache(capacity_blocks=2, block_tokens=1)
    cache.insert([1, 2])
    cache.lookup([1], 1)  # 1 is now the most recent
    cache.insert([3])
    assert len(cache) == 2
    assert cache.lookup([2], 1) == 0  # 2 was evicted
    assert cache.lookup([1], 1) == 1


def test_adapter_slots_load_hit_evict_and_wait() -> None:
    slots = AdapterSlots(max_resident=2, load_s=0.5)
    assert slots.admit("a") == 0.5  # a miss costs a load
    assert slots.admit("a") == 0.0  # a hit
    assert slots.admit("b") == 0.5
    assert slots.admit("c") is None  # both slots in use: c waits
    slots.release("a")
    assert slots.admit("c") is None  # a still runs one sequence
    slots.release("a")
    assert slots.admit("c") == 0.5  # b is in use, so the idle a was evicted
    assert slots.loaded == ("b", "c")
    assert (slots.loads, slots.hits, slots.evictions) == (3, 1, 1)
    assert slots.running == 2
