"""What users write: scenario specs (pydantic v2, unknown keys rejected, every default stated).

A scenario file is one :class:`ScenarioSpec`. Cross-field rules live in validators whose messages
say what to change. Nothing here touches files or the network: :mod:`servingperf.config` loads YAML
and maps errors to file, line and field.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

NAME_PATTERN = r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$"
_LABEL_RE = re.compile(r"[A-Za-z0-9_.-]{1,63}")

Name = Annotated[
    str,
    Field(
        pattern=NAME_PATTERN,
        description="lower-case letters, digits, '-' and '.', at most 63 characters (a DNS label)",
    ),
]


class FieldError(ValueError):
    """A cross-field rule broken at a known place: ``loc`` is relative to the validated model, so the
    config loader can point at the line of the offending field rather than at the whole model."""

    def __init__(self, loc: tuple[int | str, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


class Spec(BaseModel):
    """Base of every user-facing spec: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class ProtocolKind(enum.StrEnum):
    OPENAI_COMPLETIONS = "openai-completions"
    OPENAI_CHAT = "openai-chat"
    CAIKIT_GRPC = "caikit-grpc"
    TGIS_GRPC = "tgis-grpc"
    KSERVE_V2_REST = "kserve-v2-rest"
    KSERVE_V2_GRPC = "kserve-v2-grpc"


class EmulatorSpec(Spec):
    """An embedded emulator instance: a named profile, optionally with parameters overridden."""

    profile: str = Field(description="emulator profile name, e.g. flan-t5-small")
    overrides: dict[str, float] = Field(
        default_factory=dict, description="profile parameters to override (see docs/emulator.md)"
    )
    load_time_s: float | None = Field(
        default=None, ge=0, le=86_400,
        description="fixed start-up time; default: drawn from the profile's distribution",
    )
    device: str | None = Field(
        default=None, description="instances naming the same device share one batching engine"
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
        if (self.emulator is None) == (self.endpoint is None):
            raise ValueError(
                "give exactly one of 'emulator' (the embedded model server) or 'endpoint' (a server"
                " already running)"
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


class PlatformSpec(Spec):
    kind: PlatformKind = PlatformKind.LOCAL
    host: str = Field(default="127.0.0.1", description="local platform: address servers bind to")
    ready_timeout_s: float = Field(default=300.0, gt=0, le=86_400)
    deploy_concurrency: int = Field(default=4, ge=1, le=1024)


class LoadSpec(Spec):
    """Closed-loop load: N users, each sending its next request when the last returns."""

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
    request_timeout_s: float = Field(default=300.0, gt=0, le=86_400)
    seed: int = Field(default=0, description="seeds each user's prompt choice")


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
        default=0.10, gt=0, lt=1,
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
        for key in self.labels:
            if not _LABEL_RE.fullmatch(key):
                raise FieldError(
                    ("labels", key), "label keys use letters, digits, '_', '.', '-' (<= 63)"
                )
        return self
