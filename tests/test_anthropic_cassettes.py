"""Recorded Anthropic traffic replayed through the real SDK: exact span content.

Every cassette in tests/cassettes/anthropic/ is served over loopback by
`tests.replay` to a real `anthropic.Anthropic` and `AsyncAnthropic` client with
`tracekit.anthropic.autolog()` on. The recorded request JSON is sent again,
through `messages.create` as recorded (plain or `stream=True`) and, for the
stream cassettes, through the `messages.stream()` helper too (the same request
without its `stream` key). Each test asserts what the span must hold: name,
type, status, the normalized token usage (DESIGN.md: Anthropic input includes
cache reads and cache writes, both cache fields kept, nothing invented), the
`gen_ai.*` attributes, the outputs (text, thinking with its signature, tool_use
blocks with their input assembled from `input_json` deltas), and for the 404
the SDK's own exception reaching the caller and an `exception` event.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import pytest

anthropic = pytest.importorskip("anthropic")

from anthropic.lib.streaming import AsyncMessageStream, MessageStream  # noqa: E402
from anthropic.lib.streaming._beta_messages import (  # noqa: E402
    BetaAsyncMessageStream,
    BetaMessageStream,
)
from tests.contract.adapters import AnthropicMessages  # noqa: E402
from tests.replay import (  # noqa: E402
    Cassette,
    ReplayServer,
    cassette_names,
    load_or_skip,
    replay_server,
)

from tracekit.testing import Capture  # noqa: E402

PROVIDER = "anthropic"  # the `traced` fixture autologs it (tests/conftest.py)

# Every file in tests/cassettes/anthropic/ (a new one must get a test).
COVERED = {
    "beta_messages_stream_gzip_sse.yaml",
    "messages_404_model_not_found_parsed_body.yaml",
    "messages_extended_thinking_stream.yaml",
    "messages_nonstream_basic_gzip.yaml",
    "messages_prompt_caching_nonstream_write_then_read_gzip.yaml",
    "messages_prompt_caching_stream_write_then_read.yaml",
    "messages_stream_basic.yaml",
    "messages_stream_legacy_usage_2024.yaml",
    "messages_tool_use_nonstream_gzip.yaml",
    "messages_tool_use_stream_parallel.yaml",
}

# Recorded models the SDK now calls deprecated: not what these tests are about.
pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")

MODES = ["sync", "async"]
# create: `messages.create(**recorded)`; helper: `messages.stream(**recorded minus stream)`.
STREAM_WAYS = [
    ("sync", "create"),
    ("async", "create"),
    ("sync", "helper"),
    ("async", "helper"),
]


# -- calling the SDK -------------------------------------------------------------------

MESSAGES = AnthropicMessages(helper=False)  # its clients (tests/contract/adapters.py)


@dataclass
class Call:
    """What the caller got back from one replayed interaction."""

    result: Any  # the Message (plain create, or the helper's final message) or the Stream
    events: list[Any] | None  # what iterating the stream yielded (None: not a stream)
    request_id: str | None


def _resource(client: Any, beta: bool) -> Any:
    return client.beta.messages if beta else client.messages


def without_stream(request: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in request.items() if k != "stream"}


def replay(
    cassette: Cassette, *, mode: str = "sync", how: str = "create", beta: bool = False
) -> tuple[ReplayServer, list[Call]]:
    """Send every recorded request of `cassette`, in order, with a fresh client."""
    requests = [cassette.request_json(i) for i in range(len(cassette))]
    calls: list[Call] = []
    with replay_server(cassette) as server:
        if mode == "sync":
            with MESSAGES.sync_client(server, "test") as client:
                for request in requests:
                    calls.append(_sync_call(_resource(client, beta), request, how, beta))
        else:

            async def main() -> None:
                async with MESSAGES.async_client(server, "test") as client:
                    for request in requests:
                        calls.append(await _async_call(_resource(client, beta), request, how, beta))

            asyncio.run(main())
        assert server.unmatched == []
        assert server.all_played()
        # Tracing never changes what is sent.
        for received, request in zip(server.requests, requests, strict=True):
            assert received.json == request
    return server, calls


def _sync_call(messages: Any, request: dict[str, Any], how: str, beta: bool) -> Call:
    if how == "helper":
        with messages.stream(**without_stream(request)) as stream:
            assert isinstance(stream, BetaMessageStream if beta else MessageStream)
            events = list(stream)
            final = stream.get_final_message()
            return Call(final, events, stream.request_id)
    result = messages.create(**request)
    if isinstance(result, anthropic.Stream):
        return Call(result, list(result), result.response.headers.get("request-id"))
    return Call(result, None, result._request_id)


async def _async_call(messages: Any, request: dict[str, Any], how: str, beta: bool) -> Call:
    if how == "helper":
        async with messages.stream(**without_stream(request)) as stream:
            assert isinstance(stream, BetaAsyncMessageStream if beta else AsyncMessageStream)
            events = [event async for event in stream]
            final = await stream.get_final_message()
            return Call(final, events, stream.request_id)
    result = await messages.create(**request)
    if isinstance(result, anthropic.AsyncStream):
        events = [event async for event in result]
        return Call(result, events, result.response.headers.get("request-id"))
    return Call(result, None, result._request_id)


# -- what the cassettes recorded -------------------------------------------------------


def recorded_message(cassette: Cassette, i: int) -> dict[str, Any]:
    """The message of interaction `i`: the JSON body, or assembled from its SSE events."""
    if not cassette.interactions[i].is_sse:
        message: dict[str, Any] = cassette.response_json(i)
        return message
    message = {}
    content: list[dict[str, Any]] = []
    partial: dict[int, str] = {}
    for event in cassette.sse_json(i):
        kind = event["type"]
        if kind == "message_start":
            message = {**event["message"], "content": content}
        elif kind == "content_block_start":
            content.append(dict(event["content_block"]))
        elif kind == "content_block_delta":
            index, delta = event["index"], event["delta"]
            block = content[index]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] = delta["signature"]
            elif delta["type"] == "input_json_delta":
                partial[index] = partial.get(index, "") + delta["partial_json"]
        elif kind == "content_block_stop" and event["index"] in partial:
            content[event["index"]]["input"] = json.loads(partial.pop(event["index"]))
        elif kind == "message_delta":
            message["stop_reason"] = event["delta"]["stop_reason"]
    return message


def raw_events(cassette: Cassette, i: int) -> int:
    """SSE events the SDK's raw stream yields (it drops `ping`)."""
    return sum(1 for event in cassette.sse_events(i) if event["event"] != "ping")


def essential(block: dict[str, Any]) -> dict[str, Any]:
    """A content block reduced to what must be recorded exactly."""
    keys = {
        "text": ("type", "text"),
        "thinking": ("type", "thinking", "signature"),
        "tool_use": ("type", "id", "name", "input"),
    }[block["type"]]
    return {key: block[key] for key in keys}


def usage(
    base: int, output: int, created: int | None = None, read: int | None = None
) -> dict[str, int]:
    """DESIGN.md's normalization of raw Anthropic figures (input/output/cache writes/reads)."""
    total_in = base + (created or 0) + (read or 0)
    out = {"input_tokens": total_in, "output_tokens": output, "total_tokens": total_in + output}
    if read is not None:
        out["cache_read_input_tokens"] = read
    if created is not None:
        out["cache_creation_input_tokens"] = created
    return out


def usage_attributes(normalized: dict[str, int]) -> dict[str, int]:
    attributes = {
        "gen_ai.usage.input_tokens": normalized["input_tokens"],
        "gen_ai.usage.output_tokens": normalized["output_tokens"],
    }
    if "cache_read_input_tokens" in normalized:
        attributes["gen_ai.usage.cache_read.input_tokens"] = normalized["cache_read_input_tokens"]
    if "cache_creation_input_tokens" in normalized:
        attributes["gen_ai.usage.cache_creation.input_tokens"] = normalized[
            "cache_creation_input_tokens"
        ]
    return attributes


def request_attributes(server: ReplayServer, sent: dict[str, Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.provider.name": "anthropic",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": sent["model"],
        "gen_ai.request.max_tokens": sent["max_tokens"],
        "server.address": "127.0.0.1",
        "server.port": server.port,
    }
    if sent.get("tools"):
        attributes["gen_ai.tool.definitions"] = sent["tools"]
    return attributes


def spans_of(captured: Capture, count: int) -> list[dict[str, Any]]:
    """The spans of `count` single-span traces, in call order."""
    traces = captured.traces
    assert len(traces) == count, [t["name"] for t in traces]
    spans = []
    for trace in traces:
        assert len(trace["spans"]) == 1, [s["name"] for s in trace["spans"]]
        span = trace["spans"][0]
        assert trace["status"] == span["status"]["code"]
        assert trace.get("token_usage") == span.get("token_usage")
        spans.append(span)
    return spans


def check_chat_span(
    span: dict[str, Any],
    server: ReplayServer,
    cassette: Cassette,
    i: int,
    call: Call,
    how: str,
    expected_usage: dict[str, int],
) -> None:
    """Everything a successful chat span holds, exactly."""
    request = cassette.request_json(i)
    sent = without_stream(request) if how == "helper" else request
    recorded = recorded_message(cassette, i)

    assert span["name"] == f"chat {request['model']}"
    assert span["span_type"] == "CHAT_MODEL"
    assert span["status"] == {"code": "OK", "message": ""}
    assert span["parent_id"] is None
    assert span["events"] == []
    assert span["end_time_ns"] > span["start_time_ns"]
    assert span["inputs"] == sent
    assert span["token_usage"] == expected_usage

    attributes = dict(span["attributes"])
    if call.events is not None:
        ttfc = attributes.pop("tracekit.time_to_first_chunk_s", None)
        assert isinstance(ttfc, float), span["attributes"]
        assert ttfc > 0
        assert attributes.pop("tracekit.stream") is True
        chunks = len(call.events) if how == "helper" else raw_events(cassette, i)
        assert attributes.pop("tracekit.stream.chunks") == chunks
    assert attributes == {
        **request_attributes(server, sent),
        "gen_ai.response.id": recorded["id"],
        "gen_ai.response.model": recorded["model"],
        "gen_ai.response.finish_reasons": [recorded["stop_reason"]],
        **usage_attributes(expected_usage),
    }

    outputs = span["outputs"]
    assert outputs["id"] == recorded["id"]
    assert outputs["model"] == recorded["model"]
    assert outputs["role"] == "assistant"
    assert outputs["stop_reason"] == recorded["stop_reason"]
    assert [essential(b) for b in outputs["content"]] == [essential(b) for b in recorded["content"]]
    # The caller got the same message the span recorded.
    if call.events is None or how == "helper":
        assert [essential(b.model_dump()) for b in call.result.content] == [
            essential(b) for b in recorded["content"]
        ]


def text_of(span: dict[str, Any]) -> str:
    return "".join(b.get("text", "") for b in span["outputs"]["content"] if b["type"] == "text")


# -- the tests -------------------------------------------------------------------------


def test_every_anthropic_cassette_is_replayed() -> None:
    assert cassette_names("anthropic") == COVERED


@pytest.mark.parametrize("mode", MODES)
def test_nonstream_basic_gzip(traced: Capture, mode: str) -> None:
    cassette = load_or_skip("anthropic/messages_nonstream_basic_gzip.yaml")
    server, (call,) = replay(cassette, mode=mode)
    assert isinstance(call.result, anthropic.types.Message)
    assert call.result.content[0].text == "Four plus five equals nine."
    assert call.request_id == "req_011CY3Ao3z1SqvbaQaRqgFjW"

    (span,) = spans_of(traced, 1)
    check_chat_span(span, server, cassette, 0, call, "create", usage(19, 9, 0, 0))
    assert text_of(span) == "Four plus five equals nine."
    assert "tracekit.stream" not in span["attributes"]
    assert "tracekit.time_to_first_chunk_s" not in span["attributes"]


@pytest.mark.parametrize(("mode", "how"), STREAM_WAYS)
def test_stream_basic(traced: Capture, mode: str, how: str) -> None:
    cassette = load_or_skip("anthropic/messages_stream_basic.yaml")
    server, (call,) = replay(cassette, mode=mode, how=how)
    assert call.request_id == "req_011CY3AoKeapTTgmBHNRgu6L"
    (span,) = spans_of(traced, 1)
    check_chat_span(span, server, cassette, 0, call, how, usage(19, 9, 0, 0))
    assert text_of(span) == "Four plus five equals nine."
    assert span["attributes"]["gen_ai.response.id"] == "msg_01CpLvutrn5ZEYqp6J9PqxDN"


@pytest.mark.parametrize(("mode", "how"), STREAM_WAYS)
def test_beta_messages_stream_gzip_sse(traced: Capture, mode: str, how: str) -> None:
    cassette = load_or_skip("anthropic/beta_messages_stream_gzip_sse.yaml")
    server, (call,) = replay(cassette, mode=mode, how=how, beta=True)
    assert call.request_id == "req_011CYwShQdcef2bQtkaLi4z7"
    (span,) = spans_of(traced, 1)
    check_chat_span(span, server, cassette, 0, call, how, usage(19, 9, 0, 0))
    assert text_of(span) == "Four plus five equals nine."


@pytest.mark.parametrize(("mode", "how"), STREAM_WAYS)
def test_stream_legacy_usage_2024(traced: Capture, mode: str, how: str) -> None:
    """2024 format: usage without cache fields; message_delta carries only output."""
    cassette = load_or_skip("anthropic/messages_stream_legacy_usage_2024.yaml")
    server, (call,) = replay(cassette, mode=mode, how=how)
    (span,) = spans_of(traced, 1)
    expected = usage(17, 171)
    assert expected == {"input_tokens": 17, "output_tokens": 171, "total_tokens": 188}
    check_chat_span(span, server, cassette, 0, call, how, expected)
    # Never invent zeros: no cache keys, no cache attributes.
    assert not any("cache" in key for key in span["attributes"])
    assert text_of(span).startswith("Here's an OpenTelemetry-themed joke for you:")
    assert text_of(span).endswith("Let me know if you'd like to hear any other tech-themed jokes!")


@pytest.mark.parametrize("mode", MODES)
def test_tool_use_nonstream_gzip(traced: Capture, mode: str) -> None:
    cassette = load_or_skip("anthropic/messages_tool_use_nonstream_gzip.yaml")
    server, (call,) = replay(cassette, mode=mode)
    (span,) = spans_of(traced, 1)
    check_chat_span(span, server, cassette, 0, call, "create", usage(514, 152))
    assert [b["type"] for b in span["outputs"]["content"]] == ["text", "tool_use", "tool_use"]
    _, weather, time = span["outputs"]["content"]
    assert (weather["name"], weather["input"]) == (
        "get_weather",
        {"location": "New York, NY", "unit": "fahrenheit"},
    )
    assert (time["name"], time["input"]) == ("get_time", {"timezone": "America/New_York"})
    assert span["attributes"]["gen_ai.response.finish_reasons"] == ["tool_use"]
    assert [t["name"] for t in span["attributes"]["gen_ai.tool.definitions"]] == [
        "get_weather",
        "get_time",
    ]


@pytest.mark.parametrize(("mode", "how"), STREAM_WAYS)
def test_tool_use_stream_parallel(traced: Capture, mode: str, how: str) -> None:
    cassette = load_or_skip("anthropic/messages_tool_use_stream_parallel.yaml")
    server, (call,) = replay(cassette, mode=mode, how=how)
    (span,) = spans_of(traced, 1)
    check_chat_span(span, server, cassette, 0, call, how, usage(721, 113, 0, 0))
    text, weather, time = span["outputs"]["content"]
    assert text == {**text, "type": "text"}
    assert text["text"] == (
        "I'll check both the current weather and time in New York simultaneously right away!"
    )
    # The JSON input assembled from input_json deltas, as an object (not a string).
    assert weather["type"] == "tool_use"
    assert weather["id"] == "toolu_01Mo5Ee5Yb7vrzaxSNS5DVuP"
    assert weather["name"] == "get_weather"
    assert weather["input"] == {"location": "New York, NY"}
    assert time["id"] == "toolu_01GDAGw1KUdi1DCPPprMKGHR"
    assert time["input"] == {"timezone": "America/New_York"}
    assert span["attributes"]["gen_ai.response.finish_reasons"] == ["tool_use"]


@pytest.mark.parametrize("mode", MODES)
def test_prompt_caching_nonstream_write_then_read(traced: Capture, mode: str) -> None:
    cassette = load_or_skip("anthropic/messages_prompt_caching_nonstream_write_then_read_gzip.yaml")
    server, calls = replay(cassette, mode=mode)
    write, read = spans_of(traced, 2)
    check_chat_span(write, server, cassette, 0, calls[0], "create", usage(4, 187, 1163, 0))
    check_chat_span(read, server, cassette, 1, calls[1], "create", usage(4, 202, 0, 1163))
    assert write["token_usage"] == {
        "input_tokens": 1167,
        "output_tokens": 187,
        "total_tokens": 1354,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 1163,
    }
    assert read["token_usage"] == {
        "input_tokens": 1167,
        "output_tokens": 202,
        "total_tokens": 1369,
        "cache_read_input_tokens": 1163,
        "cache_creation_input_tokens": 0,
    }
    assert read["attributes"]["gen_ai.usage.cache_read.input_tokens"] == 1163
    assert write["attributes"]["gen_ai.usage.cache_creation.input_tokens"] == 1163


@pytest.mark.parametrize(("mode", "how"), STREAM_WAYS)
def test_prompt_caching_stream_write_then_read(traced: Capture, mode: str, how: str) -> None:
    cassette = load_or_skip("anthropic/messages_prompt_caching_stream_write_then_read.yaml")
    server, calls = replay(cassette, mode=mode, how=how)
    write, read = spans_of(traced, 2)
    check_chat_span(write, server, cassette, 0, calls[0], how, usage(4, 201, 1165, 0))
    check_chat_span(read, server, cassette, 1, calls[1], how, usage(4, 221, 0, 1165))
    assert write["token_usage"] == {
        "input_tokens": 1169,
        "output_tokens": 201,
        "total_tokens": 1370,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 1165,
    }
    assert read["token_usage"] == {
        "input_tokens": 1169,
        "output_tokens": 221,
        "total_tokens": 1390,
        "cache_read_input_tokens": 1165,
        "cache_creation_input_tokens": 0,
    }


@pytest.mark.parametrize(("mode", "how"), STREAM_WAYS)
def test_extended_thinking_stream(traced: Capture, mode: str, how: str) -> None:
    cassette = load_or_skip("anthropic/messages_extended_thinking_stream.yaml")
    server, (call,) = replay(cassette, mode=mode, how=how)
    (span,) = spans_of(traced, 1)
    check_chat_span(span, server, cassette, 0, call, how, usage(52, 216, 0, 0))
    thinking, text = span["outputs"]["content"]
    assert thinking["type"] == "thinking"
    assert thinking["thinking"].startswith("Let me count the occurrences of the letter 'r'")
    assert thinking["thinking"].endswith(
        "So the letter 'r' appears 3 times in the word \"strawberry\"."
    )
    assert thinking["signature"].startswith("ErUBCkYIARgCIkCepoF8CXqd")
    assert thinking["signature"].endswith("nuNx8Yg==")
    assert text["type"] == "text"
    assert text["text"] == "The letter 'r' appears 3 times in the word \"strawberry\"."
    assert span["inputs"]["thinking"] == {"type": "enabled", "budget_tokens": 1024}


@pytest.mark.parametrize(("mode", "how"), [*[(m, "create") for m in MODES], ("sync", "helper")])
def test_404_model_not_found(traced: Capture, mode: str, how: str) -> None:
    cassette = load_or_skip("anthropic/messages_404_model_not_found_parsed_body.yaml")
    request = cassette.request_json(0)
    with pytest.raises(anthropic.NotFoundError) as info:
        replay(cassette, mode=mode, how=how)
    exc = info.value
    # The SDK's own exception, unchanged.
    assert type(exc) is anthropic.NotFoundError
    assert exc.status_code == 404
    assert exc.body == cassette.response_json(0)
    assert "claude-sonet-4-5" in str(exc)

    (span,) = spans_of(traced, 1)
    sent = without_stream(request) if how == "helper" else request
    assert span["name"] == "chat claude-sonet-4-5"
    assert span["span_type"] == "CHAT_MODEL"
    assert span["status"] == {"code": "ERROR", "message": f"NotFoundError: {exc}"}
    assert span["inputs"] == sent
    assert span["outputs"] is None
    assert "token_usage" not in span
    (event,) = span["events"]
    assert event["name"] == "exception"
    assert event["attributes"]["exception.type"] == "NotFoundError"
    assert event["attributes"]["exception.message"] == str(exc)
    assert "NotFoundError" in event["attributes"]["exception.stacktrace"]
    attributes = dict(span["attributes"])
    assert attributes.pop("http.response.status_code") == 404
    assert attributes.pop("error.type") == "NotFoundError"
    server_port = attributes["server.port"]
    assert attributes == {
        "gen_ai.provider.name": "anthropic",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "claude-sonet-4-5",
        "gen_ai.request.max_tokens": 4096,
        "server.address": "127.0.0.1",
        "server.port": server_port,
    }
