"""OpenAI mapper: chat completions, Responses, embeddings, legacy completions.

Only maps: what a request records, what a response and a stream's chunks
record. Wrapping, timing, errors and stream ends live in `_engine`.
Works for OpenAI, Azure OpenAI and OpenAI-compatible endpoints (Databricks,
MLflow AI Gateway, vLLM, OpenRouter), whose address is recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tracekit._span import Span, SpanType
from tracekit.integrations import _usage
from tracekit.integrations._common import Request, record_response
from tracekit.integrations._engine import Endpoint, Integration, Prepared, StreamSeam
from tracekit.integrations._registry import spec
from tracekit.integrations._stainless import (
    stainless,
    stainless_head,
    stainless_request,
)
from tracekit.integrations._usage import field, fields

_CHAT = "openai.resources.chat.completions.completions"
_RESPONSES = "openai.resources.responses.responses"
_EMBEDDINGS = "openai.resources.embeddings"
_COMPLETIONS = "openai.resources.completions"

# Request parameters recorded as gen_ai.request.* attributes.
_PARAMS = {
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "max_tokens": "gen_ai.request.max_tokens",
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "max_output_tokens": "gen_ai.request.max_tokens",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "seed": "gen_ai.request.seed",
    "n": "gen_ai.request.choice.count",
    "stop": "gen_ai.request.stop_sequences",
    "dimensions": "gen_ai.embeddings.dimension.count",
    "encoding_format": "gen_ai.request.encoding_formats",
}


def _provider(client: Any) -> str:
    return "azure.ai.openai" if "Azure" in type(client).__name__ else "openai"


def _request(operation: str, span_type: str) -> Any:
    return stainless_request(_provider, operation, span_type, _PARAMS)


def _mapped(operation: str, span_type: str) -> dict[str, Any]:
    """The request mappers of an endpoint: its name and stream flag on the caller, the
    rest on the export worker."""
    return {
        "request": _request(operation, span_type),
        "head": stainless_head(operation, span_type),
    }


def _chat_response(span: Span, response: Any) -> None:
    span.set_outputs(response)
    reasons = [field(c, "finish_reason") for c in field(response, "choices") or []]
    record_response(
        span, response, _usage.openai_chat(field(response, "usage")), [r for r in reasons if r]
    )


def _responses_response(span: Span, response: Any) -> None:
    span.set_outputs(response)
    status = field(response, "status")
    usage = _usage.openai_responses(field(response, "usage"))
    record_response(span, response, usage, [status] if status else [])


def _embeddings_response(span: Span, response: Any) -> None:
    # Vectors are large and rarely read from a trace: keep their shape only.
    data = field(response, "data") or []
    vectors = [field(item, "embedding") for item in data]
    span.set_outputs(
        {
            "model": field(response, "model"),
            "count": len(data),
            "dimensions": len(vectors[0]) if vectors and hasattr(vectors[0], "__len__") else None,
        }
    )
    record_response(span, response, _usage.openai_embeddings(field(response, "usage")), [])


class ChatAccumulator:
    """Assembles chat (and legacy completion) chunks into one response."""

    def __init__(self, request: Request) -> None:
        self.id: str | None = None
        self.model: str | None = None
        self.usage: Any = None
        self.choices: dict[int, dict[str, Any]] = {}

    @staticmethod
    def compact(chunk: Any) -> Any:
        """A chunk of the first choice with text, a finish reason or the `assistant`
        role and nothing else, as the tuple `(id, model, text, finish reason, role)`,
        which the garbage collector stops tracking; any other chunk as it is.
        Runs on the caller for each chunk kept (`Accumulator.compact`): a few lookups in
        the `__dict__`s of the chunk, its choice and its delta."""
        try:
            values = chunk.__dict__
            choices = values["choices"]
            if len(choices) != 1 or values["usage"] is not None:
                return chunk
            choice = choices[0]
            state = choice.__dict__
            reason = state["finish_reason"]
            if (
                state["index"]
                or choice.__pydantic_extra__
                or not (reason is None or type(reason) is str)
            ):
                return chunk
            delta = state["delta"]
            delta_values = delta.__dict__
            text = delta_values["content"]
            role = delta_values["role"]
            if (
                not (text is None or type(text) is str)
                or role not in (None, "assistant")
                or delta_values["tool_calls"]
                or delta_values["refusal"] is not None
                or delta.__pydantic_extra__  # a compatible server's reasoning, say
            ):
                return chunk
            return (values["id"], values["model"], text, reason, role)
        except (AttributeError, KeyError, TypeError):  # not the SDK's chunk model
            return chunk

    def add(self, chunk: Any) -> None:
        if type(chunk) is tuple:  # `compact`'s chunk
            chunk_id, model, text, reason, role = chunk
            self.id = chunk_id or self.id
            self.model = model or self.model
            state = self.choices.get(0)
            if state is None:
                state = self.choices[0] = {"index": 0, "parts": [], "tools": {}}
            if reason:
                state["finish_reason"] = reason
            if role:
                state["role"] = role
            if text:
                state["parts"].append(text)
            return
        # One look at each object (`fields`), not one per name: this runs per chunk.
        values = fields(chunk)
        self.id = values.get("id") or self.id
        self.model = values.get("model") or self.model
        usage = values.get("usage")
        if usage is not None:
            self.usage = usage  # the last report is cumulative
        for choice in values.get("choices") or []:
            choice = fields(choice)
            index = choice.get("index") or 0
            state = self.choices.get(index)
            if state is None:
                state = self.choices[index] = {"index": index, "parts": [], "tools": {}}
            reason = choice.get("finish_reason")
            if reason:
                state["finish_reason"] = reason
            text = choice.get("text")  # legacy completions
            if text:
                state["parts"].append(text)
            delta = choice.get("delta")
            if delta is None:
                continue
            self._delta(state, fields(delta))

    def _delta(self, state: dict[str, Any], delta: Mapping[str, Any]) -> None:
        role = delta.get("role")
        if role:
            state["role"] = role
        content = delta.get("content")
        if content:
            state["parts"].append(content)
        for key in ("reasoning", "reasoning_content", "refusal"):  # compatible servers
            value = delta.get(key)
            if isinstance(value, str) and value:
                state.setdefault(key, []).append(value)
        for call in delta.get("tool_calls") or []:
            slot = state["tools"].setdefault(
                field(call, "index") or 0, {"id": None, "type": "function", "name": "", "args": []}
            )
            slot["id"] = field(call, "id") or slot["id"]
            function = field(call, "function")
            if function is not None:
                slot["name"] += field(function, "name") or ""
                slot["args"].append(field(function, "arguments") or "")

    def finish(self, span: Span) -> None:
        choices = []
        for index in sorted(self.choices):
            state = self.choices[index]
            message: dict[str, Any] = {
                "role": state.get("role", "assistant"),
                "content": "".join(state["parts"]),
            }
            for key in ("reasoning", "reasoning_content", "refusal"):
                if key in state:
                    message[key] = "".join(state[key])
            if state["tools"]:
                message["tool_calls"] = [
                    {
                        "id": slot["id"],
                        "type": slot["type"],
                        "function": {"name": slot["name"], "arguments": "".join(slot["args"])},
                    }
                    for _, slot in sorted(state["tools"].items())
                ]
            choices.append(
                {"index": index, "message": message, "finish_reason": state.get("finish_reason")}
            )
        usage = _usage.openai_chat(self.usage)
        outputs: dict[str, Any] = {"id": self.id, "model": self.model, "choices": choices}
        if self.usage is not None:
            outputs["usage"] = self.usage
        span.set_outputs(outputs)
        reasons = [c["finish_reason"] for c in choices if c["finish_reason"]]
        record_response(span, {"id": self.id, "model": self.model}, usage, reasons)


class ResponsesAccumulator:
    """Keeps the final response of a Responses stream (`response.completed`)."""

    _FINAL = ("response.completed", "response.incomplete", "response.failed")

    def __init__(self, request: Request) -> None:
        self.response: Any = None
        self.text: list[str] = []

    def add(self, event: Any) -> None:
        kind = field(event, "type")
        if kind in self._FINAL or (kind == "response.created" and self.response is None):
            self.response = field(event, "response")
        elif kind == "response.output_text.delta":
            self.text.append(field(event, "delta") or "")

    def finish(self, span: Span) -> None:
        if self.response is not None and field(self.response, "usage") is not None:
            _responses_response(span, self.response)
            return
        # Ended before `response.completed`: what arrived so far.
        span.set_outputs({"output_text": "".join(self.text)})
        if self.response is not None:
            record_response(span, self.response, None, [])


def _ask_stream_usage(options: Mapping[str, Any], kwargs: dict[str, Any]) -> Prepared | None:
    """`autolog(stream_usage=True)`: ask a chat stream for usage, hide the extra chunk."""
    if not options.get("stream_usage") or kwargs.get("stream") is not True:
        return None
    stream_options = kwargs.get("stream_options")
    if isinstance(stream_options, Mapping) and "include_usage" in stream_options:
        return None  # the caller decided
    kwargs["stream_options"] = {**(stream_options or {}), "include_usage": True}
    return Prepared(kwargs, _usage_only)


def _usage_only(chunk: Any) -> bool:
    return not field(chunk, "choices") and field(chunk, "usage") is not None


_STREAMS: tuple[type, ...] = ()


def _is_stream(result: Any) -> bool:
    global _STREAMS
    if not _STREAMS:  # the SDK is imported by autolog(), never by tracekit's import
        import openai

        _STREAMS = (openai.Stream, openai.AsyncStream)
    return isinstance(result, _STREAMS)


def _endpoints() -> list[Endpoint]:
    chat = _mapped("chat", SpanType.CHAT_MODEL)
    text = _mapped("text_completion", SpanType.LLM)
    embeddings = _mapped("embeddings", SpanType.EMBEDDING)
    chat_stream = StreamSeam(is_stream=_is_stream, accumulator=ChatAccumulator)
    responses_stream = StreamSeam(is_stream=_is_stream, accumulator=ResponsesAccumulator)
    endpoints = []
    for cls, is_async in (("Completions", False), ("AsyncCompletions", True)):
        endpoints += [
            Endpoint.call(
                _CHAT,
                f"{cls}.create",
                is_async=is_async,
                **chat,
                response=_chat_response,
                stream=chat_stream,
                prepare=_ask_stream_usage,
            ),
            Endpoint.call(
                _CHAT, f"{cls}.parse", is_async=is_async, **chat, response=_chat_response
            ),
            Endpoint.stream_manager(_CHAT, f"{cls}.stream"),
            Endpoint.call(
                _COMPLETIONS,
                f"{cls}.create",
                is_async=is_async,
                **text,
                response=_chat_response,
                stream=chat_stream,
            ),
        ]
    for cls, is_async in (("Responses", False), ("AsyncResponses", True)):
        endpoints += [
            Endpoint.call(
                _RESPONSES,
                f"{cls}.create",
                is_async=is_async,
                **chat,
                response=_responses_response,
                stream=responses_stream,
            ),
            Endpoint.call(
                _RESPONSES,
                f"{cls}.parse",
                is_async=is_async,
                **chat,
                response=_responses_response,
            ),
            Endpoint.stream_manager(_RESPONSES, f"{cls}.stream"),
        ]
    for cls, is_async in (("Embeddings", False), ("AsyncEmbeddings", True)):
        endpoints.append(
            Endpoint.call(
                _EMBEDDINGS,
                f"{cls}.create",
                is_async=is_async,
                **embeddings,
                response=_embeddings_response,
            )
        )
    # Every request these methods send carries the caller's trace context (`stainless`).
    return [stainless(e) for e in endpoints]


integration = Integration(spec("openai"), _endpoints())
