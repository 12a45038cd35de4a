"""Anthropic mapper: messages (create, stream, parse, count_tokens), also on beta.

Works for `Anthropic`, `AsyncAnthropic` and the Bedrock and Vertex clients,
which share the same resources. Only maps; the engine wraps.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from tracekit._span import Span, SpanType
from tracekit.integrations import _usage
from tracekit.integrations._common import (
    Request,
    record_response,
    stainless_inject,
    stainless_request,
)
from tracekit.integrations._engine import Endpoint, Integration
from tracekit.integrations._registry import spec
from tracekit.integrations._usage import field

_MESSAGES = "anthropic.resources.messages.messages"
_BETA = "anthropic.resources.beta.messages.messages"

_PARAMS = {
    "max_tokens": "gen_ai.request.max_tokens",
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "stop_sequences": "gen_ai.request.stop_sequences",
}


def _provider(client: Any) -> str:
    name = type(client).__name__
    if "Bedrock" in name:
        return "aws.bedrock"
    if "Vertex" in name:
        return "gcp.vertex_ai"
    return "anthropic"


def _request(operation: str, span_type: str) -> Any:
    return stainless_request(_provider, operation, span_type, _PARAMS)


def _message(span: Span, message: Any) -> None:
    """A whole Message (non-streamed, or a helper stream's final snapshot)."""
    span.set_outputs(message)
    reason = field(message, "stop_reason")
    usage = _usage.anthropic(field(message, "usage"))
    record_response(span, message, usage, [reason] if reason else [])


def _count_tokens(span: Span, result: Any) -> None:
    # Counting tokens consumes none: recorded as outputs, not as token usage.
    span.set_outputs({"input_tokens": field(result, "input_tokens")})


class EventAccumulator:
    """Assembles a raw event stream (`create(stream=True)`) into one message."""

    def __init__(self, request: Request) -> None:
        self.message: dict[str, Any] = {"role": "assistant", "content": []}
        self.usage: dict[str, Any] = {}
        self.json: dict[int, list[str]] = {}

    def add(self, event: Any) -> None:
        kind = field(event, "type")
        if kind == "message_start":
            message = field(event, "message")
            for key in ("id", "model", "role"):
                if field(message, key) is not None:
                    self.message[key] = field(message, key)
            self._usage(field(message, "usage"))
        elif kind == "content_block_start":
            block = field(event, "content_block")
            dumped = block.model_dump() if hasattr(block, "model_dump") else dict(block or {})
            self._block(field(event, "index")).update(dumped)
        elif kind == "content_block_delta":
            self._delta(
                self._block(field(event, "index")), field(event, "index"), field(event, "delta")
            )
        elif kind == "content_block_stop":
            self._close_json(field(event, "index"))
        elif kind == "message_delta":
            delta = field(event, "delta")
            for key in ("stop_reason", "stop_sequence"):
                if field(delta, key) is not None:
                    self.message[key] = field(delta, key)
            self._usage(field(event, "usage"))

    def _usage(self, usage: Any) -> None:
        # message_start has input and cache fields; message_delta the cumulative
        # output (and, in newer API versions, the input fields again).
        for key in (
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
        ):
            value = field(usage, key)
            if value is not None:
                self.usage[key] = value

    def _block(self, index: Any) -> dict[str, Any]:
        content = self.message["content"]
        i = index if isinstance(index, int) else len(content)
        while len(content) <= i:
            content.append({})
        block: dict[str, Any] = content[i]
        return block

    def _delta(self, block: dict[str, Any], index: Any, delta: Any) -> None:
        kind = field(delta, "type")
        if kind == "text_delta":
            block["text"] = block.get("text", "") + (field(delta, "text") or "")
        elif kind == "thinking_delta":
            block["thinking"] = block.get("thinking", "") + (field(delta, "thinking") or "")
        elif kind == "signature_delta":
            block["signature"] = field(delta, "signature")
        elif kind == "input_json_delta":
            self.json.setdefault(index, []).append(field(delta, "partial_json") or "")
        elif kind == "citations_delta":
            block.setdefault("citations", []).append(field(delta, "citation"))

    def _close_json(self, index: Any) -> None:
        parts = self.json.pop(index, None)
        if parts is None:
            return
        text = "".join(parts)
        try:
            self._block(index)["input"] = json.loads(text) if text else {}
        except ValueError:
            self._block(index)["input"] = text  # cut off mid-stream: keep what arrived

    def finish(self, span: Span) -> None:
        for index in list(self.json):
            self._close_json(index)
        if self.usage:
            self.message["usage"] = self.usage
        _message(span, self.message)


class SnapshotAccumulator:
    """For `messages.stream()`: the SDK assembles the message; read it at the end."""

    immediate = True  # the snapshot is live SDK state: read it when the stream ends

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def add(self, event: Any) -> None:
        pass

    def finish(self, span: Span) -> None:
        try:
            snapshot = self.stream.current_message_snapshot
        except AssertionError:  # the SDK asserts when no event arrived yet
            return
        # The SDK keeps updating its snapshot if the app reads on: keep this moment's.
        _message(span, snapshot.model_copy(deep=True))


def _is_stream(result: Any) -> bool:
    import anthropic

    return isinstance(result, (anthropic.Stream, anthropic.AsyncStream))


def _endpoints() -> list[Endpoint]:
    chat = _request("chat", SpanType.CHAT_MODEL)
    count = _request("count_tokens", SpanType.UNKNOWN)
    endpoints = []
    for module in (_MESSAGES, _BETA):
        for cls, is_async in (("Messages", False), ("AsyncMessages", True)):
            endpoints += [
                Endpoint(
                    module, f"{cls}.create", is_async, chat, _message, EventAccumulator, _is_stream
                ),
                Endpoint(module, f"{cls}.parse", is_async, chat, _message),
                Endpoint(module, f"{cls}.count_tokens", is_async, count, _count_tokens),
                Endpoint(module, f"{cls}.stream", request=chat, helper=SnapshotAccumulator),
            ]
    # Every request these methods send carries the caller's trace context.
    return [dataclasses.replace(e, inject=stainless_inject) for e in endpoints]


integration = Integration(spec("anthropic"), _endpoints())
