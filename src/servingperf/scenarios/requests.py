"""Build the engine's request factory from a dataset: each user draws prompts at random from the
subset with its own seeded sampler, so a run is reproducible user by user.
"""

from __future__ import annotations

from servingperf.datasets.prompts import Prompt
from servingperf.datasets.sampler import PromptSampler
from servingperf.datasets.select import output_tokens_for
from servingperf.load.closed_loop import RequestFactory
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
) -> RequestFactory:
    samplers: dict[int, PromptSampler] = {}
    lengths = {p.index: output_tokens_for(p, dataset) for p in prompts}

    def make(user: int, sequence: int) -> tuple[GenerationRequest, RequestContext]:
        sampler = samplers.get(user)
        if sampler is None:
            sampler = samplers[user] = PromptSampler(prompts, seed=load.seed, user=user)
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
