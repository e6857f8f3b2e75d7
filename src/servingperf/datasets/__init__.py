"""Prompt sources: the bundled sample, JSONL files (OpenOrca-style or plain), synthetic prompts.

A *source* yields :class:`Prompt` objects; :func:`load_prompts` turns a ``DatasetSpec`` into the
run's validated *subset*; :func:`output_tokens_for` gives the output length to request for a
prompt; a :class:`PromptSampler` per user picks what that user sends next. Nothing here does
network I/O, and every problem with a dataset is a ``ConfigError`` raised before load starts.
"""

from servingperf.datasets.bundled import read_bundled
from servingperf.datasets.jsonl import MAX_PROMPT_BYTES, parse_jsonl, read_jsonl
from servingperf.datasets.prompts import Prompt, toy_token_count
from servingperf.datasets.sampler import PromptSampler
from servingperf.datasets.select import (
    choose_subset,
    load_prompts,
    output_tokens_for,
    resolve_path,
)
from servingperf.datasets.synthetic import synthetic_prompts

__all__ = [
    "MAX_PROMPT_BYTES",
    "Prompt",
    "PromptSampler",
    "choose_subset",
    "load_prompts",
    "output_tokens_for",
    "parse_jsonl",
    "read_bundled",
    "read_jsonl",
    "resolve_path",
    "synthetic_prompts",
    "toy_token_count",
]
