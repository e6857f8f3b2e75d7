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
from servingperf.model.spec_base import NAME_PATTERN, FieldError, Name, Spec

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
        if total > 1 + 1e-9:
            raise ValueError(
                f"per-request fault probabilities add up to {total:g}; one request gets at most"
                " one fault, so keep their sum at most 1"
            )
        return self


class EmulatorSpec(Spec):
    """An embedded emulator instance: a named profile, optionally with parameters overridden."""

    profile: str = Field(description="emulator profile name, e.g. flan-t5-small")
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
    """An already deployed server (static platform)."""

    url: str = Field(description="base URL, e.g. http://127.0.0.1:8000 or grpc host:port")
    tls_insecure: bool = False
    ca_file: str | None = None
    token_env: str | None = Field(
        default=None, description="name of an environment variable holding a bearer token"
    )
    token_file: str | None = Field(default=None, description="file holding a bearer token")
    host_header: str | None = None


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

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if self.emulator is not None and self.endpoint is not None:
            raise ValueError(
                "give one of 'emulator' (the embedded model server) or 'endpoint' (a server"
                " already running), not both"
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


ScheduleSpec = Annotated[
    UsersScheduleSpec
    | UsersStepSpec
    | UsersLineSpec
    | RateScheduleSpec
    | RateStepSpec
    | RateLineSpec
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
    schedule: ScheduleSpec = Field(
        default_factory=UsersScheduleSpec,
        description="how requests are issued: closed-loop users (default), a rate, a step or"
        " linear ramp of either, or a sweep; see docs/benchmarks.md",
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
            if self.platform.kind is PlatformKind.LOCAL and model.emulator is None:
                raise FieldError(
                    ("models", index),
                    "platform 'local' runs the embedded emulator, so give 'emulator', or use"
                    " platform kind 'static' for an existing 'endpoint'",
                )
            if self.platform.kind is PlatformKind.STATIC and model.endpoint is None:
                raise FieldError(("models", index), "platform 'static' needs an 'endpoint'")
            if self.platform.kind is PlatformKind.KSERVE and (model.emulator or model.endpoint):
                raise FieldError(
                    ("models", index),
                    "platform 'kserve' deploys InferenceServices: give neither 'emulator' nor"
                    " 'endpoint' (set the model under platform.kserve)",
                )
        if self.platform.kind is PlatformKind.KSERVE and self.platform.kserve is None:
            raise FieldError(("platform",), "kind 'kserve' needs a 'kserve' section")
        for key in self.labels:
            if not _LABEL_RE.fullmatch(key):
                raise FieldError(
                    ("labels", key), "label keys use letters, digits, '_', '.', '-' (<= 63)"
                )
        return self
