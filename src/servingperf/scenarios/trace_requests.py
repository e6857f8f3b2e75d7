"""Requests of a replayed trace: request k is trace row k, sent at its arrival offset.

A :class:`TraceRequests` is the request factory the open-loop engine calls with the arrival
index, and the :class:`~servingperf.load.sources.TimedSource` it takes the arrival offsets from.
Each request asks for its row's output length (``ignore_eos`` and ``min_tokens`` per
``load.force_output_length``) unless the dataset fixes one; its prompt has the row's input length
and shares the prefix blocks the row's hash ids say (:mod:`servingperf.datasets.trace_prompts`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from servingperf.datasets.select import resolve_path
from servingperf.datasets.trace_prompts import TracePrompts
from servingperf.datasets.traces import TraceRequest, read_trace
from servingperf.errors import ConfigError
from servingperf.model.records import GenerationRequest, RequestContext, TokenSource
from servingperf.model.specs import DatasetSpec, OutputLength
from servingperf.scenarios.request_origin import RequestOrigin


def load_trace(dataset: DatasetSpec, base_dir: Path) -> tuple[TraceRequest, ...]:
    spec = dataset.trace
    if spec is None:
        raise ConfigError("dataset source 'trace' needs a 'trace' section")
    rows = read_trace(resolve_path(spec.path, base_dir), spec.format)
    return rows[: spec.limit] if spec.limit is not None else rows


class TraceRequests:
    """Request k of the phase is trace row k (see the module docstring)."""

    def __init__(
        self,
        rows: Sequence[TraceRequest],
        dataset: DatasetSpec,
        origin: RequestOrigin,
    ) -> None:
        block = dataset.trace.block_tokens if dataset.trace is not None else 512
        self._rows = rows
        self._prompts = TracePrompts(rows, block, dataset.seed)
        fixed = dataset.output_tokens
        self._fixed = None if dataset.trace_lengths or fixed is OutputLength.DATASET else fixed
        self._instance, self._model_id, self._phase = origin.instance, origin.model_id, origin.phase
        self._load, self._worker, self._adapters = origin.load, origin.worker, origin.adapters
        self._count_from: TokenSource = origin.output_tokens_from

    def arrival_offsets(self) -> Sequence[float]:
        return [row.t_s for row in self._rows]

    def __call__(self, index: int, sequence: int) -> tuple[GenerationRequest, RequestContext]:
        row = self._rows[index]
        max_tokens = self._fixed if self._fixed is not None else row.output_tokens
        force = self._load.force_output_length
        model = self._adapters.choose(index % 64) if self._adapters else self._model_id
        request = GenerationRequest(
            request_id=f"{self._instance}:{self._phase}:w{self._worker}:t{index}",
            model=model,
            prompt=self._prompts.text(index),
            max_tokens=max_tokens,
            min_tokens=max_tokens if force else None,
            ignore_eos=force,
            stream=self._load.stream,
        )
        context = RequestContext(
            instance=self._instance,
            model=model,
            phase=self._phase,
            worker=self._worker,
            user=index,
            prompt_index=index,
            requested_output_tokens=max_tokens,
            output_tokens_from=self._count_from,
        )
        return request, context
