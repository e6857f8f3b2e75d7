"""The emulator's prefix cache inside its engine, on a virtual clock (exact timings).

A cached leading block costs no prefill; the hit is the ground truth (``Sequence.cached_tokens``)
and vLLM's counters (``vllm:prefix_cache_queries_total`` / ``_hits_total``) say the same; a
conversation's next turn hits the blocks of the last prompt and its answer; models on one device
never share a block; a fully cached prompt still computes its last block, as vLLM does.
"""

from __future__ import annotations

import pytest

from servingperf.emulator.engine import Engine
from servingperf.emulator.openai_format import chat_prompt_units
from servingperf.emulator.prefix_cache import PrefixCache
from servingperf.emulator.tokenizer import generated_text
from servingperf.emulator.vllm_metrics import EngineMetrics
from tests.unit.test_emulator_engine import (
    BASE,
    PER_SEQ,
    PREFILL,
    VirtualClock,
    drain,
    make_profile,
)
from tests.unit.test_emulator_vllm_metrics import value

BLOCK = 4


def units(n: int, prefix: str = "p") -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(n))


def engine_with_cache(clock: VirtualClock, blocks: int = 64) -> Engine:
    return Engine(
        make_profile(max_batch=1),
        clock=clock,
        sleep=clock.sleep,
        prefix_cache=PrefixCache(blocks, BLOCK),
    )


async def first_token_delay(
    engine: Engine, clock: VirtualClock, prompt: tuple[str, ...]
) -> tuple[float, int]:
    seq = engine.submit(len(prompt), 1, model="m", prompt_units=prompt)
    started = clock.now
    await drain(seq)
    return clock.now - started, seq.cached_tokens


async def test_a_repeated_prefix_skips_its_prefill_exactly() -> None:
    clock = VirtualClock()
    engine = engine_with_cache(clock)
    metrics = EngineMetrics(engine, ["m"]).attach()
    shared = units(12, "shared")
    first, hit1 = await first_token_delay(engine, clock, (*shared, *units(6, "a")))
    second, hit2 = await first_token_delay(engine, clock, (*shared, *units(6, "b")))
    await engine.aclose()
    assert hit1 == 0 and hit2 == 12  # three full blocks of the shared 12 tokens
    assert first == pytest.approx(BASE + PER_SEQ + PREFILL * 18)
    assert second == pytest.approx(
        BASE + PER_SEQ + PREFILL * 6
    )  # only the uncached tokens are prefilled
    assert value(metrics, "vllm:prefix_cache_queries_total") == 36
    assert value(metrics, "vllm:prefix_cache_hits_total") == 12
    assert value(metrics, "vllm:prompt_tokens_total") == 36  # prompt tokens count in full


async def test_without_a_cache_nothing_is_hit() -> None:
    clock = VirtualClock()
    engine = Engine(make_profile(max_batch=1), clock=clock, sleep=clock.sleep)
    metrics = EngineMetrics(engine, ["m"]).attach()
    prompt = units(16)
    await first_token_delay(engine, clock, prompt)
    delay, hit = await first_token_delay(engine, clock, prompt)
    await engine.aclose()
    assert hit == 0 and delay == pytest.approx(BASE + PER_SEQ + PREFILL * 16)
    assert value(metrics, "vllm:prefix_cache_hits_total") == 0


async def test_a_fully_cached_prompt_still_computes_its_last_block() -> None:
    clock = VirtualClock()
    engine = engine_with_cache(clock)
    prompt = units(16)
    await first_token_delay(engine, clock, prompt)
    delay, hit = await first_token_delay(engine, clock, prompt)
    await engine.aclose()
    assert hit == 12 and delay == pytest.approx(BASE + PER_SEQ + PREFILL * 4)
    assert engine.prefix_cache is not None and engine.prefix_cache.hit_tokens == 12


async def test_models_on_one_device_never_share_a_block() -> None:
    clock = VirtualClock()
    engine = engine_with_cache(clock)
    prompt = units(10)
    await drain(engine.submit(10, 1, model="base", prompt_units=prompt))
    other = engine.submit(10, 1, model="adapter-1", prompt_units=prompt)
    await drain(other)
    again = engine.submit(10, 1, model="base", prompt_units=prompt)
    await drain(again)
    await engine.aclose()
    assert other.cached_tokens == 0 and again.cached_tokens == 8


async def test_the_next_turn_of_a_conversation_hits_the_last_prompt_and_its_answer() -> None:
    clock = VirtualClock()
    engine = engine_with_cache(clock, blocks=1024)
    first_turn = [("user", "what does the cache keep between two turns of one chat")]
    prompt1 = chat_prompt_units(first_turn)
    answer_tokens = 9
    await drain(engine.submit(len(prompt1), answer_tokens, model="m", prompt_units=prompt1))
    answer = generated_text(answer_tokens)  # what the client got back and sends as history
    second_turn = [*first_turn, ("assistant", answer), ("user", "and the next one")]
    prompt2 = chat_prompt_units(second_turn)
    seq = engine.submit(len(prompt2), 1, model="m", prompt_units=prompt2)
    await drain(seq)
    await engine.aclose()
    history = len(prompt1) + answer_tokens  # the tokens both prompts share, in order
    assert prompt2[:history] == (*prompt1, *(w.strip() for w in answer.split()))
    assert seq.cached_tokens == history // BLOCK * BLOCK
    assert seq.cached_tokens > len(prompt1)  # the answer's blocks were cached too


async def test_the_least_recently_used_blocks_are_evicted_first() -> None:
    clock = VirtualClock()
    engine = engine_with_cache(clock, blocks=4)
    a, b = units(8, "a"), units(8, "b")
    for prompt in (a, b, units(8, "c")):  # c evicts a's two blocks (4 blocks of room)
        await first_token_delay(engine, clock, prompt)
    _, hit_b = await first_token_delay(engine, clock, (*b, "x"))
    _, hit_a = await first_token_delay(engine, clock, (*a, "x"))
    await engine.aclose()
    assert hit_b == 8  # b's blocks stayed
    assert hit_a == 0  # a's were the least recently used
