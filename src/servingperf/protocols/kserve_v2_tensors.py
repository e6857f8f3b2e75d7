"""How a text generation travels as KServe v2 (Open Inference Protocol) tensors, both ways.

The protocol itself only moves named tensors. For LLMs we follow the convention of Triton's vLLM
and TensorRT-LLM backends (github.com/triton-inference-server/vllm_backend, README and
docs/additional_outputs.md), which KServe runtimes and custom models can follow too:

* inputs ``text_input`` (BYTES, shape [1]): the prompt; ``sampling_parameters`` (BYTES, [1]): a JSON
  object with vLLM's ``max_tokens``, ``min_tokens``, ``ignore_eos``; ``exclude_input_in_output``
  (BOOL, [1]) true, so that the output is the generated text only; ``return_num_input_tokens``,
  ``return_num_output_tokens`` and ``return_finish_reason`` (BOOL, [1]) true, asking for the counts;
* outputs ``text_output`` (BYTES), ``num_output_tokens`` and ``num_input_tokens`` (UINT32),
  ``finish_reason`` (BYTES). In a stream, ``num_output_tokens`` is the tokens of that response
  (a delta, as vLLM's backend defines it).

A *tensor value list* is a tensor's elements, flattened: ``str`` for BYTES (decoded as UTF-8),
``bool``, ``int`` or ``float`` for the others. gRPC responses may carry elements either in
``contents`` or in ``raw_output_contents`` (little-endian, BYTES elements each prefixed by a 4-byte
length), as Triton does: both are read. Pure code, no I/O.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from servingperf.model.records import GenerationRequest
from servingperf.protocols._generated import grpc_predict_v2_pb2 as pb

TEXT_INPUT = "text_input"
TEXT_OUTPUT = "text_output"
NUM_OUTPUT_TOKENS = "num_output_tokens"
NUM_INPUT_TOKENS = "num_input_tokens"
FINISH_REASON = "finish_reason"

Value = str | bool | int | float

# datatype -> (struct format of one element, contents field)
_FIXED: dict[str, tuple[str, str]] = {
    "BOOL": ("?", "bool_contents"),
    "INT8": ("b", "int_contents"),
    "INT16": ("h", "int_contents"),
    "INT32": ("i", "int_contents"),
    "INT64": ("q", "int64_contents"),
    "UINT8": ("B", "uint_contents"),
    "UINT16": ("H", "uint_contents"),
    "UINT32": ("I", "uint_contents"),
    "UINT64": ("Q", "uint64_contents"),
    "FP32": ("f", "fp32_contents"),
    "FP64": ("d", "fp64_contents"),
}


class TensorError(ValueError):
    """A response whose tensors cannot be read (malformed for this protocol)."""


@dataclass(frozen=True, slots=True)
class InputTensor:
    name: str
    datatype: str  # "BYTES" or "BOOL" here
    values: tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class GenerationOutput:
    """What a response says about its generation; None where it says nothing."""

    text: str | None
    output_tokens: int | None
    input_tokens: int | None
    finish_reason: str | None


def sampling_parameters(request: GenerationRequest) -> dict[str, Any]:
    """vLLM sampling parameters for the request's output-length intent."""
    params: dict[str, Any] = {}
    if request.max_tokens is not None:
        params["max_tokens"] = request.max_tokens
    if request.min_tokens is not None:
        params["min_tokens"] = request.min_tokens
    if request.ignore_eos:
        params["ignore_eos"] = True
    return params


def prompt_text(request: GenerationRequest) -> str:
    if request.system_prompt:
        return f"{request.system_prompt}\n\n{request.prompt}"
    return request.prompt


RETURN_FLAGS = ("return_num_input_tokens", "return_num_output_tokens", "return_finish_reason")


def generation_inputs(request: GenerationRequest) -> list[InputTensor]:
    """The input tensors of an infer request for ``request`` (see the module docstring)."""
    tensors = [
        InputTensor(TEXT_INPUT, "BYTES", (prompt_text(request),)),
        InputTensor("sampling_parameters", "BYTES", (json.dumps(sampling_parameters(request)),)),
        InputTensor("exclude_input_in_output", "BOOL", (True,)),
    ]
    tensors.extend(InputTensor(flag, "BOOL", (True,)) for flag in RETURN_FLAGS)
    return tensors


# --- REST (JSON) -------------------------------------------------------------------------------


def infer_json(request: GenerationRequest) -> dict[str, Any]:
    """The JSON body of ``POST /v2/models/{m}/infer``."""
    return {
        "id": request.request_id,
        "inputs": [
            {
                "name": t.name,
                "shape": [len(t.values)],
                "datatype": t.datatype,
                "data": list(t.values),
            }
            for t in generation_inputs(request)
        ],
    }


def generate_json(request: GenerationRequest, *, stream: bool) -> dict[str, Any]:
    """The JSON body of ``POST /v2/models/{m}/generate[_stream]`` (the generate extension).

    Sampling parameters go in ``parameters``; the other inputs are top-level properties, which a
    Triton server passes to the model as input tensors of that name.
    """
    body: dict[str, Any] = {
        TEXT_INPUT: prompt_text(request),
        "parameters": sampling_parameters(request),
        "exclude_input_in_output": True,
    }
    body.update(dict.fromkeys(RETURN_FLAGS, True))
    if stream:
        body["stream"] = True
    return body


def json_outputs(body: Any) -> dict[str, list[Value]]:
    """Output tensors of an infer response body, by name."""
    if not isinstance(body, Mapping):
        raise TensorError("the infer response is not a JSON object")
    outputs = body.get("outputs")
    if not isinstance(outputs, list):
        raise TensorError("the infer response has no 'outputs' list")
    found: dict[str, list[Value]] = {}
    for output in outputs:
        if not isinstance(output, Mapping) or not isinstance(output.get("name"), str):
            raise TensorError(f"an output tensor without a name: {output!r:.200}")
        data = output.get("data")
        if not isinstance(data, list):
            raise TensorError(f"output {output['name']!r} has no 'data' list")
        found[output["name"]] = _flatten(data)
    return found


def _flatten(data: list[Any]) -> list[Value]:
    flat: list[Value] = []
    for item in data:
        if isinstance(item, list):
            flat.extend(_flatten(item))
        elif isinstance(item, str | bool | int | float):
            flat.append(item)
        else:
            raise TensorError(f"unexpected tensor element {item!r:.100}")
    return flat


def generation_from_tensors(outputs: Mapping[str, Sequence[Value]]) -> GenerationOutput:
    """Read the generation convention's outputs (absent ones are None)."""
    return GenerationOutput(
        text=_first_str(outputs, TEXT_OUTPUT),
        output_tokens=_first_count(outputs, NUM_OUTPUT_TOKENS),
        input_tokens=_first_count(outputs, NUM_INPUT_TOKENS),
        finish_reason=_first_str(outputs, FINISH_REASON),
    )


def generation_from_json(body: Any) -> GenerationOutput:
    """Read a generate-extension response (or one streamed event): the outputs are properties.

    The finish reason may also come as ``details.finish_reason`` (the Open Inference Protocol's
    generate schema).
    """
    if not isinstance(body, Mapping):
        raise TensorError("the generate response is not a JSON object")
    outputs = {k: v if isinstance(v, list) else [v] for k, v in body.items() if v is not None}
    result = generation_from_tensors(outputs)
    details = body.get("details")
    if result.finish_reason is None and isinstance(details, Mapping):
        reason = details.get("finish_reason")
        if isinstance(reason, str) and reason:
            return GenerationOutput(result.text, result.output_tokens, result.input_tokens, reason)
    return result


def _first_str(outputs: Mapping[str, Sequence[Value]], name: str) -> str | None:
    values = outputs.get(name)
    if not values:
        return None
    value = values[0]
    if not isinstance(value, str):
        raise TensorError(f"{name} must be text, got {value!r:.100}")
    return value


def _first_count(outputs: Mapping[str, Sequence[Value]], name: str) -> int | None:
    values = outputs.get(name)
    if not values:
        return None
    value = values[0]
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise TensorError(f"{name} must be a count, got {value!r:.100}")
    if isinstance(value, float) and not value.is_integer():
        raise TensorError(f"{name} must be a whole number, got {value!r}")
    return int(value)


# --- gRPC (protobuf) ---------------------------------------------------------------------------


def infer_request_pb(request: GenerationRequest, model: str) -> pb.ModelInferRequest:
    """A ``ModelInferRequest`` for ``request``, tensor data in ``contents``."""
    inputs = []
    for tensor in generation_inputs(request):
        contents = pb.InferTensorContents()
        if tensor.datatype == "BYTES":
            contents.bytes_contents.extend(str(v).encode() for v in tensor.values)
        else:
            contents.bool_contents.extend(bool(v) for v in tensor.values)
        inputs.append(
            pb.ModelInferRequest.InferInputTensor(
                name=tensor.name,
                datatype=tensor.datatype,
                shape=[len(tensor.values)],
                contents=contents,
            )
        )
    return pb.ModelInferRequest(model_name=model, id=request.request_id, inputs=inputs)


def pb_outputs(response: pb.ModelInferResponse) -> dict[str, list[Value]]:
    """Output tensors of a ``ModelInferResponse`` by name, from ``contents`` or raw bytes."""
    raw = response.raw_output_contents
    if raw and len(raw) != len(response.outputs):
        raise TensorError(f"{len(raw)} raw_output_contents for {len(response.outputs)} outputs")
    found: dict[str, list[Value]] = {}
    for index, output in enumerate(response.outputs):
        if raw:
            found[output.name] = decode_raw(output.datatype, raw[index])
        else:
            found[output.name] = _contents(output.datatype, output.contents)
    return found


def _contents(datatype: str, contents: pb.InferTensorContents) -> list[Value]:
    if datatype == "BYTES":
        return [_utf8(item) for item in contents.bytes_contents]
    spec = _FIXED.get(datatype)
    if spec is None:
        raise TensorError(f"unsupported datatype {datatype!r}")
    return list(getattr(contents, spec[1]))


def decode_raw(datatype: str, data: bytes) -> list[Value]:
    """Elements of a raw tensor: little-endian, BYTES elements each after a uint32 length."""
    if datatype == "BYTES":
        values: list[Value] = []
        offset = 0
        while offset < len(data):
            if offset + 4 > len(data):
                raise TensorError("truncated BYTES tensor: a length prefix is cut")
            (length,) = struct.unpack_from("<I", data, offset)
            offset += 4
            if offset + length > len(data):
                raise TensorError("truncated BYTES tensor: an element is cut")
            values.append(_utf8(data[offset : offset + length]))
            offset += length
        return values
    spec = _FIXED.get(datatype)
    if spec is None:
        raise TensorError(f"unsupported datatype {datatype!r}")
    size = struct.calcsize(spec[0])
    if len(data) % size:
        raise TensorError(f"raw {datatype} tensor of {len(data)} bytes")
    return list(struct.unpack(f"<{len(data) // size}{spec[0]}", data))


def _utf8(item: bytes) -> str:
    try:
        return item.decode()
    except UnicodeDecodeError as exc:
        raise TensorError(f"a BYTES element is not UTF-8: {item[:50]!r}") from exc
