"""The gRPC/KServe wire definitions and codecs, without sockets.

Field numbers are the protocol: these tests pin the ones our clients and front ends use to the
public definitions (the sources named in each .proto header), so an edit that renumbers a field
fails here rather than against a real server.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor

from servingperf.emulator.grpc_context import LengthAsk
from servingperf.emulator.kserve_v2_format import (
    BadRequest,
    GenerationAnswer,
    infer_response_pb,
    parse_generate_json,
    parse_infer_json,
    parse_infer_pb,
)
from servingperf.errors import ConfigError
from servingperf.model.records import ErrorKind, GenerationRequest
from servingperf.model.specs import ProtocolKind
from servingperf.model.target import Target
from servingperf.protocols import caikit, tgis
from servingperf.protocols._generated import caikit_data_model_nlp_pb2 as dm
from servingperf.protocols._generated import caikit_runtime_Nlp_pb2 as nlp
from servingperf.protocols._generated import generation_pb2 as gen
from servingperf.protocols._generated import grpc_predict_v2_pb2 as pb
from servingperf.protocols.grpc_common import (
    base_metadata,
    certificate_name,
    classify_rpc_error,
    parse_endpoint,
)
from servingperf.protocols.kserve_v2_tensors import (
    TensorError,
    decode_raw,
    generate_json,
    generation_from_json,
    generation_from_tensors,
    infer_json,
    infer_request_pb,
    json_outputs,
    pb_outputs,
)


def numbers(descriptor: Descriptor) -> dict[str, int]:
    return {field.name: field.number for field in descriptor.fields}


def request(**fields: Any) -> GenerationRequest:
    base: dict[str, Any] = {"request_id": "r1", "model": "m", "prompt": "Hi there", "max_tokens": 8}
    base.update(fields)
    return GenerationRequest(**base)


# --- field numbers, as published -------------------------------------------------------------


def test_caikit_field_numbers() -> None:
    for message in (nlp.TextGenerationTaskRequest, nlp.ServerStreamingTextGenerationTaskRequest):
        fields = numbers(message.DESCRIPTOR)
        assert fields["text"] == 1
        assert fields["max_new_tokens"] == 2
        assert fields["min_new_tokens"] == 3
        assert fields["preserve_input_text"] == 15
    assert numbers(dm.GeneratedTextResult.DESCRIPTOR) == {
        "generated_text": 1,
        "generated_tokens": 2,
        "finish_reason": 3,
        "input_token_count": 5,
        "seed": 6,
        "tokens": 7,
        "input_tokens": 8,
    }
    assert numbers(dm.GeneratedTextStreamResult.DESCRIPTOR) == {
        "generated_text": 1,
        "tokens": 2,
        "details": 3,
        "input_tokens": 5,
    }
    assert numbers(dm.TokenStreamDetails.DESCRIPTOR) == {
        "finish_reason": 1,
        "generated_tokens": 2,
        "seed": 3,
        "input_token_count": 4,
    }
    assert dm.FinishReason.Value("MAX_TOKENS") == 1
    assert dm.FinishReason.Value("EOS_TOKEN") == 2
    service = nlp.DESCRIPTOR.services_by_name["NlpService"]
    assert service.full_name == "caikit.runtime.Nlp.NlpService"
    assert service.methods_by_name["ServerStreamingTextGenerationTaskPredict"].output_type is (
        dm.GeneratedTextStreamResult.DESCRIPTOR
    )


def test_tgis_field_numbers() -> None:
    assert numbers(gen.GenerationResponse.DESCRIPTOR) == {
        "input_token_count": 6,
        "generated_token_count": 2,
        "text": 4,
        "stop_reason": 7,
        "stop_sequence": 11,
        "seed": 10,
    }
    assert numbers(gen.SingleGenerationRequest.DESCRIPTOR) == {
        "model_id": 1,
        "prefix_id": 2,
        "request": 3,
        "params": 10,
    }
    assert numbers(gen.GenerationRequest.DESCRIPTOR) == {"text": 2}
    assert numbers(gen.StoppingCriteria.DESCRIPTOR)["max_new_tokens"] == 1
    assert numbers(gen.StoppingCriteria.DESCRIPTOR)["min_new_tokens"] == 2
    assert numbers(gen.Parameters.DESCRIPTOR)["stopping"] == 3
    assert gen.StopReason.Value("MAX_TOKENS") == 1
    assert gen.DESCRIPTOR.services_by_name["GenerationService"].full_name == (
        "fmaas.GenerationService"
    )


def test_kserve_field_numbers() -> None:
    assert numbers(pb.ModelInferRequest.DESCRIPTOR) == {
        "model_name": 1,
        "model_version": 2,
        "id": 3,
        "parameters": 4,
        "inputs": 5,
        "outputs": 6,
        "raw_input_contents": 7,
    }
    assert numbers(pb.ModelInferResponse.DESCRIPTOR) == {
        "model_name": 1,
        "model_version": 2,
        "id": 3,
        "parameters": 4,
        "outputs": 5,
        "raw_output_contents": 6,
    }
    assert numbers(pb.InferTensorContents.DESCRIPTOR)["bytes_contents"] == 8
    assert numbers(pb.InferTensorContents.DESCRIPTOR)["uint_contents"] == 4
    assert numbers(pb.InferParameter.DESCRIPTOR) == {
        "bool_param": 1,
        "int64_param": 2,
        "string_param": 3,
    }
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert service.full_name == "inference.GRPCInferenceService"
    assert {"ServerLive", "ServerReady", "ModelReady", "ModelMetadata", "ModelInfer"} <= set(
        service.methods_by_name
    )


def test_wire_bytes_of_a_caikit_request() -> None:
    # field 1 "text" (length-delimited), field 2 varint 3, field 3 varint 3
    message = nlp.TextGenerationTaskRequest(text="ab", max_new_tokens=3, min_new_tokens=3)
    assert message.SerializeToString() == b"\x0a\x02ab\x10\x03\x18\x03"


# --- request building --------------------------------------------------------------------------


def test_caikit_and_tgis_force_the_length_when_eos_is_ignored() -> None:
    assert caikit.length_limits(request(ignore_eos=True)) == (8, 8)
    assert caikit.length_limits(request(min_tokens=2)) == (8, 2)
    assert caikit.length_limits(request(max_tokens=None)) == (None, None)
    params = tgis.parameters(request(ignore_eos=True))
    assert (params.stopping.max_new_tokens, params.stopping.min_new_tokens) == (8, 8)
    unset = tgis.parameters(request(max_tokens=None))
    assert (unset.stopping.max_new_tokens, unset.stopping.min_new_tokens) == (0, 0)


def test_system_prompt_is_prepended() -> None:
    req = request(system_prompt="Be brief.")
    assert caikit.prompt_text(req) == "Be brief.\n\nHi there"
    assert tgis.prompt_text(req) == "Be brief.\n\nHi there"


def test_health_status_decoding() -> None:
    assert caikit.health_status(b"\x08\x01") == 1
    assert caikit.health_status(b"\x08\x02") == 2
    assert caikit.health_status(b"") == 0


# --- KServe tensors: client side, checked against the emulator's reader ------------------------


def test_infer_json_round_trips_through_the_emulator_parser() -> None:
    body = json.dumps(infer_json(request(min_tokens=2, ignore_eos=True))).encode()
    ask, body_id = parse_infer_json(body)
    assert body_id == "r1"
    assert ask.text == "Hi there"
    assert ask.length == LengthAsk(max_tokens=8, min_tokens=2, ignore_eos=True)
    assert ask.want_output_tokens
    assert ask.want_input_tokens
    assert ask.want_finish_reason
    assert not ask.stream


def test_generate_json_round_trips_and_marks_streams() -> None:
    body = generate_json(request(), stream=True)
    assert body["stream"] is True
    ask = parse_generate_json(json.dumps(body).encode(), stream=True)
    assert ask.length == LengthAsk(max_tokens=8)
    assert ask.want_output_tokens


def test_infer_pb_round_trip_through_the_emulator() -> None:
    message = infer_request_pb(request(), "m")
    assert message.model_name == "m"
    assert message.id == "r1"
    ask = parse_infer_pb(pb.ModelInferRequest.FromString(message.SerializeToString()))
    assert ask.text == "Hi there"
    assert ask.length.max_tokens == 8
    answer = GenerationAnswer(
        text=" the model", output_tokens=2, input_tokens=3, finish_reason="length"
    )
    response = infer_response_pb("m", "r1", ask, answer)
    result = generation_from_tensors(pb_outputs(response))
    assert result.text == " the model"
    assert (result.output_tokens, result.input_tokens, result.finish_reason) == (2, 3, "length")


def test_pb_outputs_read_contents_as_well_as_raw() -> None:
    response = pb.ModelInferResponse(model_name="m")
    out = response.outputs.add(name="text_output", datatype="BYTES", shape=[1])
    out.contents.bytes_contents.append("héllo".encode())
    count = response.outputs.add(name="num_output_tokens", datatype="UINT32", shape=[1])
    count.contents.uint_contents.append(5)
    assert pb_outputs(response) == {"text_output": ["héllo"], "num_output_tokens": [5]}


def test_raw_decoding() -> None:
    assert decode_raw("BYTES", struct.pack("<I", 2) + b"ab" + struct.pack("<I", 0)) == ["ab", ""]
    assert decode_raw("UINT32", struct.pack("<II", 7, 9)) == [7, 9]
    assert decode_raw("INT64", struct.pack("<q", -3)) == [-3]
    assert decode_raw("BOOL", b"\x01\x00") == [True, False]
    with pytest.raises(TensorError, match="truncated"):
        decode_raw("BYTES", struct.pack("<I", 5) + b"ab")
    with pytest.raises(TensorError):
        decode_raw("UINT32", b"\x01\x02\x03")
    with pytest.raises(TensorError, match="datatype"):
        decode_raw("FP16", b"\x00\x00")


def test_json_outputs_and_bad_counts() -> None:
    body = {
        "outputs": [
            {"name": "text_output", "datatype": "BYTES", "shape": [1], "data": ["x"]},
            {"name": "num_output_tokens", "datatype": "UINT32", "shape": [1], "data": [[4]]},
        ]
    }
    assert generation_from_tensors(json_outputs(body)).output_tokens == 4
    with pytest.raises(TensorError):
        json_outputs({"outputs": "nope"})
    with pytest.raises(TensorError, match="count"):
        generation_from_tensors({"num_output_tokens": [-1]})
    with pytest.raises(TensorError, match="text"):
        generation_from_tensors({"text_output": [3]})


def test_generate_json_reader_takes_the_finish_reason_from_details() -> None:
    result = generation_from_json({"text_output": "a", "details": {"finish_reason": "eos_token"}})
    assert result.finish_reason == "eos_token"
    assert result.output_tokens is None


def test_emulator_refuses_malformed_v2_requests() -> None:
    with pytest.raises(BadRequest, match="text_input"):
        parse_infer_json(b'{"inputs": []}')
    with pytest.raises(BadRequest, match="stream"):
        parse_infer_json(
            b'{"inputs": [{"name": "text_input", "datatype": "BYTES", "shape": [1],'
            b' "data": ["x"]}, {"name": "stream", "datatype": "BOOL", "shape": [1],'
            b' "data": [true]}]}'
        )
    with pytest.raises(BadRequest, match="max_tokens"):
        parse_generate_json(
            b'{"text_input": "x", "parameters": {"max_tokens": "many"}}', stream=False
        )


# --- gRPC plumbing -----------------------------------------------------------------------------


def target(url: str, **fields: Any) -> Target:
    return Target(url=url, model="m", protocol=ProtocolKind.TGIS_GRPC, **fields)


def test_endpoint_parsing() -> None:
    assert parse_endpoint(target("127.0.0.1:8033")).tls is False
    assert parse_endpoint(target("grpc://host:1")).address == "host:1"
    assert parse_endpoint(target("grpcs://host:443")).tls is True
    assert parse_endpoint(target("host:443", ca_file="/ca.pem")).tls is True
    assert parse_endpoint(target("[::1]:9000")).address == "[::1]:9000"
    with pytest.raises(ConfigError, match="host:port"):
        parse_endpoint(target("justahost"))
    with pytest.raises(ConfigError):
        parse_endpoint(target("ftp://host:1"))


def test_metadata_carries_token_and_lower_cased_headers() -> None:
    metadata = base_metadata(target("h:1", token="s3cret", extra_headers=(("X-Tenant", "a"),)))
    assert metadata == (("authorization", "Bearer s3cret"), ("x-tenant", "a"))


def test_certificate_name_prefers_the_dialled_host() -> None:
    cert = {
        "subject": ((("commonName", "server"),),),
        "subjectAltName": (("DNS", "emulator.test"), ("IP Address", "10.0.0.1")),
    }
    assert certificate_name(cert, "emulator.test") == "emulator.test"
    assert certificate_name(cert, "127.0.0.1") == "emulator.test"
    assert certificate_name({}, "127.0.0.1") == "127.0.0.1"


class _Error(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


@pytest.mark.parametrize(
    ("code", "details", "received", "kind"),
    [
        (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", False, ErrorKind.TIMEOUT),
        (
            grpc.StatusCode.UNAVAILABLE,
            "failed to connect to all addresses",
            False,
            ErrorKind.CONNECT,
        ),
        (grpc.StatusCode.UNAVAILABLE, "the model is loading", False, ErrorKind.GRPC_STATUS),
        (grpc.StatusCode.UNAVAILABLE, "Socket closed", True, ErrorKind.PROTOCOL),
        (grpc.StatusCode.INTERNAL, "Exception deserializing response!", False, ErrorKind.PROTOCOL),
        (grpc.StatusCode.NOT_FOUND, "no such model", False, ErrorKind.GRPC_STATUS),
    ],
)
def test_status_translation(
    code: grpc.StatusCode, details: str, received: bool, kind: ErrorKind
) -> None:
    got_kind, message = classify_rpc_error(_Error(code, details), received=received)
    assert got_kind is kind
    assert code.name in message
