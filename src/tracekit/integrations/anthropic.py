"""Anthropic mapper: messages (create, stream, parse, count_tokens), also on beta.

Works for `Anthropic`, `AsyncAnthropic` and the Bedrock and Vertex clients,
which share the same resources. Only maps; the engine wraps.
"""

from __future__ import annotations

import dataclasses
import json
import weakref
from collections.abc import Mapping
from functools import partial
from typing import Any

from tracekit._span import Span, SpanType
from tracekit.integrations import _usage
from tracekit.integrations._common import Request, record_response
from tracekit.integrations._engine import Endpoint, Integration, StreamSeam
from tracekit.integrations._registry import spec
from tracekit.integrations._stainless import (
    client_of,
    stainless,
    stainless_head,
    stainless_request,
)
from tracekit.integrations._usage import field, fields

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


def _mapped(operation: str, span_type: str) -> dict[str, Any]:
    """The request mappers of an endpoint: its name and stream flag on the caller, the
    rest on the export worker."""
    return {
        "request": _request(operation, span_type),
        "head": stainless_head(operation, span_type),
    }


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

    @staticmethod
    def compact(event: Any) -> Any:
        """A text delta event as the tuple `(index, text)` (untracked by the garbage
        collector); any other event as it is. Runs on the caller for each event kept
        (`Accumulator.compact`)."""
        try:
            values = event.__dict__
            if values["type"] != "content_block_delta":
                return event
            delta = values["delta"].__dict__
            text = delta["text"] if delta["type"] == "text_delta" else None
            if type(text) is not str:
                return event
            return (values["index"], text)
        except (AttributeError, KeyError, TypeError):  # not the SDK's event model
            return event

    def add(self, event: Any) -> None:
        if type(event) is tuple:  # `compact`'s text delta
            index, text = event
            text_block = self._block(index)
            text_block["text"] = text_block.get("text", "") + text
            return
        # One look at each object (`fields`), not one per name: this runs per event.
        values = fields(event)
        kind = values.get("type")
        if kind == "content_block_delta":
            index = values.get("index")
            self._delta(self._block(index), index, fields(values.get("delta")))
        elif kind == "message_start":
            message = fields(values.get("message"))
            for key in ("id", "model", "role"):
                if message.get(key) is not None:
                    self.message[key] = message.get(key)
            self._usage(message.get("usage"))
        elif kind == "content_block_start":
            block: Any = values.get("content_block")
            dumped = block.model_dump() if hasattr(block, "model_dump") else dict(block or {})
            self._block(values.get("index")).update(dumped)
        elif kind == "content_block_stop":
            self._close_json(values.get("index"))
        elif kind == "message_delta":
            delta = fields(values.get("delta"))
            for key in ("stop_reason", "stop_sequence"):
                if delta.get(key) is not None:
                    self.message[key] = delta.get(key)
            self._usage(values.get("usage"))

    def _usage(self, usage: Any) -> None:
        # message_start has input and cache fields; message_delta the cumulative
        # output (and, in newer API versions, the input fields again).
        values = fields(usage)
        for key in (
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
        ):
            value = values.get(key)
            if value is not None:
                self.usage[key] = value

    def _block(self, index: Any) -> dict[str, Any]:
        content = self.message["content"]
        i = index if isinstance(index, int) else len(content)
        while len(content) <= i:
            content.append({})
        block: dict[str, Any] = content[i]
        return block

    def _delta(self, block: dict[str, Any], index: Any, delta: Mapping[str, Any]) -> None:
        kind = delta.get("type")
        if kind == "text_delta":
            block["text"] = block.get("text", "") + (delta.get("text") or "")
        elif kind == "thinking_delta":
            block["thinking"] = block.get("thinking", "") + (delta.get("thinking") or "")
        elif kind == "signature_delta":
            block["signature"] = delta.get("signature")
        elif kind == "input_json_delta":
            self.json.setdefault(index, []).append(delta.get("partial_json") or "")
        elif kind == "citations_delta":
            block.setdefault("citations", []).append(delta.get("citation"))

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


# Each client tracekit traced a call of -> a copy of it without the SDK's own spans
# (None: the client has them off already).
_copies: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
# id(resource) -> (a weak reference to it, the same resource of the copy or None). A
# plain dict: a WeakKeyDictionary lookup makes a weak reference per call.
_resources: dict[int, tuple[weakref.ref[Any], Any]] = {}


def _quiet_copy(client: Any) -> Any:
    if not client.open_telemetry["traces"]["enabled"]:
        return None
    # `with_options` shares the connection pool and every other setting; the SDK's
    # public switch `open_telemetry=False` turns off its spans and its `traceparent`.
    return client.with_options(open_telemetry=False)


def without_sdk_spans(wrapped: Any, instance: Any) -> Any:
    """The traced call made without the SDK's own OpenTelemetry span (anthropic 2.x:
    `anthropic.messages.create`, whose `traceparent` would replace tracekit's): the same
    method on the same resource of a client copy with `open_telemetry=False`. Unless
    `autolog(sdk_spans=True)` keeps them."""
    if integration.options.get("sdk_spans"):
        return wrapped
    entry = _resources.get(id(instance))
    if entry is None or entry[0]() is not instance:
        key = id(instance)
        entry = (weakref.ref(instance, lambda _: _resources.pop(key, None)), None)
        entry = _resources[key] = (entry[0], _quiet_resource(instance))
    resource = entry[1]
    return wrapped if resource is None else partial(wrapped.__func__, resource)


def _quiet_resource(instance: Any) -> Any:
    client = client_of(instance)
    if client is None or not hasattr(client, "open_telemetry"):
        return None  # an SDK version without its own tracing
    try:
        quiet = _copies[client]
    except KeyError:
        quiet = _copies[client] = _quiet_copy(client)
    # A Stainless resource holds nothing but its client.
    return None if quiet is None else type(instance)(quiet)


def _endpoints() -> list[Endpoint]:
    chat = _mapped("chat", SpanType.CHAT_MODEL)
    count = _mapped("count_tokens", SpanType.UNKNOWN)
    events = StreamSeam(is_stream=_is_stream, accumulator=EventAccumulator)
    endpoints = []
    for module in (_MESSAGES, _BETA):
        for cls, is_async in (("Messages", False), ("AsyncMessages", True)):
            endpoints += [
                Endpoint.call(
                    module,
                    f"{cls}.create",
                    is_async=is_async,
                    **chat,
                    response=_message,
                    stream=events,
                ),
                Endpoint.call(module, f"{cls}.parse", is_async=is_async, response=_message, **chat),
                Endpoint.call(
                    module,
                    f"{cls}.count_tokens",
                    is_async=is_async,
                    **count,
                    response=_count_tokens,
                ),
                Endpoint.helper_stream(module, f"{cls}.stream", **chat, helper=SnapshotAccumulator),
            ]
    # Every request these methods send carries the caller's trace context (`stainless`;
    # the SDK's own tracing, when kept, replaces it when it sends the request).
    return [dataclasses.replace(stainless(e), through=without_sdk_spans) for e in endpoints]


integration = Integration(spec("anthropic"), _endpoints())
