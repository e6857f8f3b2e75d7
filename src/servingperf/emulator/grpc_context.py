"""What the gRPC front ends (caikit, TGIS, KServe v2) and the KServe v2 REST front end share:
the served models, readiness, output-length planning and ground truth.

Terms. A *serving context* is the state one emulator process serves from: ``engines`` (model id ->
engine; several ids may share one engine), the ground truth log, a readiness test (the HTTP front
end's load-time countdown, so every front end turns ready at the same moment), the seed and the
clock. *Admission* turns a parsed request into a running :class:`Sequence` with an
:class:`OutputPlan`, or a :class:`Refusal` that each front end maps to its own status (gRPC code
or HTTP status). Output lengths use the same rule and the same per-request-id random draw as the
OpenAI front end (:func:`plan_output` seeded with ``"{seed}:{request_id}"``), so a request id gets
the same natural length whatever protocol carried it.

Ground truth for gRPC calls follows :mod:`servingperf.emulator.groundtruth` with two readings:
``endpoint`` is the full method name (``/fmaas.GenerationService/GenerateStream``) and ``status``
is the gRPC status code number (0 = OK). A token time is read right after ``await
context.write(...)`` returned for the message carrying it; for a unary call, whose response gRPC
sends after the handler returns, it is read just before returning (the serialisation and send
that follow are not in it).
"""

from __future__ import annotations

import enum
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from servingperf.emulator.engine import Clock, Engine, Sequence
from servingperf.emulator.groundtruth import GroundTruthLog, GroundTruthRecord
from servingperf.emulator.lengths import OutputPlan, plan_output

REQUEST_ID_KEY = "x-request-id"


def _always_ready() -> bool:
    return True


class RefusalKind(enum.Enum):
    LOADING = "loading"  # not ready yet
    UNKNOWN_MODEL = "unknown_model"
    INVALID = "invalid"  # a bad request field
    CLOSING = "closing"  # the engine is shutting down


class Refusal(Exception):
    """A generation request the emulator refuses; never escapes a front end."""

    def __init__(self, kind: RefusalKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True, slots=True)
class LengthAsk:
    """A request's output-length intent, in the emulator's (vLLM's) terms."""

    max_tokens: int | None = None
    min_tokens: int | None = None
    ignore_eos: bool = False


@dataclass(frozen=True, slots=True)
class ServingContext:
    """The state the non-OpenAI front ends serve from (terms in the module docstring)."""

    engines: Mapping[str, Engine]
    ground_truth: GroundTruthLog
    is_ready: Callable[[], bool] = field(default=_always_ready)
    seed: int = 0
    clock: Clock = time.monotonic

    def __post_init__(self) -> None:
        if not self.engines:
            raise ValueError("serve at least one model")

    @property
    def default_model(self) -> str:
        return next(iter(self.engines))

    def new_record(
        self, request_id: str | None, endpoint: str, *, streamed: bool
    ) -> GroundTruthRecord:
        return GroundTruthRecord(
            request_id=request_id or uuid.uuid4().hex,
            model="",
            endpoint=endpoint,
            streamed=streamed,
            arrival=self.clock(),
        )

    def admit(
        self, record: GroundTruthRecord, model: str | None, prompt_tokens: int, ask: LengthAsk
    ) -> tuple[Sequence, OutputPlan]:
        """Start the generation (queued in its engine) or raise :class:`Refusal`.

        ``model`` None or empty means the first served model (TGIS and caikit servers serve one).
        """
        if not self.is_ready():
            raise Refusal(RefusalKind.LOADING, "the model is loading")
        name = model or self.default_model
        record.model = name
        record.prompt_tokens = prompt_tokens
        engine = self.engines.get(name)
        if engine is None:
            raise Refusal(
                RefusalKind.UNKNOWN_MODEL,
                f"model {name!r} is not served here; served: {', '.join(self.engines)}",
            )
        if ask.max_tokens is not None and ask.max_tokens < 1:
            raise Refusal(RefusalKind.INVALID, f"max tokens must be >= 1, got {ask.max_tokens}")
        if ask.min_tokens is not None and ask.min_tokens < 0:
            raise Refusal(RefusalKind.INVALID, f"min tokens must be >= 0, got {ask.min_tokens}")
        if (
            ask.min_tokens is not None
            and ask.max_tokens is not None
            and ask.min_tokens > ask.max_tokens
        ):
            raise Refusal(
                RefusalKind.INVALID,
                f"min tokens ({ask.min_tokens}) must be <= max tokens ({ask.max_tokens})",
            )
        plan = plan_output(
            engine.profile,
            random.Random(f"{self.seed}:{record.request_id}"),
            max_tokens=ask.max_tokens,
            min_tokens=ask.min_tokens,
            ignore_eos=ask.ignore_eos,
        )
        try:
            sequence = engine.submit(
                prompt_tokens, plan.tokens, model=name, finish_reason=plan.finish_reason
            )
        except RuntimeError as exc:  # closing, or the step loop failed
            raise Refusal(RefusalKind.CLOSING, str(exc)) from exc
        return sequence, plan

    def note_token(self, record: GroundTruthRecord) -> None:
        """A token-bearing message was just handed to the transport."""
        now = self.clock()
        if not record.token_written:
            record.first_token_written = now
        record.token_written.append(now)
        record.output_tokens = len(record.token_written)
