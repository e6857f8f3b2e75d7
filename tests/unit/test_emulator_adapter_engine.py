"""LoRA adapter slots inside the emulator's engine, on a virtual clock (exact timings).

A miss adds the modelled load time to the step that admits it (the whole batch waits, as in
vLLM's engine step); a hit costs nothing; with every slot held by running sequences a request
for another adapter waits in the queue while later requests for loaded adapters go ahead; the
slot comes back when its sequence ends (finished or cancelled); ``vllm:lora_requests_info`` shows
the running and the waiting adapters. The ground truth is ``Sequence.adapter_load_s``.
"""

from __future__ import annotations

import asyncio

import prometheus_client.parser
import pytest

from servingperf.emulator.adapter_slots import AdapterSlots
from servingperf.emulator.engine import Engine
from servingperf.emulator.vllm_metrics import EngineMetrics
from tests.unit.test_emulator_engine import (
    BASE,
    PER_SEQ,
    PREFILL,
    VirtualClock,
    drain,
    make_profile,
)

LOAD_S = 0.5
ADAPTERS = frozenset({"a", "b", "c"})


def engine_with_slots(clock: VirtualClock, slots: int, max_batch: int = 4) -> Engine:
    return Engine(
        make_profile(max_batch=max_batch, max_loras=slots, lora_load_s=LOAD_S),
        clock=clock,
        sleep=clock.sleep,
        adapter_slots=AdapterSlots(slots, LOAD_S),
        adapter_ids=ADAPTERS,
    )


async def first_token_after(engine: Engine, clock: VirtualClock, model: str) -> float:
    started = clock.now
    seq = engine.submit(10, 1, model=model)
    await drain(seq)
    assert seq.first_token_at is not None
    return seq.first_token_at - started


def one_step(batch: int, prompt: int = 10) -> float:
    return BASE + PER_SEQ * batch + PREFILL * prompt


async def test_a_miss_costs_the_modelled_load_time_and_a_hit_costs_nothing() -> None:
    clock = VirtualClock()
    engine = engine_with_slots(clock, slots=1)
    miss = await first_token_after(engine, clock, "a")
    hit = await first_token_after(engine, clock, "a")
    swap = await first_token_after(engine, clock, "b")  # evicts the idle "a"
    base = await first_token_after(engine, clock, "base")  # the base model holds no slot
    await engine.aclose()
    assert miss == pytest.approx(one_step(1) + LOAD_S)
    assert hit == pytest.approx(one_step(1))
    assert swap == pytest.approx(one_step(1) + LOAD_S)
    assert base == pytest.approx(one_step(1))
    slots = engine.adapter_slots
    assert slots is not None
    assert (slots.loads, slots.hits, slots.evictions) == (2, 1, 1)


async def test_the_whole_batch_waits_for_a_load_in_its_step() -> None:
    clock = VirtualClock()
    engine = engine_with_slots(clock, slots=2)
    warm = engine.submit(10, 1, model="a")
    await drain(warm)  # "a" is loaded now
    started = clock.now
    hit = engine.submit(10, 1, model="a")
    miss = engine.submit(10, 1, model="b")
    await asyncio.gather(drain(hit), drain(miss))
    await engine.aclose()
    assert hit.adapter_load_s == 0.0 and miss.adapter_load_s == LOAD_S
    assert hit.first_token_at == miss.first_token_at
    assert miss.first_token_at is not None
    assert miss.first_token_at - started == pytest.approx(one_step(2, prompt=20) + LOAD_S)


async def test_a_request_waits_for_a_slot_while_loaded_adapters_go_ahead() -> None:
    clock = VirtualClock()
    engine = engine_with_slots(clock, slots=1)
    metrics = EngineMetrics(engine, ["base", *sorted(ADAPTERS)]).attach()
    long_a = engine.submit(10, 5, model="a")  # holds the only slot for 5 steps
    blocked_b = engine.submit(10, 1, model="b")
    short_a = engine.submit(10, 1, model="a")
    await asyncio.sleep(0)
    for _ in range(20):  # until the first step has run (bounded)
        if long_a.produced:
            break
        await asyncio.sleep(0)
    assert long_a.produced >= 1
    info = lora_info(metrics)
    assert info["max_lora"] == "1"
    assert info["running_lora_adapters"] == "a"
    assert info["waiting_lora_adapters"] == "b"
    await asyncio.gather(drain(long_a), drain(blocked_b), drain(short_a))
    await engine.aclose()
    assert short_a.admitted_at is not None and blocked_b.admitted_at is not None
    assert short_a.admitted_at < blocked_b.admitted_at  # "a" was loaded: it went ahead of "b"
    assert long_a.finished_at is not None
    assert blocked_b.admitted_at >= long_a.finished_at  # "b" waited for the slot to free
    assert blocked_b.adapter_load_s == LOAD_S


async def test_a_cancelled_sequence_gives_its_slot_back() -> None:
    clock = VirtualClock()
    engine = engine_with_slots(clock, slots=1)
    holder = engine.submit(10, 1000, model="a")
    for _ in range(20):
        if holder.produced:
            break
        await asyncio.sleep(0)
    waiter = engine.submit(10, 1, model="b")
    holder.cancel()
    async with asyncio.timeout(5):
        await drain(waiter)
    await engine.aclose()
    assert waiter.complete and waiter.adapter_load_s == LOAD_S
    slots = engine.adapter_slots
    assert slots is not None and slots.running == 0


def lora_info(metrics: EngineMetrics) -> dict[str, str]:
    text = metrics.render().decode()
    families = {f.name: f for f in prometheus_client.parser.text_string_to_metric_families(text)}
    (sample,) = families["vllm:lora_requests_info"].samples
    assert sample.value > 1e9  # the render's wall-clock time, as vLLM sets it
    return dict(sample.labels)


def test_no_slots_no_lora_family() -> None:
    engine = Engine(make_profile())
    assert b"lora_requests_info" not in EngineMetrics(engine, ["m"]).render()
