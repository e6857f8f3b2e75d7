"""Build the engine's request factory from a dataset: each user draws prompts at random from the
subset with its own seeded sampler, so a run is reproducible user by user. Open-loop requests
have no user: request k (its arrival index) draws from sampler k mod ``streams``.

:func:`build_requests` picks the factory a dataset needs: prompts drawn from a subset (bundled,
JSONL, synthetic, shared-prefix), a replayed trace (:mod:`servingperf.scenarios.trace_requests`)
or conversations (:mod:`servingperf.scenarios.conversation_requests`); with LoRA adapters, each
request names one (:mod:`servingperf.scenarios.adapter_choice`). :func:`check_dataset` reads and
validates what a dataset names before anything is deployed. Each record counts N
from the model's ``tokens.output_tokens_from`` (usage or stream).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from servingperf.datasets.prompts import Prompt
from servingperf.datasets.sampler import PromptSampler
from servingperf.datasets.select import load_prompts, output_tokens_for
from servingperf.load.execute import RequestFactory
from servingperf.model.records import GenerationRequest, RequestContext, TokenSource
from servingperf.model.specs import DatasetSource, DatasetSpec, LoadSpec
from servingperf.model.workload_spec import AdaptersSpec
from servingperf.scenarios.adapter_choice import AdapterChoice
from servingperf.scenarios.conversation_requests import ConversationRequests, load_conversations
from servingperf.scenarios.request_origin import RequestOrigin
from servingperf.scenarios.trace_requests import TraceRequests, load_trace


def request_factory(
    instance: str,
    model_id: str,
    phase: str,
    prompts: tuple[Prompt, ...],
    dataset: DatasetSpec,
    load: LoadSpec,
    worker: int = 0,
    streams: int | None = None,
    adapters: AdapterChoice | None = None,
    output_tokens_from: str = "usage",
) -> RequestFactory:
    samplers: dict[int, PromptSampler] = {}
    count_from = TokenSource(output_tokens_from)
    lengths = {p.index: output_tokens_for(p, dataset) for p in prompts}

    def make(user: int, sequence: int) -> tuple[GenerationRequest, RequestContext]:
        key = user % streams if streams else user
        sampler = samplers.get(key)
        if sampler is None:
            sampler = samplers[key] = PromptSampler(prompts, seed=load.seed, user=key)
        prompt = sampler.next()
        max_tokens = lengths[prompt.index]
        model = adapters.choose(key) if adapters is not None else model_id
        request = GenerationRequest(
            request_id=f"{instance}:{phase}:w{worker}:u{user}:{sequence}",
            model=model,
            prompt=prompt.text,
            system_prompt=prompt.system_prompt,
            max_tokens=max_tokens,
            min_tokens=max_tokens if load.force_output_length else None,
            ignore_eos=load.force_output_length,
            stream=load.stream,
        )
        context = RequestContext(
            instance=instance,
            model=model,
            phase=phase,
            worker=worker,
            user=user,
            prompt_index=prompt.index,
            requested_output_tokens=max_tokens,
            output_tokens_from=count_from,
        )
        return request, context

    return make


def build_requests(
    *,
    instance: str,
    model_id: str,
    phase: str,
    dataset: DatasetSpec,
    load: LoadSpec,
    base_dir: Path,
    worker: int = 0,
    streams: int | None = None,
    adapters: AdaptersSpec | None = None,
    output_tokens_from: str = "usage",
) -> RequestFactory:
    """The request factory ``dataset`` needs (see the module docstring)."""
    choice = AdapterChoice(adapters, load.seed) if adapters is not None else None
    origin = RequestOrigin(
        instance, model_id, phase, load, worker, choice, TokenSource(output_tokens_from)
    )
    if dataset.source is DatasetSource.TRACE:
        return TraceRequests(load_trace(dataset, base_dir), dataset, origin)
    if dataset.source is DatasetSource.CONVERSATIONS:
        return ConversationRequests(load_conversations(dataset, base_dir), dataset, origin)
    prompts = load_prompts(dataset, base_dir)
    return request_factory(
        instance,
        model_id,
        phase,
        prompts,
        dataset,
        load,
        worker,
        streams,
        choice,
        output_tokens_from,
    )


def check_dataset(dataset: DatasetSpec, base_dir: Path) -> None:
    """Read and validate what ``dataset`` names now (ConfigError), before anything is deployed."""
    if dataset.source is DatasetSource.TRACE:
        load_trace(dataset, base_dir)
    elif dataset.source is DatasetSource.CONVERSATIONS:
        load_conversations(dataset, base_dir)
    else:
        load_prompts(dataset, base_dir)


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
    adapters: dict[str, Any] | None = None,
    output_tokens_from: str = "usage",
) -> RequestFactory:
    """:func:`build_requests` from JSON arguments: what a load worker process calls (by name)."""
    return build_requests(
        instance=instance,
        model_id=model_id,
        phase=phase,
        dataset=DatasetSpec.model_validate(dataset),
        load=LoadSpec.model_validate(load),
        base_dir=Path(base_dir),
        worker=worker,
        streams=streams,
        adapters=None if adapters is None else AdaptersSpec.model_validate(adapters),
        output_tokens_from=output_tokens_from,
    )
