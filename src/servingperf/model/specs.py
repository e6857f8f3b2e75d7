"""What users write: scenario specs (pydantic v2, unknown keys rejected, every default stated).

A scenario file is one :class:`ScenarioSpec`. Cross-field rules live in validators whose messages
say what to change. Nothing here touches files or the network: :mod:`servingperf.config` loads YAML
and maps errors to file, line and field.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from servingperf.model.kserve_spec import KServeSpec
from servingperf.model.server_spec import ServerSpec
from servingperf.model.spec_base import NAME_PATTERN, FieldError, Name, Spec
from servingperf.model.workload_spec import (
    AdaptersSpec,
    ConversationsSpec,
    SharedPrefixSpec,
    TraceSourceSpec,
)

__all__ = ["NAME_PATTERN", "FieldError", "Name", "Spec"]

_LABEL_RE = re.compile(r"[A-Za-z0-9_.-]{1,63}")


class ProtocolKind(enum.StrEnum):
    OPENAI_COMPLETIONS = "openai-completions"
    OPENAI_CHAT = "openai-chat"
    CAIKIT_GRPC = "caikit-grpc"
    TGIS_GRPC = "tgis-grpc"
    KSERVE_V2_REST = "kserve-v2-rest"
    KSERVE_V2_GRPC = "kserve-v2-grpc"


class FaultSpec(Spec):
    """Faults the embedded emulator injects (docs/failure-behaviour.md lists what each looks like).

    Per-request faults are drawn once per generation request from ``seed`` and the request id, so
    the same requests fail in every run; they exclude each other (their probabilities add up to at
    most 1). ``*_after_tokens`` counts tokens sent before the fault strikes, clamped so that it
    always strikes before the response ends. Server faults: ``start`` (fail: exit with code 3 when
    the load time is over; never-ready: stay loading), ``crash_after_requests`` (the process exits
    when request N+1 arrives) and ``crash_after_s`` (it exits that long after becoming ready).
    """

    seed: int = Field(default=0, description="seeds which requests get which fault")
    error_status: dict[int, float] = Field(
        default_factory=dict,
        description="HTTP status -> probability a request is answered with it, e.g. {503: 0.05}",
    )
    latency_spike_p: float = Field(default=0.0, ge=0, le=1)
    latency_spike_s: float = Field(
        default=1.0, ge=0, le=3600, description="extra wait before the batch"
    )
    stall_p: float = Field(default=0.0, ge=0, le=1)
    stall_s: float = Field(default=5.0, ge=0, le=3600, description="how long the stream stops")
    stall_after_tokens: int = Field(default=1, ge=0, le=1_000_000)
    disconnect_p: float = Field(default=0.0, ge=0, le=1, description="server closes mid-response")
    disconnect_after_tokens: int = Field(default=1, ge=0, le=1_000_000)
    bad_json_p: float = Field(default=0.0, ge=0, le=1, description="a chunk that is not JSON")
    bad_framing_p: float = Field(
        default=0.0, ge=0, le=1, description="two SSE events without the blank line between them"
    )
    malformed_after_tokens: int = Field(default=1, ge=0, le=1_000_000)
    multi_token_p: float = Field(
        default=0.0, ge=0, le=1, description="a streamed chunk carries several tokens"
    )
    tokens_per_chunk: int = Field(default=4, ge=2, le=1_000_000, description="tokens per chunk")
    multi_token_empty_text: bool = Field(
        default=False,
        description="every token keeps its chunk, but the text of a group of tokens_per_chunk"
        " comes with its last one, the others empty (vLLM, for a character split over tokens);"
        " default: one chunk per group",
    )
    usage_mismatch_p: float = Field(
        default=0.0, ge=0, le=1, description="the usage count disagrees with the tokens sent"
    )
    usage_extra_tokens: int = Field(
        default=5, ge=-1_000_000, le=1_000_000, description="usage count - tokens sent"
    )
    reasoning_p: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="chat: the answer starts with reasoning tokens (delta.reasoning), then content",
    )
    reasoning_tokens: int = Field(default=8, ge=1, le=1_000_000)
    empty_200_p: float = Field(
        default=0.0, ge=0, le=1, description="answered HTTP 200 with an empty body"
    )
    start: Literal["ok", "fail", "never-ready"] = "ok"
    crash_after_requests: int | None = Field(default=None, ge=0, le=1_000_000_000)
    crash_after_s: float | None = Field(default=None, ge=0, le=7 * 86_400)

    @model_validator(mode="after")
    def _exclusive(self) -> Self:
        for status, p in self.error_status.items():
            if not 400 <= status <= 599:
                raise FieldError(("error_status", status), "a status must be from 400 to 599")
            if not 0 <= p <= 1:
                raise FieldError(("error_status", status), "a probability must be from 0 to 1")
        total = sum(self.error_status.values()) + self.latency_spike_p + self.stall_p
        total += self.disconnect_p + self.bad_json_p + self.bad_framing_p
        total += self.multi_token_p + self.usage_mismatch_p + self.reasoning_p + self.empty_200_p
        if self.usage_mismatch_p > 0 and self.usage_extra_tokens == 0:
            raise FieldError(("usage_extra_tokens",), "0 makes no mismatch: give a count != 0")
        if total > 1 + 1e-9:
            raise ValueError(
                f"per-request fault probabilities add up to {total:g}; one request gets at most"
                " one fault, so keep their sum at most 1"
            )
        return self


class EmulatorSpec(Spec):
    """An embedded emulator instance: a named profile, optionally with parameters overridden."""

    profile: str = Field(
        description="built-in emulator profile, e.g. flan-t5-small, or the path of a profile file"
        " (.yaml, .yml, .json; relative to the scenario file; docs/emulator.md)"
    )
    overrides: dict[str, float] = Field(
        default_factory=dict, description="profile parameters to override (see docs/emulator.md)"
    )
    load_time_s: float | None = Field(
        default=None,
        ge=0,
        le=86_400,
        description="fixed start-up time; default: drawn from the profile's distribution",
    )
    device: str | None = Field(
        default=None, description="instances naming the same device share one batching engine"
    )
    faults: FaultSpec | None = Field(
        default=None, description="faults to inject (docs/failure-behaviour.md)"
    )


class EndpointSpec(Spec):
    """An already deployed server (static platform): its HTTP base URL for the HTTP protocols,
    its gRPC address for the gRPC ones (caikit, TGIS, KServe v2 gRPC), or both."""

    url: str | None = Field(
        default=None, description="HTTP base URL, e.g. http://127.0.0.1:8000 (HTTP protocols)"
    )
    grpc_address: str | None = Field(
        default=None,
        description="gRPC protocols: host:port or grpc://host:port (plaintext), grpcs://host:port"
        " (TLS; also implied by tls_insecure or ca_file)",
    )
    tls_insecure: bool = False
    ca_file: str | None = Field(
        default=None, description="CA bundle (PEM) to verify the server; relative to the scenario"
    )
    token_env: str | None = Field(
        default=None, description="name of an environment variable holding a bearer token"
    )
    token_file: str | None = Field(default=None, description="file holding a bearer token")
    host_header: str | None = None

    @model_validator(mode="after")
    def _addresses(self) -> Self:
        if self.url is None and self.grpc_address is None:
            raise FieldError(
                ("url",), "give 'url' (HTTP protocols) or 'grpc_address' (gRPC protocols)"
            )
        if self.url is not None and not re.match(r"(?i)https?://[^/\s]+", self.url):
            raise FieldError(("url",), f"{self.url!r} is not an http(s):// URL")
        if self.grpc_address is not None and not _GRPC_ADDRESS_RE.fullmatch(self.grpc_address):
            raise FieldError(
                ("grpc_address",),
                f"{self.grpc_address!r} is not a gRPC address: write host:port, grpc://host:port"
                " (plaintext) or grpcs://host:port (TLS)",
            )
        return self


_GRPC_ADDRESS_RE = re.compile(r"(?i)(grpcs?://)?(\[[0-9a-f:.]+\]|[^\s:/\[\]]+):[0-9]{1,5}")


class TokenCountSpec(Spec):
    """How a model's output tokens are counted (README, Definitions): per chunk, the server's own
    counts when a chunk carries them, else the chunk's text through `tokenizer`, else one per
    chunk; N from the usage count or the streamed count."""

    tokenizer: str | None = Field(
        default=None,
        min_length=1,
        description="local tokenizer.json (a file, or a folder holding one; relative to the"
        " scenario file) counting each chunk's tokens; never downloaded: needs the 'tokenizers'"
        " extra",
    )
    chunk_usage: bool = Field(
        default=False,
        description="ask for running usage in every chunk (stream_options.continuous_usage_stats,"
        " vLLM): the server's count of each chunk's tokens",
    )
    token_ids: bool = Field(
        default=False,
        description="ask for each chunk's token ids (return_token_ids, vLLM): the server's count"
        " of each chunk's tokens",
    )
    output_tokens_from: Literal["usage", "stream"] = Field(
        default="usage",
        description="the count N and throughput use: the server's usage (else the streamed"
        " count), or the streamed count (else usage); both are recorded, and mismatches flagged",
    )


class ModelSpec(Spec):
    """One model under test."""

    name: Name = Field(description="instance name, unique in the scenario")
    model_id: str | None = Field(
        default=None,
        description="model id sent in requests; defaults to the emulator profile or name",
    )
    protocol: ProtocolKind = ProtocolKind.OPENAI_COMPLETIONS
    emulator: EmulatorSpec | None = None
    endpoint: EndpointSpec | None = None
    adapters: AdaptersSpec | None = Field(
        default=None,
        description="LoRA adapters: requests name them (model field) by weight instead of the"
        " model id; per-adapter figures in the summary",
    )
    tokens: TokenCountSpec = Field(
        default_factory=TokenCountSpec, description="how output tokens are counted"
    )
    server: ServerSpec | None = Field(
        default=None,
        description="local platform: a real serving engine's command to start instead of the"
        " emulator (placeholders {host}, {port}, {grpc_port}, {model_id}, {instance_dir})",
    )

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        given = [n for n in ("emulator", "endpoint", "server") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(
                "give one of 'emulator' (the embedded model server), 'server' (a serving engine"
                " the local platform starts) or 'endpoint' (a server already running), not"
                f" {' and '.join(given)}"
            )
        grpc = self.protocol.value.endswith("-grpc")
        if self.server is not None and grpc and not self.server.uses_grpc_port:
            raise FieldError(
                ("server", "command"),
                f"protocol {self.protocol.value!r} is gRPC: the command must use {{grpc_port}}",
            )
        return self

    @property
    def request_model(self) -> str:
        if self.model_id:
            return self.model_id
        return self.emulator.profile if self.emulator else self.name


class PlatformKind(enum.StrEnum):
    LOCAL = "local"
    STATIC = "static"
    KSERVE = "kserve"


class LocalLimitsSpec(Spec):
    """Per-instance limits of local emulator servers (the seed shrank its models' requests)."""

    memory_limit_mib: int | None = Field(
        default=None, ge=64, description="address-space cap (RLIMIT_AS) per server"
    )
    cpus: list[int] | None = Field(
        default=None, min_length=1, description="CPU numbers each server is pinned to"
    )
    nice: int = Field(default=0, ge=0, le=19, description="scheduling priority of the servers")


class PlatformSpec(Spec):
    kind: PlatformKind = PlatformKind.LOCAL
    kserve: KServeSpec | None = Field(
        default=None, description="kind kserve: what to create on the cluster (docs/kserve.md)"
    )
    host: str = Field(default="127.0.0.1", description="local platform: address servers bind to")
    ready_timeout_s: float = Field(default=300.0, gt=0, le=86_400)
    deploy_concurrency: int = Field(
        default=4, ge=1, le=1024, description="instances loading at once (local platform)"
    )
    limits: LocalLimitsSpec = Field(
        default_factory=LocalLimitsSpec, description="local platform: limits per server"
    )


class ArrivalProcess(enum.StrEnum):
    """How open-loop arrivals are spaced around the schedule's rate (see servingperf.load.schedules)."""

    CONSTANT = "constant"  # evenly spaced, 1 / rate apart
    POISSON = "poisson"  # exponential gaps (independent arrivals)
    GAMMA = "gamma"  # gamma gaps of shape `burstiness`: < 1 burstier than Poisson, > 1 more regular


class _OpenLoopSpec(Spec):
    """What every rate schedule shares: the arrival process and an optional concurrency cap."""

    arrivals: ArrivalProcess = Field(
        default=ArrivalProcess.POISSON, description="spacing of arrivals around the rate"
    )
    burstiness: float | None = Field(
        default=None,
        gt=0,
        le=1000,
        description="gamma shape, with arrivals: gamma (1 = Poisson, < 1 bursty, > 1 regular)",
    )
    max_concurrency: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="most requests in flight; arrivals beyond wait and their lag is recorded",
    )

    @model_validator(mode="after")
    def _burstiness_for_gamma(self) -> Self:
        if self.arrivals is ArrivalProcess.GAMMA and self.burstiness is None:
            raise FieldError(("burstiness",), "arrivals 'gamma' needs 'burstiness' (e.g. 0.5)")
        if self.arrivals is not ArrivalProcess.GAMMA and self.burstiness is not None:
            raise FieldError(
                ("burstiness",),
                f"applies only to arrivals 'gamma', not {self.arrivals.value!r}: remove it or"
                " set arrivals: gamma",
            )
        return self


class UsersScheduleSpec(Spec):
    """Closed loop: `load.users` users, started evenly over `load.ramp_up_s`."""

    kind: Literal["users"] = "users"


class UsersStepSpec(Spec):
    """Closed loop, users in steps (ghz's `step`): `start`, then `step` more every
    `step_duration_s`, until `end` (a negative step ramps down)."""

    kind: Literal["users-step"] = "users-step"
    start: int = Field(ge=1, le=100_000, description="users at the phase start")
    step: int = Field(ge=-100_000, le=100_000, description="users added (or removed) per step")
    step_duration_s: float = Field(gt=0, le=86_400)
    end: int = Field(ge=1, le=100_000, description="users held once reached")

    @model_validator(mode="after")
    def _reaches_end(self) -> Self:
        if self.step == 0 or (self.end - self.start) * self.step < 0:
            raise FieldError(
                ("step",),
                f"step {self.step} never goes from start {self.start} to end"
                f" {self.end}: give it the sign of end - start",
            )
        return self


class UsersLineSpec(Spec):
    """Closed loop, users ramped linearly (ghz's `line`) from `start` to `end` over `ramp_s`."""

    kind: Literal["users-line"] = "users-line"
    start: int = Field(ge=0, le=100_000)
    end: int = Field(ge=0, le=100_000)
    ramp_s: float = Field(gt=0, le=86_400, description="time to go from start to end")

    @model_validator(mode="after")
    def _some_users(self) -> Self:
        if max(self.start, self.end) == 0:
            raise FieldError(("end",), "start and end are both 0: give at least one user")
        return self


class RateScheduleSpec(_OpenLoopSpec):
    """Open loop (ghz's `const`): requests arrive at `rate_rps` whatever the server does."""

    kind: Literal["rate"] = "rate"
    rate_rps: float = Field(gt=0, le=1_000_000, description="requests per second")


class RateStepSpec(_OpenLoopSpec):
    """Open loop, rate in steps (ghz's `step`): `start_rps`, then `step_rps` more every
    `step_duration_s`, until `end_rps` (a negative step ramps down)."""

    kind: Literal["rate-step"] = "rate-step"
    start_rps: float = Field(gt=0, le=1_000_000)
    step_rps: float = Field(ge=-1_000_000, le=1_000_000)
    step_duration_s: float = Field(gt=0, le=86_400)
    end_rps: float = Field(gt=0, le=1_000_000)

    @model_validator(mode="after")
    def _reaches_end(self) -> Self:
        if self.step_rps == 0 or (self.end_rps - self.start_rps) * self.step_rps < 0:
            raise FieldError(
                ("step_rps",),
                f"step_rps {self.step_rps} never goes from start_rps"
                f" {self.start_rps} to end_rps {self.end_rps}: give it the sign of end - start",
            )
        return self


class RateLineSpec(_OpenLoopSpec):
    """Open loop, rate ramped linearly (ghz's `line`) from `start_rps` to `end_rps` over
    `ramp_s`, then held."""

    kind: Literal["rate-line"] = "rate-line"
    start_rps: float = Field(ge=0, le=1_000_000)
    end_rps: float = Field(ge=0, le=1_000_000)
    ramp_s: float = Field(gt=0, le=86_400)

    @model_validator(mode="after")
    def _some_rate(self) -> Self:
        if max(self.start_rps, self.end_rps) == 0:
            raise FieldError(("end_rps",), "start_rps and end_rps are both 0: give a rate > 0")
        return self


class SweepSpec(_OpenLoopSpec):
    """Find the highest rate meeting the scenario's SLOs and the knee of the throughput curve.

    Stages (each `load.ramp_up_s` + `load.duration_s`): first a closed-loop probe with
    `probe_users` users measures the most the server completes per second; then open-loop
    stages bisect between 0 and that rate until the bracket is narrower than `precision`
    (relative) or `max_stages` have run (decisions: servingperf.analysis.sweep).
    """

    kind: Literal["sweep"] = "sweep"
    probe_users: int = Field(default=64, ge=1, le=100_000)
    max_stages: int = Field(default=8, ge=2, le=100, description="probe stage included")
    precision: float = Field(
        default=0.05, gt=0, lt=1, description="stop when (high - low) / high is below this"
    )
    slo_attainment: float = Field(
        default=0.99,
        gt=0,
        le=1,
        description="fraction of completed requests that must meet every SLO for a stage to pass",
    )
    saturation_tolerance: float = Field(
        default=0.05,
        gt=0,
        lt=1,
        description="a stage completing below (1 - this) x its offered rate is saturated",
    )


class TraceScheduleSpec(Spec):
    """Open loop, a recorded trace replayed (`dataset.source: trace`): request k is sent at the
    trace's arrival offset k / `speedup`, lateness recorded as client lag."""

    kind: Literal["trace"] = "trace"
    speedup: float = Field(
        default=1.0, gt=0, le=1_000_000, description="replay this many times faster"
    )
    max_concurrency: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="most requests in flight; arrivals beyond wait and their lag is recorded",
    )


ScheduleSpec = Annotated[
    UsersScheduleSpec
    | UsersStepSpec
    | UsersLineSpec
    | RateScheduleSpec
    | RateStepSpec
    | RateLineSpec
    | TraceScheduleSpec
    | SweepSpec,
    Field(discriminator="kind"),
]


class BreakerSpec(Spec):
    """The error breaker: stop the run when too many requests fail (reason in run.json)."""

    max_error_rate: float = Field(
        ge=0, lt=1, description="stop when errors / finished requests of a phase exceeds this"
    )
    min_requests: int = Field(
        default=20, ge=1, le=100_000_000, description="finished requests before it may trip"
    )


class BackoffSpec(Spec):
    """How a closed-loop user waits after requests that could not connect (a server down)."""

    initial_s: float = Field(
        default=0.05, gt=0, le=3600, description="wait after the first connection failure"
    )
    max_s: float = Field(
        default=2.0, gt=0, le=3600, description="the wait doubles per failure in a row, up to this"
    )

    @model_validator(mode="after")
    def _ordered(self) -> BackoffSpec:
        if self.max_s < self.initial_s:
            raise ValueError(f"max_s ({self.max_s}) must be >= initial_s ({self.initial_s})")
        return self


class LoadSpec(Spec):
    """The load of a phase: closed-loop users by default (each sends its next request when its
    last returns), or the open-loop, ramp or sweep `schedule` given."""

    users: int = Field(default=16, ge=1, le=100_000, description="concurrent virtual users")
    duration_s: float = Field(
        default=600.0, gt=0, le=7 * 86_400, description="measurement window length"
    )
    ramp_up_s: float = Field(
        default=30.0, ge=0, le=86_400, description="load before the window, excluded from figures"
    )
    drain_s: float = Field(
        default=0.0,
        ge=0,
        le=86_400,
        description="after the window the phase stops issuing; the requests in flight may then"
        " finish for up to this long (ordinary records, ending after the window, so outside its"
        " figures) before what remains is cut; 0 cuts them at once",
    )
    stream: bool = True
    force_output_length: bool = Field(
        default=True,
        description="send min_tokens = max_tokens and ignore_eos so every answer has the intended"
        " length (as llm-load-test does); false lets the model stop at its end-of-sequence token",
    )
    request_timeout_s: float = Field(
        default=300.0,
        gt=0,
        le=86_400,
        description="a request still unanswered after this is cancelled and recorded as a timeout"
        " (deadlines are checked every 50 ms, so it fires up to 50 ms late)",
    )
    seed: int = Field(default=0, description="seeds each user's prompt choice")
    breaker: BreakerSpec | None = Field(
        default=None, description="stop the run when the error rate passes a bound"
    )
    backoff: BackoffSpec | None = Field(
        default_factory=BackoffSpec,
        description="closed-loop users back off after requests that could not connect (0.05 s,"
        " doubling up to 2 s, reset by any request that connects), so a crashed server is not"
        " hammered with instant connect errors; null: retry at once",
    )
    schedule: ScheduleSpec = Field(
        default_factory=UsersScheduleSpec,
        description="how requests are issued: closed-loop users (default), a rate, a step or"
        " linear ramp of either, or a sweep; see docs/benchmarks.md",
    )
    calibration_s: float = Field(
        default=1.0,
        ge=0,
        le=30,
        description="seconds of start-of-run self-calibration (the load process's own ceiling"
        " against a loopback sink, for the run's validity verdict); 0 skips it",
    )
    workers: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="load-generating processes; default: the usable cores",
    )


class OutputLength(enum.StrEnum):
    DATASET = "dataset"


class DatasetSource(enum.StrEnum):
    BUNDLED = "bundled"
    JSONL = "jsonl"
    SYNTHETIC = "synthetic"
    SHARED_PREFIX = "shared-prefix"
    TRACE = "trace"
    CONVERSATIONS = "conversations"


# The section each source with one reads (DatasetSpec field name).
_SOURCE_SECTIONS = {
    DatasetSource.SHARED_PREFIX: "shared_prefix",
    DatasetSource.TRACE: "trace",
    DatasetSource.CONVERSATIONS: "conversations",
}


class DatasetSpec(Spec):
    source: DatasetSource = DatasetSource.BUNDLED
    path: str | None = Field(default=None, description="JSONL file, for source: jsonl")
    prompts: int = Field(default=32, ge=1, le=1_000_000, description="size of the subset used")
    seed: int = Field(default=42, description="seeds the choice of the subset")
    output_tokens: int | OutputLength = Field(
        default=128,
        description="fixed output length per request, or 'dataset' for each prompt's own",
    )
    synthetic_input_tokens: int = Field(default=128, ge=1, le=1_000_000)
    shared_prefix: SharedPrefixSpec | None = Field(
        default=None, description="with source 'shared-prefix': prefix groups and lengths"
    )
    trace: TraceSourceSpec | None = Field(
        default=None,
        description="with source 'trace': the trace file; its rows give each request's input"
        " and output lengths (unless output_tokens is set) and prefix blocks",
    )
    conversations: ConversationsSpec | None = Field(
        default=None, description="with source 'conversations': multi-turn sessions"
    )

    @model_validator(mode="after")
    def _section_for_source(self) -> Self:
        for source, section in _SOURCE_SECTIONS.items():
            given = getattr(self, section) is not None
            if self.source is source and not given and source is not DatasetSource.CONVERSATIONS:
                raise FieldError((section,), f"source {source.value!r} needs a {section!r} section")
            if given and self.source is not source:
                raise FieldError(
                    (section,),
                    f"is only read with source {source.value!r}, not {self.source.value!r}",
                )
        return self

    @property
    def trace_lengths(self) -> bool:
        """A trace's own output lengths are used (output_tokens not set, or 'dataset')."""
        return self.source is DatasetSource.TRACE and (
            "output_tokens" not in self.model_fields_set
            or self.output_tokens is OutputLength.DATASET
        )

    @model_validator(mode="after")
    def _path_for_jsonl(self) -> Self:
        if self.source is DatasetSource.JSONL and not self.path:
            raise ValueError("source 'jsonl' needs 'path' (a local JSONL file)")
        if self.source is not DatasetSource.JSONL and self.path:
            raise ValueError(f"'path' is only read with source 'jsonl', not {self.source.value!r}")
        if isinstance(self.output_tokens, int) and not 1 <= self.output_tokens <= 1_000_000:
            raise ValueError("output_tokens must be between 1 and 1000000, or 'dataset'")
        return self


class SloSpec(Spec):
    """Service-level objectives: goodput counts completed requests meeting all given ones."""

    ttft_s: float | None = Field(default=None, gt=0)
    tpot_s: float | None = Field(default=None, gt=0)
    e2e_s: float | None = Field(default=None, gt=0)


class ManyModelSpec(Spec):
    """The seed's many-model flavour: for each of M namespaces, for each of K instances: deploy it,
    validate it with Q queries; then validate all K of the namespace again with Q queries each."""

    namespaces: int = Field(default=12, ge=1, le=10_000)
    instances_per_namespace: int = Field(default=17, ge=1, le=10_000)
    queries: int = Field(default=10, ge=0, le=10_000, description="validation queries per round")
    validation_output_tokens: int = Field(default=16, ge=1, le=4096)
    namespace_concurrency: int = Field(
        default=12, ge=1, le=10_000, description="namespace drivers running at once"
    )
    namespace_stagger_s: float = Field(
        default=60.0, ge=0, le=86_400, description="delay between namespace driver starts"
    )
    namespace_prefix: Name = "ns"
    keep_deployed: bool = Field(
        default=False, description="leave instances running at the end (they are removed otherwise)"
    )


class MultiModelSpec(Spec):
    """The seed's multi-model flavour: a concurrent phase on all instances, then each alone."""

    sequential: bool = Field(default=True, description="run the sequential baseline phase")
    saturation_threshold: float = Field(
        default=0.10,
        gt=0,
        lt=1,
        description="relative degradation (concurrent vs sequential) above which an instance is"
        " judged saturated, when the confidence interval also excludes no change",
    )
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    bootstrap_samples: int = Field(default=2000, ge=100, le=100_000)


_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
QuerySetName = Literal["vllm", "kserve", "apiserver", "node"]
QUERY_SET_NAMES: tuple[QuerySetName, ...] = ("vllm", "kserve", "apiserver", "node")


class ScrapeSpec(Spec):
    """Scraping each instance's Prometheus endpoint during every phase (docs/server-metrics.md).

    The endpoint is discovered from the platform: the instance's serving URL (local: the
    emulator's port; kserve: its endpoint, through the ingress with its Host header; static: the
    endpoint's URL) with ``path``, on ``port`` when given. A failed scrape is a counted gap."""

    enabled: bool = Field(default=True, description="scrape during every phase")
    interval_s: float = Field(default=1.0, ge=0.05, le=3600, description="fixed scrape interval")
    timeout_s: float = Field(
        default=0.5, gt=0, le=600, description="a scrape not answered by then is a gap"
    )
    path: str = Field(default="/metrics", description="path of the metrics endpoint")
    port: int | None = Field(
        default=None, ge=1, le=65535, description="metrics port when not the serving port"
    )
    include: list[str] = Field(
        default_factory=list, description="keep only metric families matching one of these globs"
    )
    exclude: list[str] = Field(
        default_factory=lambda: ["python_*", "process_*"],
        description="drop metric families matching these globs (`*_created` always dropped)",
    )
    concurrency: int = Field(default=64, ge=1, le=4096, description="scrapes in flight at once")
    max_scrapes_per_s: float = Field(
        default=50.0,
        gt=0,
        le=100_000,
        description="budget of periodic scrapes: beyond it instances are scraped round-robin,"
        " each less often (phase boundaries are always scraped)",
    )

    @model_validator(mode="after")
    def _timeout_within_interval(self) -> Self:
        if self.timeout_s >= self.interval_s:
            raise FieldError(
                ("timeout_s",),
                f"must be less than interval_s ({self.interval_s:g}): a scrape must end before"
                " the next one is due",
            )
        if not self.path.startswith("/"):
            raise FieldError(("path",), f"must start with '/', got {self.path!r}")
        return self


class PrometheusSpec(Spec):
    """Range queries over each phase window against a Prometheus HTTP API (a cluster's
    Prometheus, OpenShift's Thanos querier), run when the run's phases are over."""

    url: str = Field(description="base URL of the HTTP API, e.g. https://thanos-querier:9091")
    bearer_token_env: str | None = Field(
        default=None,
        description="environment variable holding the bearer token (never written anywhere)",
    )
    tls_insecure: bool = False
    ca_file: str | None = None
    query_sets: list[QuerySetName] = Field(
        default_factory=lambda: list(QUERY_SET_NAMES),
        description="built-in query sets: vllm, kserve, apiserver, node (docs/server-metrics.md)",
    )
    queries: dict[str, str] = Field(
        default_factory=dict,
        description="more queries, name -> PromQL (`{rate}` stands for rate_window_s)",
    )
    step_s: float = Field(default=5.0, gt=0, le=3600, description="query resolution")
    rate_window_s: float = Field(
        default=30.0, gt=0, le=86_400, description="window of rate() in the built-in queries"
    )
    settle_s: float = Field(
        default=5.0,
        ge=0,
        le=3600,
        description="wait this long after the last phase before querying (ingestion lag)",
    )
    timeout_s: float = Field(default=30.0, gt=0, le=3600, description="per query")

    @model_validator(mode="after")
    def _checked(self) -> Self:
        if not re.match(r"^https?://[^/\s]+", self.url):
            raise FieldError(("url",), f"must be an http(s) URL, got {self.url!r}")
        if "@" in self.url.split("//", 1)[1].split("/", 1)[0]:
            raise FieldError(
                ("url",), "must not carry credentials: use bearer_token_env for the token"
            )
        if self.bearer_token_env is not None and not _ENV_NAME_RE.fullmatch(self.bearer_token_env):
            raise FieldError(
                ("bearer_token_env",),
                f"must be an environment variable name, got {self.bearer_token_env!r}",
            )
        for name in self.queries:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
                raise FieldError(
                    ("queries", name), "query names use letters, digits and '_' (<= 63)"
                )
        if len(set(self.query_sets)) != len(self.query_sets):
            raise FieldError(("query_sets",), "a query set is listed twice")
        return self


class OtlpSpec(Spec):
    """Receive the servers' OpenTelemetry spans (OTLP/gRPC, on loopback) and join them to the
    records by request id; point the server's ``--otlp-traces-endpoint`` at it."""

    enabled: bool = False
    host: str = Field(default="127.0.0.1", description="address the receiver binds")
    port: int = Field(default=4317, ge=0, le=65535, description="0 picks a free port")
    settle_s: float = Field(
        default=6.0,
        ge=0,
        le=600,
        description="wait this long after the last phase for spans still being exported",
    )


class AgreementSpec(Spec):
    """Bounds of the client-versus-server agreement (counts must always match exactly)."""

    mean_rel_tol: float = Field(
        default=0.10, gt=0, lt=1, description="relative bound on a mean's difference"
    )
    mean_abs_tol_s: float = Field(
        default=0.050, ge=0, le=60, description="absolute bound on a mean's difference"
    )


class MetricsSpec(Spec):
    """Server-side metrics: scraping, Prometheus queries, OTLP spans (docs/server-metrics.md)."""

    scrape: ScrapeSpec = Field(default_factory=ScrapeSpec)
    prometheus: PrometheusSpec | None = None
    otlp: OtlpSpec = Field(default_factory=OtlpSpec)
    agreement: AgreementSpec = Field(default_factory=AgreementSpec)


class ScenarioKind(enum.StrEnum):
    SINGLE_MODEL = "single-model"
    MULTI_MODEL = "multi-model"
    MANY_MODEL = "many-model"


class ScenarioSpec(Spec):
    version: Literal[1] = 1
    name: Name
    kind: ScenarioKind = ScenarioKind.SINGLE_MODEL
    labels: dict[str, str] = Field(
        default_factory=dict, description="free labels stored with the run (release, commit...)"
    )
    platform: PlatformSpec = Field(default_factory=PlatformSpec)
    models: list[ModelSpec] = Field(min_length=1)
    load: LoadSpec = Field(default_factory=LoadSpec)
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    slo: SloSpec = Field(default_factory=SloSpec)
    many_model: ManyModelSpec | None = Field(
        default=None, description="settings of kind many-model (defaults: the seed's 12 x 17)"
    )
    multi_model: MultiModelSpec | None = Field(
        default=None, description="settings of kind multi-model"
    )
    metrics: MetricsSpec = Field(
        default_factory=MetricsSpec,
        description="server-side metrics: scraping (on by default), Prometheus queries, spans",
    )

    @property
    def many(self) -> ManyModelSpec:
        return self.many_model or ManyModelSpec()

    @property
    def multi(self) -> MultiModelSpec:
        return self.multi_model or MultiModelSpec()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        names = [m.name for m in self.models]
        if self.many_model is not None and self.kind is not ScenarioKind.MANY_MODEL:
            raise FieldError(("many_model",), "applies only to kind 'many-model'")
        if self.multi_model is not None and self.kind is not ScenarioKind.MULTI_MODEL:
            raise FieldError(("multi_model",), "applies only to kind 'multi-model'")
        for index, name in enumerate(names):
            if name in names[:index]:
                raise FieldError(("models", index, "name"), f"model name {name!r} is repeated")
        for index, model in enumerate(self.models):
            local = model.emulator is not None or model.server is not None
            if self.platform.kind is PlatformKind.LOCAL and not local:
                raise FieldError(
                    ("models", index),
                    "platform 'local' starts the embedded emulator or a serving engine, so give"
                    " 'emulator' or 'server', or use platform kind 'static' for an existing"
                    " 'endpoint'",
                )
            if self.platform.kind is PlatformKind.STATIC:
                _check_static_endpoint(index, model)
            if self.platform.kind is PlatformKind.KSERVE and (local or model.endpoint):
                raise FieldError(
                    ("models", index),
                    "platform 'kserve' deploys InferenceServices: give none of 'emulator',"
                    " 'server' or 'endpoint' (set the model under platform.kserve)",
                )
        if self.platform.kind is PlatformKind.KSERVE and self.platform.kserve is None:
            raise FieldError(("platform",), "kind 'kserve' needs a 'kserve' section")
        self._workload_rules()
        for key in self.labels:
            if not _LABEL_RE.fullmatch(key):
                raise FieldError(
                    ("labels", key), "label keys use letters, digits, '_', '.', '-' (<= 63)"
                )
        return self

    def _workload_rules(self) -> None:
        """A trace schedule replays a trace dataset; conversations are chat sessions of
        closed-loop users; adapters are named in OpenAI requests."""
        source = self.dataset.source
        trace_schedule = isinstance(self.load.schedule, TraceScheduleSpec)
        if trace_schedule and source is not DatasetSource.TRACE:
            raise FieldError(
                ("load", "schedule"),
                "kind 'trace' replays a trace: set dataset source 'trace' with its 'trace' file",
            )
        if source is DatasetSource.CONVERSATIONS:
            if not isinstance(
                self.load.schedule, UsersScheduleSpec | UsersStepSpec | UsersLineSpec
            ):
                raise FieldError(
                    ("load", "schedule"),
                    "conversations are run by closed-loop users (each runs whole sessions):"
                    " use a users schedule",
                )
            for index, model in enumerate(self.models):
                if model.protocol is not ProtocolKind.OPENAI_CHAT:
                    raise FieldError(
                        ("models", index, "protocol"),
                        "conversations send a message history: use protocol 'openai-chat'",
                    )
        for index, model in enumerate(self.models):
            if model.adapters is not None and model.protocol not in (
                ProtocolKind.OPENAI_COMPLETIONS,
                ProtocolKind.OPENAI_CHAT,
            ):
                raise FieldError(
                    ("models", index, "adapters"),
                    "adapters are named in the model field of OpenAI requests: use protocol"
                    " 'openai-completions' or 'openai-chat'",
                )


def _check_static_endpoint(index: int, model: ModelSpec) -> None:
    """A static model needs an endpoint with the address its protocol dials."""
    endpoint = model.endpoint
    if endpoint is None:
        raise FieldError(("models", index), "platform 'static' needs an 'endpoint'")
    protocol = model.protocol.value
    if protocol.endswith("-grpc") and endpoint.grpc_address is None:
        raise FieldError(
            ("models", index, "endpoint", "grpc_address"),
            f"protocol {protocol!r} is gRPC: give the server's gRPC address, host:port"
            " (plaintext) or grpcs://host:port (TLS)",
        )
    if not protocol.endswith("-grpc") and endpoint.url is None:
        raise FieldError(
            ("models", index, "endpoint", "url"),
            f"protocol {protocol!r} is HTTP: give the server's base URL, e.g. http://host:port",
        )
