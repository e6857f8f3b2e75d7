"""The life of one generation RPC in the emulator's gRPC front ends, whatever the service.

A front end parses its request message into (request id, model, prompt tokens, length ask) and
says how to build its response messages; :func:`run_unary` and :func:`run_stream` do the rest:
admission, refusals as gRPC statuses, waiting for or writing tokens, the ground truth record
(terms in :mod:`servingperf.emulator.grpc_context`), and freeing the batch slot when the client
goes away (gRPC cancels the handler; its sequence is cancelled in ``finally``).

Refusals map to codes as a real server would answer: loading or shutting down -> UNAVAILABLE,
unknown model -> NOT_FOUND, bad field -> INVALID_ARGUMENT. A generation the engine aborted
(shutdown) ends with UNAVAILABLE, also mid-stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from servingperf.emulator.engine import Sequence
from servingperf.emulator.groundtruth import GroundTruthRecord
from servingperf.emulator.grpc_context import (
    REQUEST_ID_KEY,
    LengthAsk,
    Refusal,
    RefusalKind,
    ServingContext,
)
from servingperf.emulator.lengths import OutputPlan

M = TypeVar("M")
Context = grpc.aio.ServicerContext[Any, Any]

_REFUSAL_CODES = {
    RefusalKind.LOADING: grpc.StatusCode.UNAVAILABLE,
    RefusalKind.CLOSING: grpc.StatusCode.UNAVAILABLE,
    RefusalKind.UNKNOWN_MODEL: grpc.StatusCode.NOT_FOUND,
    RefusalKind.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
}
_ABORTED = "the server stopped before the generation finished"


def code_number(code: grpc.StatusCode) -> int:
    number: int = code.value[0]
    return number


def metadata_value(context: Context, key: str) -> str | None:
    """The first value of request metadata ``key`` (lower-case), as text."""
    for item in context.invocation_metadata() or ():
        name, value = item[0], item[1]
        if name == key:
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return None


def request_id(context: Context) -> str | None:
    return metadata_value(context, REQUEST_ID_KEY)


async def refuse(
    context: Context, record: GroundTruthRecord, code: grpc.StatusCode, message: str
) -> None:
    """End the call with ``code``; records the refusal first (abort raises)."""
    record.outcome = "rejected"
    record.status = code_number(code)
    await context.abort(code, message)


async def run_unary(
    ctx: ServingContext,
    context: Context,
    endpoint: str,
    *,
    rid: str | None,
    model: str | None,
    prompt_tokens: int,
    ask: LengthAsk,
    respond: Callable[[OutputPlan], M],
    wire_finish: Callable[[str], str],
) -> M:
    """Serve a unary generation: wait for the whole sequence, then return ``respond(plan)``."""
    record = ctx.new_record(rid, endpoint, streamed=False)
    sequence: Sequence | None = None
    try:
        try:
            sequence, plan = ctx.admit(record, model, prompt_tokens, ask)
        except Refusal as refusal:
            await refuse(context, record, _REFUSAL_CODES[refusal.kind], refusal.message)
            raise AssertionError("abort returned") from refusal  # pragma: no cover
        await sequence.wait_finished()
        if not sequence.complete:
            record.outcome = "aborted"
            record.status = code_number(grpc.StatusCode.UNAVAILABLE)
            await context.abort(grpc.StatusCode.UNAVAILABLE, _ABORTED)
        message = respond(plan)
        now = ctx.clock()
        record.first_token_written = now
        record.token_written.append(now)
        record.output_tokens = plan.tokens
        record.finish_reason = wire_finish(plan.finish_reason)
        record.status = code_number(grpc.StatusCode.OK)
        record.end = now
        return message
    except asyncio.CancelledError:
        record.outcome = "disconnected"
        raise
    finally:
        _finish(ctx, record, sequence)


async def run_stream(
    ctx: ServingContext,
    context: Context,
    endpoint: str,
    *,
    rid: str | None,
    model: str | None,
    prompt_tokens: int,
    ask: LengthAsk,
    token_message: Callable[[int, str | None], object],
    wire_finish: Callable[[str], str],
    opening: object | None = None,
) -> None:
    """Serve a server-streaming generation: ``opening`` (if any, no token) right after admission,
    then ``token_message(index, finish_reason or None)`` per token; the last one gets the plan's
    finish reason."""
    record = ctx.new_record(rid, endpoint, streamed=True)
    sequence: Sequence | None = None
    try:
        try:
            sequence, plan = ctx.admit(record, model, prompt_tokens, ask)
        except Refusal as refusal:
            await refuse(context, record, _REFUSAL_CODES[refusal.kind], refusal.message)
            return
        if opening is not None:
            await context.write(opening)
        last = plan.tokens - 1
        async for index in sequence:
            await context.write(token_message(index, plan.finish_reason if index == last else None))
            ctx.note_token(record)
        if not sequence.complete:
            record.outcome = "aborted"
            record.status = code_number(grpc.StatusCode.UNAVAILABLE)
            await context.abort(grpc.StatusCode.UNAVAILABLE, _ABORTED)
        record.finish_reason = wire_finish(plan.finish_reason)
        record.status = code_number(grpc.StatusCode.OK)
        record.end = ctx.clock()
    except asyncio.CancelledError:
        record.outcome = "disconnected"
        raise
    finally:
        _finish(ctx, record, sequence)


def _finish(ctx: ServingContext, record: GroundTruthRecord, sequence: Sequence | None) -> None:
    if sequence is not None:
        sequence.cancel()  # no-op when finished; frees the slot of a departed client
        record.admitted = sequence.admitted_at
    if record.end is None:
        record.end = ctx.clock()
    ctx.ground_truth.add(record)
