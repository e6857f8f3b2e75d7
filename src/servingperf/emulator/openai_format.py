"""The OpenAI wire format as vLLM serves it: request bodies in, response bodies out (pure, no I/O).

A *generation call* is a parsed ``/v1/completions`` or ``/v1/chat/completions`` body reduced to
what the emulator uses: model, prompt size in toy tokens, streaming options and output-length
intent. Fields the emulator does not model (``temperature``, ``top_p``, ``stop``...) are accepted
and ignored, as vLLM accepts fields it does not use; fields it reads are type-checked, and a bad
one is an :class:`InvalidRequest` (HTTP 400) whose message names the field.

Streaming responses are Server-Sent Events: ``data: <json>\\n\\n`` per chunk, one generated token
per chunk, then ``data: [DONE]\\n\\n``. A chat stream opens with vLLM's role chunk (``delta``
``{"role": "assistant", "content": ""}``: no token), the last token chunk carries the finish
reason, ``stream_options.include_usage`` adds a chunk with empty ``choices`` and the ``usage``, and
``stream_options.continuous_usage_stats`` (with ``include_usage``, as in vLLM) puts running usage
in every chunk, and ``return_token_ids`` puts each chunk's token ids in its choice (``token_ids``,
as vLLM does). Chunk bytes are assembled from pre-encoded pieces: this is the hot path.
The shapes of injected faults (:mod:`servingperf.emulator.faults`) use :meth:`StreamEncoder.chunk`:
a chunk of several tokens, text held back (``""``), reasoning deltas (vLLM's ``delta.reasoning``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from servingperf.emulator.tokenizer import (
    TOKEN_JSON,
    generated_text,
    token_id,
    tokens_of,
    tokens_text,
)

DONE = b"data: [DONE]\n\n"

_ERROR_TYPES = {
    400: "BadRequestError",
    404: "NotFoundError",
    429: "RateLimitError",
    500: "InternalServerError",
    503: "ServiceUnavailableError",
}


class InvalidRequest(ValueError):
    """A request body the emulator answers with HTTP 400; never escapes the HTTP layer."""


@dataclass(frozen=True, slots=True)
class GenerationCall:
    """A validated generation request (terms in the module docstring)."""

    chat: bool
    model: str | None
    prompt_tokens: int
    stream: bool
    include_usage: bool
    continuous_usage: bool
    max_tokens: int | None
    min_tokens: int | None
    ignore_eos: bool
    return_token_ids: bool = False
    prompt_units: tuple[str, ...] = ()  # the prompt's toy tokens (what the prefix cache hashes)


def _decode(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return data


def _optional_int(data: dict[str, Any], key: str, minimum: int) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"'{key}' must be an integer, got {value!r}")
    if value < minimum:
        raise InvalidRequest(f"'{key}' must be >= {minimum}, got {value}")
    return value


def _bool(data: dict[str, Any], key: str) -> bool:
    value = data.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidRequest(f"'{key}' must be true or false, got {value!r}")
    return value


def _common(data: dict[str, Any], *, chat: bool, prompt_units: tuple[str, ...]) -> GenerationCall:
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise InvalidRequest(f"'model' must be a string, got {model!r}")
    n = data.get("n")
    if n is not None and n != 1:
        raise InvalidRequest(f"'n' must be 1 (the emulator generates one choice), got {n!r}")
    stream = _bool(data, "stream")
    options = data.get("stream_options")
    include_usage = continuous = False
    if options is not None:
        if not stream:
            raise InvalidRequest("'stream_options' can only be given when 'stream' is true")
        if not isinstance(options, dict):
            raise InvalidRequest("'stream_options' must be an object")
        include_usage = _bool(options, "include_usage")
        continuous = include_usage and _bool(options, "continuous_usage_stats")
    max_tokens = _optional_int(data, "max_tokens", 1)
    if chat:
        max_completion = _optional_int(data, "max_completion_tokens", 1)
        if max_completion is not None:
            max_tokens = max_completion  # vLLM prefers it when both are given
    min_tokens = _optional_int(data, "min_tokens", 0)
    if min_tokens is not None and max_tokens is not None and min_tokens > max_tokens:
        raise InvalidRequest(
            f"'min_tokens' ({min_tokens}) must be less than or equal to 'max_tokens' ({max_tokens})"
        )
    return GenerationCall(
        chat=chat,
        model=model,
        prompt_tokens=len(prompt_units),
        stream=stream,
        include_usage=include_usage,
        continuous_usage=continuous,
        max_tokens=max_tokens,
        min_tokens=min_tokens,
        ignore_eos=_bool(data, "ignore_eos"),
        return_token_ids=_bool(data, "return_token_ids"),
        prompt_units=prompt_units,
    )


def _prompt_units(prompt: Any) -> tuple[str, ...]:
    """The toy tokens of a completions ``prompt``: a string, or token ids (each id a token), or
    one of either in a list (several prompts in one request are refused: one request, one
    sequence)."""
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
        prompt = prompt[0]
    if isinstance(prompt, str):
        return tuple(tokens_of(prompt))
    if (
        isinstance(prompt, list)
        and prompt
        and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt)
    ):
        return tuple(f"#{t}" for t in prompt)
    if isinstance(prompt, list) and len(prompt) > 1 and all(isinstance(p, str) for p in prompt):
        raise InvalidRequest("'prompt' with several prompts is not supported: send one per request")
    raise InvalidRequest("'prompt' must be a string or a non-empty list of token ids")


def parse_completion(body: bytes) -> GenerationCall:
    """Validate a ``/v1/completions`` body."""
    data = _decode(body)
    if "prompt" not in data:
        raise InvalidRequest("'prompt' is required")
    return _common(data, chat=False, prompt_units=_prompt_units(data["prompt"]))


def _message_text(index: int, content: Any) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        texts: list[str] = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text"):
                raise InvalidRequest(
                    f"'messages[{index}].content': only text parts are supported by the emulator"
                )
            text = part.get("text")
            if not isinstance(text, str):
                raise InvalidRequest(f"'messages[{index}].content': a text part needs 'text'")
            texts.append(text)
        return "\n".join(texts)
    raise InvalidRequest(f"'messages[{index}].content' must be a string or a list of parts")


def chat_prompt_tokens(messages: Iterable[tuple[str, str]]) -> int:
    """Toy-token count of a chat prompt rendered with a toy template: ``<|role|>\\ncontent\\n``
    per message, then ``<|assistant|>\\n`` (each role marker counts 5 tokens)."""
    return len(chat_prompt_units(messages))


def chat_prompt_units(messages: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """The toy tokens of a chat prompt rendered with the toy template (see above). Toy tokens
    never span whitespace, so a conversation's next prompt starts with exactly the tokens of its
    last prompt and answer: a prefix cache hits them."""
    rendered = "".join(f"<|{role}|>\n{content}\n" for role, content in messages)
    return tuple(tokens_of(rendered + "<|assistant|>\n"))


def parse_chat(body: bytes) -> GenerationCall:
    """Validate a ``/v1/chat/completions`` body."""
    data = _decode(body)
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty list")
    pairs: list[tuple[str, str]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(f"'messages[{i}]' must be an object")
        role = message.get("role")
        if not isinstance(role, str) or not role:
            raise InvalidRequest(f"'messages[{i}].role' must be a non-empty string")
        pairs.append((role, _message_text(i, message.get("content"))))
    return _common(data, chat=True, prompt_units=chat_prompt_units(pairs))


def _usage(prompt_tokens: int, completion_tokens: int) -> str:
    return (
        f'{{"prompt_tokens":{prompt_tokens},"total_tokens":{prompt_tokens + completion_tokens},'
        f'"completion_tokens":{completion_tokens}}}'
    )


class StreamEncoder:
    """Builds the SSE chunks of one streaming response."""

    __slots__ = ("_chat", "_continuous", "_head", "_ids", "_include_usage", "_prompt_tokens")

    def __init__(
        self,
        *,
        chat: bool,
        response_id: str,
        created: int,
        model: str,
        prompt_tokens: int,
        include_usage: bool,
        continuous_usage: bool,
        token_ids: bool = False,
    ) -> None:
        kind = "chat.completion.chunk" if chat else "text_completion"
        self._head = (
            f'data: {{"id":{json.dumps(response_id)},"object":"{kind}","created":{created},'
            f'"model":{json.dumps(model)},"choices":['
        )
        self._chat = chat
        self._prompt_tokens = prompt_tokens
        self._include_usage = include_usage
        self._continuous = continuous_usage
        self._ids = token_ids

    def role(self) -> bytes:
        """The chat stream's opening chunk: the assistant role and no token."""
        usage = f',"usage":{_usage(self._prompt_tokens, 0)}' if self._continuous else ""
        return (
            self._head
            + '{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,'
            + f'"finish_reason":null}}]{usage}}}\n\n'
        ).encode()

    def token(self, index: int, finish_reason: str | None) -> bytes:
        """The chunk carrying generated token ``index``; the last one gets ``finish_reason``."""
        if self._ids:
            return self.chunk(index, index + 1, finish_reason)
        text = TOKEN_JSON[index % len(TOKEN_JSON)]
        finish = "null" if finish_reason is None else f'"{finish_reason}"'
        if self._continuous:
            usage = f',"usage":{_usage(self._prompt_tokens, index + 1)}'
        else:
            usage = "" if self._chat else ',"usage":null'
        if self._chat:
            stop = "" if finish_reason is None else ',"stop_reason":null'
            choice = (
                f'{{"index":0,"delta":{{"content":{text}}},"logprobs":null,'
                f'"finish_reason":{finish}{stop}}}'
            )
        else:
            choice = (
                f'{{"index":0,"text":{text},"logprobs":null,"finish_reason":{finish},'
                f'"stop_reason":null}}'
            )
        return f"{self._head}{choice}]{usage}}}\n\n".encode()

    def chunk(
        self,
        start: int,
        end: int,
        finish_reason: str | None,
        *,
        text_from: int | None = None,
        reasoning: bool = False,
    ) -> bytes:
        """The chunk of generated tokens ``start`` to ``end - 1`` (their ids, the running usage
        ``end``) carrying the text of tokens ``text_from`` (default ``start``) to ``end - 1``:
        ``text_from = end`` holds the text back (``""``), ``text_from < start`` brings the text of
        tokens held before; as reasoning (chat) when ``reasoning``."""
        words = json.dumps(tokens_text(start if text_from is None else text_from, end))
        finish = "null" if finish_reason is None else f'"{finish_reason}"'
        ids = ""
        if self._ids:
            ids = ',"token_ids":[' + ",".join(str(token_id(i)) for i in range(start, end)) + "]"
        if self._continuous:
            usage = f',"usage":{_usage(self._prompt_tokens, end)}'
        else:
            usage = "" if self._chat else ',"usage":null'
        if self._chat:
            field = "reasoning" if reasoning else "content"
            stop = "" if finish_reason is None else ',"stop_reason":null'
            choice = (
                f'{{"index":0,"delta":{{"{field}":{words}}},"logprobs":null,'
                f'"finish_reason":{finish}{stop}{ids}}}'
            )
        else:
            choice = (
                f'{{"index":0,"text":{words},"logprobs":null,"finish_reason":{finish},'
                f'"stop_reason":null{ids}}}'
            )
        return f"{self._head}{choice}]{usage}}}\n\n".encode()

    def tail(self, completion_tokens: int) -> bytes:
        """The usage chunk (when asked for) and ``[DONE]``."""
        if not self._include_usage:
            return DONE
        usage = _usage(self._prompt_tokens, completion_tokens)
        return f'{self._head}],"usage":{usage}}}\n\n'.encode() + DONE

    @staticmethod
    def error(status: int, message: str) -> bytes:
        """An error event for a stream that cannot finish (vLLM's way), then ``[DONE]``."""
        return b"data: " + error_body(status, message) + b"\n\n" + DONE


def full_response(
    *,
    chat: bool,
    response_id: str,
    created: int,
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    finish_reason: str,
    usage_completion_tokens: int | None = None,
    reasoning_tokens: int = 0,
    token_ids: bool = False,
) -> bytes:
    """The body of a non-streaming response: ``completion_tokens`` generated, of which the first
    ``reasoning_tokens`` are reasoning (chat); the usage says ``usage_completion_tokens``
    (default: the tokens generated)."""
    text = generated_text(completion_tokens)
    if usage_completion_tokens is None:
        usage_completion_tokens = completion_tokens
    if chat:
        message: dict[str, Any] = {"role": "assistant", "content": text, "tool_calls": []}
        if reasoning_tokens:
            reasoning = min(reasoning_tokens, completion_tokens)
            message["reasoning"] = tokens_text(0, reasoning)
            message["content"] = tokens_text(reasoning, completion_tokens)
        choice: dict[str, Any] = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": finish_reason,
            "stop_reason": None,
        }
    else:
        choice = {
            "index": 0,
            "text": text,
            "logprobs": None,
            "finish_reason": finish_reason,
            "stop_reason": None,
            "prompt_logprobs": None,
        }
    if token_ids:
        choice["token_ids"] = [token_id(i) for i in range(completion_tokens)]
    body = {
        "id": response_id,
        "object": "chat.completion" if chat else "text_completion",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "total_tokens": prompt_tokens + usage_completion_tokens,
            "completion_tokens": usage_completion_tokens,
        },
    }
    return json.dumps(body, separators=(",", ":")).encode()


def error_body(status: int, message: str) -> bytes:
    """An OpenAI-shaped error object."""
    body = {
        "error": {
            "message": message,
            "type": _ERROR_TYPES.get(status, "Error"),
            "param": None,
            "code": status,
        }
    }
    return json.dumps(body, separators=(",", ":")).encode()


def models_body(model_ids: Iterable[str], created: int) -> bytes:
    """The ``/v1/models`` listing."""
    data = [
        {
            "id": m,
            "object": "model",
            "created": created,
            "owned_by": "servingperf-emulator",
            "root": m,
            "parent": None,
        }
        for m in model_ids
    ]
    return json.dumps({"object": "list", "data": data}, separators=(",", ":")).encode()
