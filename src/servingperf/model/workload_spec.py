"""What users write for realistic workloads: traces, shared prefixes, conversations, adapters.

Each is a section a dataset or a model names (``dataset: {source: trace, trace: {...}}``); the
cross-field rules (a source needs its section, a section needs its source) live in
:class:`servingperf.model.specs.DatasetSpec`. Lengths are toy tokens (words) where servingperf
builds the text, and the trace's own tokens where a trace gives them.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from servingperf.model.spec_base import FieldError, Spec


class TraceSourceSpec(Spec):
    """A recorded trace to replay (formats: servingperf.datasets.traces)."""

    path: str = Field(description="trace file (relative to the scenario file)")
    format: Literal["mooncake", "azure", "jsonl"] = Field(
        default="mooncake",
        description="mooncake (JSONL, timestamp ms, hash_ids), azure (CSV: TIMESTAMP,"
        " ContextTokens, GeneratedTokens) or jsonl (t_s, input_tokens, output_tokens)",
    )
    block_tokens: int = Field(
        default=512,
        ge=1,
        le=1_000_000,
        description="prompt tokens per hash id (512 in the published Mooncake traces)",
    )
    limit: int | None = Field(
        default=None, ge=1, le=100_000_000, description="replay only the first N requests"
    )


class SharedPrefixSpec(Spec):
    """Prompts of ``groups`` prefix groups: a shared prefix, then a suffix of their own."""

    groups: int = Field(default=8, ge=1, le=1_000_000, description="prefix groups")
    prefix_tokens: int = Field(default=512, ge=1, le=1_000_000, description="words per prefix")
    suffix_tokens: int = Field(default=32, ge=1, le=1_000_000, description="words per suffix")
    cache_block_tokens: int = Field(
        default=16,
        ge=1,
        le=100_000,
        description="the server's prefix-cache block, for the expected hit share (vLLM: 16)",
    )


class ConversationsSpec(Spec):
    """Multi-turn sessions over chat completions: from a file, or synthetic.

    Each virtual user runs whole sessions, one after another: every turn sends the session's
    history (the earlier user turns and the server's own answers) plus the next user turn, after
    ``think_time_s``."""

    path: str | None = Field(
        default=None,
        description="JSONL of conversations (ShareGPT 'conversations', or 'messages' / 'turns'"
        " lists of role/content); none: synthetic sessions",
    )
    sessions: int = Field(default=32, ge=1, le=1_000_000, description="synthetic sessions")
    turns: int = Field(default=4, ge=1, le=1000, description="user turns per synthetic session")
    tokens_per_turn: int = Field(
        default=64, ge=1, le=1_000_000, description="words per synthetic user turn"
    )
    think_time_s: float = Field(
        default=0.0,
        ge=0,
        le=3600,
        description="a user's pause between one answer and its next turn",
    )
    max_turns: int | None = Field(
        default=None, ge=1, le=1000, description="cut sessions from a file to this many user turns"
    )

    @model_validator(mode="after")
    def _synthetic_or_file(self) -> Self:
        synthetic = {"sessions", "turns", "tokens_per_turn"} & self.model_fields_set
        if self.path is not None and synthetic:
            raise FieldError(
                (sorted(synthetic)[0],),
                "applies to synthetic sessions only: remove it, or remove 'path'",
            )
        return self


class AdapterChurnSpec(Spec):
    """Only ``active`` adapters take requests at a time; the active set rotates every
    ``every_s`` seconds (the next ``active`` in name order, wrapping)."""

    active: int = Field(ge=1, le=100_000, description="adapters taking requests at once")
    every_s: float = Field(gt=0, le=86_400, description="seconds between rotations")


class AdaptersSpec(Spec):
    """LoRA adapters of one model: each request names one (its ``model`` field), by weight."""

    weights: dict[str, float] = Field(
        min_length=1,
        description="adapter name -> weight (shares are weight / total); the names the server"
        " serves the adapters under",
    )
    churn: AdapterChurnSpec | None = Field(
        default=None, description="rotate the set of adapters taking requests"
    )

    @model_validator(mode="after")
    def _weights(self) -> Self:
        for name, weight in self.weights.items():
            if not name or not weight > 0:
                raise FieldError(("weights", name), "an adapter needs a name and a weight > 0")
        if self.churn is not None and self.churn.active > len(self.weights):
            raise FieldError(
                ("churn", "active"),
                f"{self.churn.active} active adapters, but only {len(self.weights)} are named",
            )
        return self
