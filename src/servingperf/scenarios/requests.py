"""Build the engine's request factory from a dataset: each user draws prompts at random from the
subset with its own seeded sampler, so a run is reproducible user by user. Open-loop requests
have no user: request k (its arrival index) draws from sampler k mod ``streams``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from servingperf.datasets.prompts import Prompt
from servingperf.datasets.sampler import PromptSampler
from servingperf.datasets.select import load_prompts, output_tokens_for
from servingperf.load.execute import RequestFactory
from servingperf.model.records import GenerationRequest, RequestContext
from servingperf.model.specs import DatasetSpec, LoadSpec


def request_factory(
    instance: str,
    model_id: str,
    phase: str,
    prompts: tuple[Prompt, ...],
    dataset: DatasetSpec,
    load: LoadSpec,
    worker: int = 0,
    streams: int | None = None,
) -> RequestFactory:
    samplers: dict[int, PromptSampler] = {}
    lengths = {p.index: output_tokens_for(p, dataset) for p in prompts}

    def make(user: int, sequence: int) -> tuple[GenerationRequest, RequestContext]:
        key = user % streams if streams else user
        sampler = samplers.get(key)
        if sampler is None:
            sampler = samplers[key] = PromptSampler(prompts, seed=load.seed, user=key)
        prompt = sampler.next()
        max_tokens = lengths[prompt.index]
        request = GenerationRequest(
            request_id=f"{instance}:{phase}:w{worker}:u{user}:{sequence}",
            model=model_id,
            prompt=prompt.text,
            system_prompt=prompt.system_prompt,
            max_tokens=max_tokens,
            min_tokens=max_tokens if load.force_output_length else None,
            ignore_eos=load.force_output_length,
            stream=load.stream,
        )
        context = RequestContext(
            instance=instance,
            model=model_id,
            phase=phase,
            worker=worker,
            user=user,
            prompt_index=prompt.index,
            requested_output_tokens=max_tokens,
        )
        return request, context

    return make


def worker_request_factory(
    *,
    worker: int,
    instance: str,
    model_id: str,
    phase: str,
    dataset: dict[str, Any],
    load: dict[str, Any],
    base_dir: str,
    streams: int | None = None,
) -> RequestFactory:
    """``request_factory`` from JSON arguments: what a load worker process calls (by name)."""
    dataset_spec = DatasetSpec.model_validate(dataset)
    load_spec = LoadSpec.model_validate(load)
    prompts = load_prompts(dataset_spec, Path(base_dir))
    return request_factory(
        instance, model_id, phase, prompts, dataset_spec, load_spec, worker, streams
    )
