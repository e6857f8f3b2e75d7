"""The KServe v2 (Open Inference Protocol) wire format as the emulator reads and writes it (pure).

Generation over v2 tensors follows Triton's vLLM backend (github.com/triton-inference-server/
vllm_backend): the prompt is input ``text_input`` (BYTES, [1]); the length intent comes from input
``sampling_parameters`` (a JSON object with vLLM's ``max_tokens``, ``min_tokens``, ``ignore_eos``)
or from request parameters of those names; BOOL inputs ``return_num_output_tokens``,
``return_num_input_tokens`` and ``return_finish_reason`` add outputs ``num_output_tokens``,
``num_input_tokens`` (UINT32) and ``finish_reason`` (BYTES) to ``text_output`` (BYTES). Inputs the
emulator does not model (``exclude_input_in_output``, temperatures...) are accepted and ignored;
``stream`` true is refused on ``/infer`` (v2 infer is unary). The generate extension
(``/generate``, ``/generate_stream``) carries the same things as JSON properties: ``text_input``,
``parameters`` (sampling), top-level flags, and outputs as properties of the response or of each
streamed event (``num_output_tokens`` per event is that event's tokens, as in vLLM's backend).

A *generation ask* is a parsed request of any of these forms. Malformed requests raise
:class:`BadRequest`, whose message names the field. gRPC responses carry their outputs as raw
little-endian bytes (``raw_output_contents``), as Triton does; requests are read from either
``contents`` or ``raw_input_contents``. The protobuf messages are imported by the functions that
build them, so a process serving only REST never loads protobuf (docs/emulator.md, Memory).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from servingperf.emulator.grpc_context import LengthAsk

if TYPE_CHECKING:  # protobuf loads with the gRPC front end only: the REST forms are plain JSON
    from servingperf.protocols._generated import grpc_predict_v2_pb2 as pb

TEXT_INPUT = "text_input"
MODEL_VERSION = "1"
RETURN_OUTPUT_TOKENS = "return_num_output_tokens"
RETURN_INPUT_TOKENS = "return_num_input_tokens"
RETURN_FINISH_REASON = "return_finish_reason"
_LENGTH_KEYS = ("max_tokens", "min_tokens", "ignore_eos")


class BadRequest(ValueError):
    """A request the emulator answers with HTTP 400 / INVALID_ARGUMENT."""


@dataclass(frozen=True, slots=True)
class GenerationAsk:
    """A parsed generation request of any v2 form (terms in the module docstring)."""

    text: str
    length: LengthAsk
    stream: bool
    want_output_tokens: bool
    want_input_tokens: bool
    want_finish_reason: bool


@dataclass(frozen=True, slots=True)
class GenerationAnswer:
    """What a response reports about one generation (or one streamed event of it)."""

    text: str
    output_tokens: int
    input_tokens: int
    finish_reason: str | None


def _length(params: Mapping[str, Any], where: str) -> LengthAsk:
    def count(key: str) -> int | None:
        value = params.get(key)
        if value is None:
            return None
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)  # vLLM's backend accepts numbers given as strings
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadRequest(f"{where}.{key} must be an integer, got {value!r}")
        return value

    ignore = params.get("ignore_eos", False)
    if isinstance(ignore, str):
        ignore = ignore.lower() == "true"
    if not isinstance(ignore, bool):
        raise BadRequest(f"{where}.ignore_eos must be true or false, got {ignore!r}")
    return LengthAsk(count("max_tokens"), count("min_tokens"), ignore)


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, list):
        value = value[0] if value else False
    if not isinstance(value, bool):
        raise BadRequest(f"{name} must be a boolean, got {value!r}")
    return value


def _ask(text: Any, length: LengthAsk, flags: Mapping[str, Any], stream: bool) -> GenerationAsk:
    if not isinstance(text, str):
        raise BadRequest(f"{TEXT_INPUT} must be one string, got {text!r:.100}")
    return GenerationAsk(
        text=text,
        length=length,
        stream=stream,
        want_output_tokens=_flag(flags.get(RETURN_OUTPUT_TOKENS, False), RETURN_OUTPUT_TOKENS),
        want_input_tokens=_flag(flags.get(RETURN_INPUT_TOKENS, False), RETURN_INPUT_TOKENS),
        want_finish_reason=_flag(flags.get(RETURN_FINISH_REASON, False), RETURN_FINISH_REASON),
    )


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object")
    return data


def _sampling(raw: Any, params: Mapping[str, Any]) -> LengthAsk:
    """Length intent from a ``sampling_parameters`` JSON string, else from request parameters."""
    if raw is None:
        return _length(params, "parameters")
    if not isinstance(raw, str):
        raise BadRequest("sampling_parameters must be one JSON string")
    try:
        sampling = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"sampling_parameters is not JSON: {exc}") from exc
    if not isinstance(sampling, dict):
        raise BadRequest("sampling_parameters must be a JSON object")
    return _length(sampling, "sampling_parameters")


# --- REST --------------------------------------------------------------------------------------


def parse_infer_json(body: bytes) -> tuple[GenerationAsk, str | None]:
    """An ``/infer`` body: the ask and the request's ``id`` (if any)."""
    data = _json_object(body)
    inputs = data.get("inputs")
    if not isinstance(inputs, list):
        raise BadRequest("'inputs' must be a list of tensors")
    tensors: dict[str, Any] = {}
    for index, tensor in enumerate(inputs):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise BadRequest(f"inputs[{index}] must be an object with a 'name'")
        values = tensor.get("data")
        if not isinstance(values, list) or not values:
            raise BadRequest(f"inputs[{index}] ({tensor['name']}) needs a non-empty 'data' list")
        tensors[tensor["name"]] = values[0] if len(values) == 1 else values
    if TEXT_INPUT not in tensors:
        raise BadRequest(f"input '{TEXT_INPUT}' is required")
    params = data.get("parameters") or {}
    if not isinstance(params, dict):
        raise BadRequest("'parameters' must be an object")
    stream = _flag(tensors.get("stream", False), "stream")
    if stream:
        raise BadRequest("stream is not supported on /infer: use /generate_stream")
    ask = _ask(
        tensors[TEXT_INPUT], _sampling(tensors.get("sampling_parameters"), params), tensors, stream
    )
    request_id = data.get("id")
    return ask, request_id if isinstance(request_id, str) and request_id else None


def parse_generate_json(body: bytes, *, stream: bool) -> GenerationAsk:
    """A generate-extension body (``/generate`` or ``/generate_stream``)."""
    data = _json_object(body)
    if TEXT_INPUT not in data:
        raise BadRequest(f"'{TEXT_INPUT}' is required")
    params = data.get("parameters") or {}
    if not isinstance(params, dict):
        raise BadRequest("'parameters' must be an object")
    flags = {**params, **data}  # flags may come as parameters or as top-level inputs
    return _ask(data[TEXT_INPUT], _length(params, "parameters"), flags, stream)


def _outputs_json(ask: GenerationAsk, answer: GenerationAnswer) -> dict[str, Any]:
    outputs: dict[str, Any] = {"text_output": answer.text}
    if ask.want_output_tokens:
        outputs["num_output_tokens"] = answer.output_tokens
    if ask.want_input_tokens:
        outputs["num_input_tokens"] = answer.input_tokens
    if ask.want_finish_reason and answer.finish_reason is not None:
        outputs["finish_reason"] = answer.finish_reason
    return outputs


def infer_response_json(
    model: str, request_id: str | None, ask: GenerationAsk, answer: GenerationAnswer
) -> bytes:
    tensors = []
    for name, value in _outputs_json(ask, answer).items():
        datatype = "BYTES" if isinstance(value, str) else "UINT32"
        tensors.append({"name": name, "datatype": datatype, "shape": [1], "data": [value]})
    body: dict[str, Any] = {"model_name": model, "model_version": MODEL_VERSION, "outputs": tensors}
    if request_id is not None:
        body["id"] = request_id
    return json.dumps(body, separators=(",", ":")).encode()


def generate_response_json(model: str, ask: GenerationAsk, answer: GenerationAnswer) -> bytes:
    """A ``/generate`` body, or the JSON of one ``/generate_stream`` event."""
    body = {"model_name": model, "model_version": MODEL_VERSION, **_outputs_json(ask, answer)}
    return json.dumps(body, separators=(",", ":")).encode()


def error_json(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


def model_metadata(model: str) -> dict[str, Any]:
    """The model metadata of the generation convention (REST form; gRPC mirrors it)."""
    return {
        "name": model,
        "versions": [MODEL_VERSION],
        "platform": "servingperf-emulator",
        "inputs": [
            {"name": TEXT_INPUT, "datatype": "BYTES", "shape": [1]},
            {"name": "sampling_parameters", "datatype": "BYTES", "shape": [1]},
            {"name": "exclude_input_in_output", "datatype": "BOOL", "shape": [1]},
            {"name": RETURN_OUTPUT_TOKENS, "datatype": "BOOL", "shape": [1]},
            {"name": RETURN_INPUT_TOKENS, "datatype": "BOOL", "shape": [1]},
            {"name": RETURN_FINISH_REASON, "datatype": "BOOL", "shape": [1]},
        ],
        "outputs": [
            {"name": "text_output", "datatype": "BYTES", "shape": [-1]},
            {"name": "num_output_tokens", "datatype": "UINT32", "shape": [-1]},
            {"name": "num_input_tokens", "datatype": "UINT32", "shape": [-1]},
            {"name": "finish_reason", "datatype": "BYTES", "shape": [-1]},
        ],
    }


# --- gRPC --------------------------------------------------------------------------------------

_UNPACK = {
    "BOOL": ("?", "bool_contents"),
    "INT32": ("i", "int_contents"),
    "INT64": ("q", "int64_contents"),
    "UINT32": ("I", "uint_contents"),
    "UINT64": ("Q", "uint64_contents"),
}


def _decode_raw(datatype: str, data: bytes) -> list[Any]:
    if datatype == "BYTES":
        values: list[Any] = []
        offset = 0
        while offset + 4 <= len(data):
            (length,) = struct.unpack_from("<I", data, offset)
            values.append(data[offset + 4 : offset + 4 + length])
            offset += 4 + length
        if offset != len(data):
            raise BadRequest("a raw BYTES input is truncated")
        return values
    spec = _UNPACK.get(datatype)
    if spec is None:
        raise BadRequest(f"unsupported input datatype {datatype!r}")
    size = struct.calcsize(spec[0])
    return list(struct.unpack(f"<{len(data) // size}{spec[0]}", data[: len(data) // size * size]))


def _tensor_values(tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes | None) -> list[Any]:
    if raw is not None:
        values = _decode_raw(tensor.datatype, raw)
    elif tensor.datatype == "BYTES":
        values = list(tensor.contents.bytes_contents)
    elif tensor.datatype in _UNPACK:
        values = list(getattr(tensor.contents, _UNPACK[tensor.datatype][1]))
    else:
        raise BadRequest(f"input {tensor.name!r}: unsupported datatype {tensor.datatype!r}")
    decoded = []
    for value in values:
        if isinstance(value, bytes):
            try:
                value = value.decode()
            except UnicodeDecodeError as exc:
                raise BadRequest(f"input {tensor.name!r} is not UTF-8 text") from exc
        decoded.append(value)
    if not decoded:
        raise BadRequest(f"input {tensor.name!r} is empty")
    return decoded


def _parameter(value: pb.InferParameter) -> Any:
    choice = value.WhichOneof("parameter_choice")
    return None if choice is None else getattr(value, choice)


def parse_infer_pb(request: pb.ModelInferRequest) -> GenerationAsk:
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise BadRequest(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs")
    tensors: dict[str, Any] = {}
    for index, tensor in enumerate(request.inputs):
        values = _tensor_values(tensor, raw[index] if raw else None)
        tensors[tensor.name] = values[0] if len(values) == 1 else values
    if TEXT_INPUT not in tensors:
        raise BadRequest(f"input '{TEXT_INPUT}' is required")
    params = {key: _parameter(value) for key, value in request.parameters.items()}
    if _flag(tensors.get("stream", False), "stream"):
        raise BadRequest("stream is not supported by ModelInfer (v2 inference is unary)")
    length = _sampling(tensors.get("sampling_parameters"), params)
    return _ask(tensors[TEXT_INPUT], length, tensors, False)


def infer_response_pb(
    model: str, request_id: str, ask: GenerationAsk, answer: GenerationAnswer
) -> pb.ModelInferResponse:
    """The response with raw little-endian outputs (one raw entry per output, in order)."""
    from servingperf.protocols._generated import grpc_predict_v2_pb2 as pb

    response = pb.ModelInferResponse(model_name=model, model_version=MODEL_VERSION, id=request_id)
    for name, value in _outputs_json(ask, answer).items():
        if isinstance(value, str):
            data = value.encode()
            datatype, raw = "BYTES", struct.pack("<I", len(data)) + data
        else:
            datatype, raw = "UINT32", struct.pack("<I", value)
        response.outputs.add(name=name, datatype=datatype, shape=[1])
        response.raw_output_contents.append(raw)
    return response


def model_metadata_pb(model: str) -> pb.ModelMetadataResponse:
    from servingperf.protocols._generated import grpc_predict_v2_pb2 as pb

    meta = model_metadata(model)
    tensor = pb.ModelMetadataResponse.TensorMetadata
    return pb.ModelMetadataResponse(
        name=model,
        versions=meta["versions"],
        platform=meta["platform"],
        inputs=[tensor(**t) for t in meta["inputs"]],
        outputs=[tensor(**t) for t in meta["outputs"]],
    )
