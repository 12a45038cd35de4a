"""Anthropic streams end their span exactly once, whatever the caller does.

Against `tracekit.testing.FakeProviderServer` (real loopback sockets, the real
SDK), sync and async: `messages.create(stream=True)` exhausted, broken out of
and closed, broken out of inside `with`, failing mid-stream (the server hangs
up), dropped after a partial read or unread (garbage collection); the
`messages.stream()` helper iterated, read through `text_stream` (fully and
broken out of), `get_final_message()`, `get_final_text()`, `until_done()`,
closed, left early, left by an exception, failing mid-stream and dropped.
Also: the caller gets the SDK's own objects, one call makes one span, the span
is not current between chunks, spans nest under the caller's span,
`count_tokens`, `beta.messages`, `with_raw_response`, `autolog(disable=True)`,
100 concurrent async streams, and API keys never reach the record.
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

anthropic = pytest.importorskip("anthropic")

from anthropic.lib.streaming import (  # noqa: E402
    AsyncMessageStream,
    AsyncMessageStreamManager,
    MessageStream,
    MessageStreamManager,
)

import tracekit  # noqa: E402
import tracekit.anthropic  # noqa: E402
from tracekit import _api, _fake_server  # noqa: E402
from tracekit._fake_server import FakeProviderServer  # noqa: E402
from tracekit.integrations import _streams  # noqa: E402
from tracekit.integrations.anthropic import integration  # noqa: E402
from tracekit.testing import Capture  # noqa: E402

MODEL = "fake-claude"
QUESTION = "hello there"
ANSWER = "You asked: hello there"
MESSAGES = [{"role": "user", "content": QUESTION}]
KWARGS: dict[str, Any] = {"model": MODEL, "max_tokens": 64, "messages": MESSAGES}
REQUEST_ID = "req_fake_anthropic"
# The fake server's figures for MESSAGES: 5 input tokens, 4 output tokens (4 words).
USAGE = {
    "input_tokens": 5,
    "output_tokens": 4,
    "total_tokens": 9,
    "cache_read_input_tokens": 0,
    "cache_creation_input_tokens": 0,
}
# Raw SSE events for ANSWER: message_start, content_block_start, 4 text deltas,
# content_block_stop, message_delta, message_stop.
RAW_EVENTS = 9
# What the helper hands out for them: each text delta also gives a `text` event.
HELPER_EVENTS = 13
KEEP = 2  # raw events a dropping server sends before it hangs up
TEXTS = 4  # text deltas in ANSWER


# -- servers and fixtures --------------------------------------------------------------


class _IdHandler(_fake_server._Handler):
    """The fake server's handler, also sending Anthropic's `request-id` header."""

    def end_headers(self) -> None:
        self.send_header("request-id", REQUEST_ID)
        super().end_headers()


class IdServer(FakeProviderServer):
    def __init__(self) -> None:
        super().__init__()
        self.RequestHandlerClass = _IdHandler


class DroppingServer(IdServer):
    """Sends the first `keep` SSE events of a streamed answer, then hangs up mid-response."""

    def __init__(self, keep: int) -> None:
        super().__init__()
        self.drop_after = keep


@pytest.fixture(scope="module")
def server() -> Iterator[FakeProviderServer]:
    # One per module: stopping a server waits for its 0.5 s poll interval.
    with IdServer() as fake:
        yield fake


@pytest.fixture(scope="module")
def dropping() -> Iterator[FakeProviderServer]:
    with DroppingServer(KEEP) as fake:
        yield fake


@pytest.fixture
def traced(captured: Capture) -> Iterator[Capture]:
    """Anthropic autolog on for one test, really unpatched afterwards."""
    tracekit.anthropic.autolog()
    try:
        yield captured
    finally:
        integration.revert()


@pytest.fixture
def traced_realtime(captured_realtime: Capture) -> Iterator[Capture]:
    tracekit.anthropic.autolog()
    try:
        yield captured_realtime
    finally:
        integration.revert()


@pytest.fixture
def finishes(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How many times each span went through the finishing path (must be once)."""
    counts: Counter[str] = Counter()
    original = _api.finish

    def counting(span: Any, exc: BaseException | None) -> None:
        counts[span.name] += 1
        original(span, exc)

    monkeypatch.setattr(_api, "finish", counting)
    monkeypatch.setattr(_streams, "finish", counting)
    return counts


def sync_client(server: FakeProviderServer, **options: Any) -> Any:
    return anthropic.Anthropic(
        api_key=options.pop("api_key", "test"), base_url=server.base_url, max_retries=0, **options
    )


def async_client(server: FakeProviderServer, **options: Any) -> Any:
    return anthropic.AsyncAnthropic(
        api_key=options.pop("api_key", "test"), base_url=server.base_url, max_retries=0, **options
    )


def nothing_recorded_yet(captured: Capture) -> None:
    assert captured.traces == [], "the span ended before the stream was done with"


def only_span(captured: Capture) -> dict[str, Any]:
    traces = captured.traces
    assert len(traces) == 1, [t["name"] for t in traces]
    spans = traces[0]["spans"]
    assert len(spans) == 1, [s["name"] for s in spans]  # one call, one span
    return spans[0]


def text_of(span: dict[str, Any]) -> str:
    content = (span["outputs"] or {}).get("content") or []
    return "".join(b.get("text", "") for b in content if b.get("type") == "text")


# -- the exits -------------------------------------------------------------------------


@dataclass
class Outcome:
    """What the span must show after an exit."""

    ended_by: str | set[str] | None  # `tracekit.stream.ended_by` (None: absent)
    chunks: int | None  # chunks the span counted (None: not checked here)
    error: BaseException | None = None  # the exception the span must record
    full: bool = False  # the whole answer arrived: outputs and usage are complete
    seen: list[Any] = field(default_factory=list)


# create(stream=True), sync


def create_exhausted(client: Any, captured: Capture) -> Outcome:
    stream = client.messages.create(**KWARGS, stream=True)
    assert isinstance(stream, anthropic.Stream)
    events = list(stream)
    assert len(events) == RAW_EVENTS
    return Outcome(None, RAW_EVENTS, full=True)


def create_break_close(client: Any, captured: Capture) -> Outcome:
    stream = client.messages.create(**KWARGS, stream=True)
    for _ in stream:
        break
    nothing_recorded_yet(captured)
    stream.close()
    stream.close()  # twice: still one end
    return Outcome("close", 1)


def create_break_in_with(client: Any, captured: Capture) -> Outcome:
    with client.messages.create(**KWARGS, stream=True) as stream:
        assert isinstance(stream, anthropic.Stream)
        for _ in stream:
            break
        nothing_recorded_yet(captured)
    return Outcome("context_exit", 1)


def create_error_mid_stream(client: Any, captured: Capture) -> Outcome:
    seen: list[Any] = []

    def read() -> None:
        for event in client.messages.create(**KWARGS, stream=True):
            seen.append(event)

    with pytest.raises(Exception) as info:  # noqa: PT011 - whatever the SDK raises
        read()
    assert len(seen) == KEEP
    return Outcome(None, KEEP, info.value)


def create_dropped_partly_read(client: Any, captured: Capture) -> Outcome:
    stream = client.messages.create(**KWARGS, stream=True)
    next(stream)
    nothing_recorded_yet(captured)
    del stream
    gc.collect()
    return Outcome("garbage_collected", 1)


def create_dropped_unread(client: Any, captured: Capture) -> Outcome:
    stream = client.messages.create(**KWARGS, stream=True)
    nothing_recorded_yet(captured)
    del stream
    gc.collect()
    return Outcome("garbage_collected", 0)


# the stream() helper, sync


def helper_events(client: Any, captured: Capture) -> Outcome:
    with client.messages.stream(**KWARGS) as stream:
        events = list(stream)
        assert len(events) == HELPER_EVENTS
    return Outcome(None, HELPER_EVENTS, full=True)


def helper_text_stream(client: Any, captured: Capture) -> Outcome:
    with client.messages.stream(**KWARGS) as stream:
        assert "".join(stream.text_stream) == ANSWER
    return Outcome(None, TEXTS, full=True)


def helper_text_stream_break(client: Any, captured: Capture) -> Outcome:
    with client.messages.stream(**KWARGS) as stream:
        for text in stream.text_stream:
            assert text == "You "
            break
    return Outcome("close", 1)


def helper_get_final_message(client: Any, captured: Capture) -> Outcome:
    with client.messages.stream(**KWARGS) as stream:
        message = stream.get_final_message()
        assert isinstance(message, anthropic.types.Message)
        assert message.content[0].text == ANSWER
    return Outcome(None, None, full=True)


def helper_get_final_text(client: Any, captured: Capture) -> Outcome:
    with client.messages.stream(**KWARGS) as stream:
        assert stream.get_final_text() == ANSWER
    return Outcome(None, None, full=True)


def helper_until_done(client: Any, captured: Capture) -> Outcome:
    with client.messages.stream(**KWARGS) as stream:
        assert stream.until_done() is None
        assert stream.current_message_snapshot.content[0].text == ANSWER
    return Outcome(None, None, full=True)


def helper_close(client: Any, captured: Capture) -> Outcome:
    with client.messages.stream(**KWARGS) as stream:
        next(stream)
        nothing_recorded_yet(captured)
        stream.close()
    return Outcome("close", 1)


def helper_early_exit(client: Any, captured: Capture) -> Outcome:
    with client.messages.stream(**KWARGS) as stream:
        next(stream)
        nothing_recorded_yet(captured)
    return Outcome("context_exit", 1)


def helper_unread_exit(client: Any, captured: Capture) -> Outcome:
    with client.messages.stream(**KWARGS) as stream:
        assert stream.request_id == REQUEST_ID
        nothing_recorded_yet(captured)
    return Outcome("context_exit", 0)


def helper_exception_in_block(client: Any, captured: Capture) -> Outcome:
    boom = ValueError("boom in the block")

    def block() -> None:
        with client.messages.stream(**KWARGS) as stream:
            next(stream)
            raise boom

    with pytest.raises(ValueError, match="boom in the block") as info:
        block()
    assert info.value is boom  # the caller's own exception, unchanged
    return Outcome("context_exit", 1, boom)


def helper_error_mid_stream(client: Any, captured: Capture) -> Outcome:
    seen: list[Any] = []

    def read() -> None:
        with client.messages.stream(**KWARGS) as stream:
            for event in stream:
                seen.append(event)

    with pytest.raises(Exception) as info:  # noqa: PT011 - whatever the SDK raises
        read()
    assert len(seen) == KEEP
    return Outcome(None, KEEP, info.value)


def helper_dropped_partly_read(client: Any, captured: Capture) -> Outcome:
    manager = client.messages.stream(**KWARGS)
    stream = manager.__enter__()
    next(stream)
    nothing_recorded_yet(captured)
    del manager, stream
    gc.collect()
    return Outcome("garbage_collected", 1)


# create(stream=True), async


async def acreate_exhausted(client: Any, captured: Capture) -> Outcome:
    stream = await client.messages.create(**KWARGS, stream=True)
    assert isinstance(stream, anthropic.AsyncStream)
    events = [event async for event in stream]
    assert len(events) == RAW_EVENTS
    return Outcome(None, RAW_EVENTS, full=True)


async def acreate_break_close(client: Any, captured: Capture) -> Outcome:
    stream = await client.messages.create(**KWARGS, stream=True)
    async for _ in stream:
        break
    nothing_recorded_yet(captured)
    await stream.close()
    await stream.close()
    return Outcome("close", 1)


async def acreate_break_in_with(client: Any, captured: Capture) -> Outcome:
    async with await client.messages.create(**KWARGS, stream=True) as stream:
        assert isinstance(stream, anthropic.AsyncStream)
        async for _ in stream:
            break
        nothing_recorded_yet(captured)
    return Outcome("context_exit", 1)


async def acreate_error_mid_stream(client: Any, captured: Capture) -> Outcome:
    seen: list[Any] = []

    async def read() -> None:
        async for event in await client.messages.create(**KWARGS, stream=True):
            seen.append(event)

    with pytest.raises(Exception) as info:  # noqa: PT011 - whatever the SDK raises
        await read()
    assert len(seen) == KEEP
    return Outcome(None, KEEP, info.value)


async def acreate_dropped_partly_read(client: Any, captured: Capture) -> Outcome:
    stream = await client.messages.create(**KWARGS, stream=True)
    await stream.__anext__()
    nothing_recorded_yet(captured)
    del stream
    gc.collect()
    return Outcome("garbage_collected", 1)


async def acreate_dropped_unread(client: Any, captured: Capture) -> Outcome:
    stream = await client.messages.create(**KWARGS, stream=True)
    nothing_recorded_yet(captured)
    del stream
    gc.collect()
    return Outcome("garbage_collected", 0)


# the stream() helper, async


async def ahelper_events(client: Any, captured: Capture) -> Outcome:
    async with client.messages.stream(**KWARGS) as stream:
        events = [event async for event in stream]
        assert len(events) == HELPER_EVENTS
    return Outcome(None, HELPER_EVENTS, full=True)


async def ahelper_text_stream(client: Any, captured: Capture) -> Outcome:
    async with client.messages.stream(**KWARGS) as stream:
        assert "".join([text async for text in stream.text_stream]) == ANSWER
    return Outcome(None, TEXTS, full=True)


async def ahelper_text_stream_break(client: Any, captured: Capture) -> Outcome:
    async with client.messages.stream(**KWARGS) as stream:
        async for text in stream.text_stream:
            assert text == "You "
            break
    # An abandoned async generator is closed by the event loop later: either exit may win.
    return Outcome({"close", "context_exit"}, 1)


async def ahelper_get_final_message(client: Any, captured: Capture) -> Outcome:
    async with client.messages.stream(**KWARGS) as stream:
        message = await stream.get_final_message()
        assert message.content[0].text == ANSWER
    return Outcome(None, None, full=True)


async def ahelper_get_final_text(client: Any, captured: Capture) -> Outcome:
    async with client.messages.stream(**KWARGS) as stream:
        assert await stream.get_final_text() == ANSWER
    return Outcome(None, None, full=True)


async def ahelper_until_done(client: Any, captured: Capture) -> Outcome:
    async with client.messages.stream(**KWARGS) as stream:
        assert await stream.until_done() is None
    return Outcome(None, None, full=True)


async def ahelper_close(client: Any, captured: Capture) -> Outcome:
    async with client.messages.stream(**KWARGS) as stream:
        await stream.__anext__()
        nothing_recorded_yet(captured)
        await stream.close()
    return Outcome("close", 1)


async def ahelper_early_exit(client: Any, captured: Capture) -> Outcome:
    async with client.messages.stream(**KWARGS) as stream:
        await stream.__anext__()
        nothing_recorded_yet(captured)
    return Outcome("context_exit", 1)


async def ahelper_unread_exit(client: Any, captured: Capture) -> Outcome:
    async with client.messages.stream(**KWARGS) as stream:
        assert stream.request_id == REQUEST_ID
        nothing_recorded_yet(captured)
    return Outcome("context_exit", 0)


async def ahelper_exception_in_block(client: Any, captured: Capture) -> Outcome:
    boom = ValueError("boom in the block")

    async def block() -> None:
        async with client.messages.stream(**KWARGS) as stream:
            await stream.__anext__()
            raise boom

    with pytest.raises(ValueError, match="boom in the block") as info:
        await block()
    assert info.value is boom
    return Outcome("context_exit", 1, boom)


async def ahelper_error_mid_stream(client: Any, captured: Capture) -> Outcome:
    seen: list[Any] = []

    async def read() -> None:
        async with client.messages.stream(**KWARGS) as stream:
            async for event in stream:
                seen.append(event)

    with pytest.raises(Exception) as info:  # noqa: PT011 - whatever the SDK raises
        await read()
    assert len(seen) == KEEP
    return Outcome(None, KEEP, info.value)


async def ahelper_dropped_partly_read(client: Any, captured: Capture) -> Outcome:
    manager = client.messages.stream(**KWARGS)
    stream = await manager.__aenter__()
    await stream.__anext__()
    nothing_recorded_yet(captured)
    del manager, stream
    gc.collect()
    return Outcome("garbage_collected", 1)


SYNC_EXITS: dict[str, Callable[..., Outcome]] = {
    f.__name__: f
    for f in (
        create_exhausted,
        create_break_close,
        create_break_in_with,
        create_error_mid_stream,
        create_dropped_partly_read,
        create_dropped_unread,
        helper_events,
        helper_text_stream,
        helper_text_stream_break,
        helper_get_final_message,
        helper_get_final_text,
        helper_until_done,
        helper_close,
        helper_early_exit,
        helper_unread_exit,
        helper_exception_in_block,
        helper_error_mid_stream,
        helper_dropped_partly_read,
    )
}
ASYNC_EXITS: dict[str, Callable[..., Any]] = {
    f.__name__: f
    for f in (
        acreate_exhausted,
        acreate_break_close,
        acreate_break_in_with,
        acreate_error_mid_stream,
        acreate_dropped_partly_read,
        acreate_dropped_unread,
        ahelper_events,
        ahelper_text_stream,
        ahelper_text_stream_break,
        ahelper_get_final_message,
        ahelper_get_final_text,
        ahelper_until_done,
        ahelper_close,
        ahelper_early_exit,
        ahelper_unread_exit,
        ahelper_exception_in_block,
        ahelper_error_mid_stream,
        ahelper_dropped_partly_read,
    )
}


def check_stream_span(
    captured: Capture, finishes: Counter[str], name: str, outcome: Outcome
) -> None:
    span = only_span(captured)
    assert span["name"] == f"chat {MODEL}"
    assert span["span_type"] == "CHAT_MODEL"
    # The helper's request has no `stream` argument (the SDK adds it on the wire).
    created = name.startswith(("create", "acreate"))
    assert span["inputs"] == ({**KWARGS, "stream": True} if created else KWARGS)
    assert finishes == {f"chat {MODEL}": 1}, "the span must end exactly once"
    assert span["end_time_ns"] is not None
    attributes = span["attributes"]
    assert attributes["tracekit.stream"] is True
    assert "tracekit.force_ended" not in attributes
    ended_by = attributes.get("tracekit.stream.ended_by")
    if isinstance(outcome.ended_by, set):
        assert ended_by in outcome.ended_by, attributes
    else:
        assert ended_by == outcome.ended_by, attributes
    if outcome.chunks is not None:
        assert attributes["tracekit.stream.chunks"] == outcome.chunks, attributes
        if outcome.chunks:
            assert attributes["tracekit.time_to_first_chunk_s"] > 0
        else:
            assert "tracekit.time_to_first_chunk_s" not in attributes

    exc = outcome.error
    if exc is not None:
        assert not type(exc).__module__.startswith("tracekit"), exc
        assert span["status"] == {
            "code": "ERROR",
            "message": f"{type(exc).__name__}: {exc}",
        }
        (event,) = span["events"]
        assert event["name"] == "exception"
        assert event["attributes"]["exception.type"] == type(exc).__qualname__
        assert event["attributes"]["exception.message"] == str(exc)
    else:
        assert span["status"] == {"code": "OK", "message": ""}
        assert span["events"] == []

    if outcome.full:
        assert text_of(span) == ANSWER
        assert span["outputs"]["id"] == "msg_fake"
        assert span["outputs"]["stop_reason"] == "end_turn"
        assert span["token_usage"] == USAGE
        assert attributes["gen_ai.response.finish_reasons"] == ["end_turn"]
        assert attributes["gen_ai.response.id"] == "msg_fake"
        assert attributes["gen_ai.response.model"] == MODEL
        assert attributes["gen_ai.usage.input_tokens"] == 5
        assert attributes["gen_ai.usage.output_tokens"] == 4
        assert attributes["gen_ai.usage.cache_read.input_tokens"] == 0
        assert attributes["gen_ai.usage.cache_creation.input_tokens"] == 0
    else:
        assert text_of(span) != ANSWER
        assert span.get("token_usage", {}).get("output_tokens") != 4


def _server_for(name: str, server: FakeProviderServer, dropping: FakeProviderServer) -> Any:
    return dropping if "error_mid_stream" in name else server


@pytest.mark.parametrize("name", list(SYNC_EXITS))
def test_sync_exit_ends_the_span_once(
    traced: Capture,
    finishes: Counter[str],
    server: FakeProviderServer,
    dropping: FakeProviderServer,
    name: str,
) -> None:
    with sync_client(_server_for(name, server, dropping)) as client:
        outcome = SYNC_EXITS[name](client, traced)
    check_stream_span(traced, finishes, name, outcome)


@pytest.mark.parametrize("name", list(ASYNC_EXITS))
def test_async_exit_ends_the_span_once(
    traced: Capture,
    finishes: Counter[str],
    server: FakeProviderServer,
    dropping: FakeProviderServer,
    name: str,
) -> None:
    async def main() -> Outcome:
        async with async_client(_server_for(name, server, dropping)) as client:
            outcome: Outcome = await ASYNC_EXITS[name](client, traced)
            await asyncio.sleep(0)  # let the loop close abandoned async generators
            return outcome

    outcome = asyncio.run(main())
    check_stream_span(traced, finishes, name, outcome)


# -- methods of the helper that read the stream for the caller -------------------------


@pytest.mark.parametrize("method", ["get_final_message", "get_final_text", "until_done"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_helper_reading_methods_record_the_stream(
    traced: Capture, server: FakeProviderServer, mode: str, method: str
) -> None:
    """`get_final_message()` & co. read the whole stream: the span says so (chunks, TTFC)."""
    if mode == "sync":
        with sync_client(server) as client, client.messages.stream(**KWARGS) as stream:
            getattr(stream, method)()
    else:

        async def main() -> None:
            async with async_client(server) as client, client.messages.stream(**KWARGS) as s:
                await getattr(s, method)()

        asyncio.run(main())
    span = only_span(traced)
    attributes = span["attributes"]
    assert span["token_usage"] == USAGE
    assert attributes["tracekit.stream.chunks"] == HELPER_EVENTS, attributes
    assert attributes.get("tracekit.time_to_first_chunk_s", 0) > 0, attributes


def test_helper_span_outputs_do_not_change_after_it_ended(
    traced: Capture, finishes: Counter[str], server: FakeProviderServer
) -> None:
    """Breaking out of `text_stream` ends the span; reading on must not rewrite its record."""
    with sync_client(server) as client, client.messages.stream(**KWARGS) as stream:
        for _ in stream.text_stream:
            break
        assert stream.get_final_text() == ANSWER  # the caller reads on
    span = only_span(traced)
    assert finishes == {f"chat {MODEL}": 1}
    assert span["attributes"]["tracekit.stream.ended_by"] == "close"
    # One moment, consistently: what had arrived when the span ended.
    assert span["token_usage"]["output_tokens"] == 1  # message_start's running figure
    assert text_of(span) == "You "


# -- the caller sees the SDK's own objects ---------------------------------------------


def test_sync_caller_gets_the_sdk_objects(traced: Capture, server: FakeProviderServer) -> None:
    with sync_client(server) as client:
        message = client.messages.create(**KWARGS)
        assert type(message) is anthropic.types.Message
        assert message._request_id == REQUEST_ID
        assert message.content[0].text == ANSWER

        stream = client.messages.create(**KWARGS, stream=True)
        assert isinstance(stream, anthropic.Stream)
        assert stream.response.headers["request-id"] == REQUEST_ID
        assert stream.response.headers["content-type"] == "text/event-stream"
        first = next(stream)
        assert isinstance(first, anthropic.types.RawMessageStartEvent)
        stream.close()

        manager = client.messages.stream(**KWARGS)
        assert isinstance(manager, MessageStreamManager)
        with manager as helper:
            assert isinstance(helper, MessageStream)
            assert helper.request_id == REQUEST_ID
            assert helper.response.headers["content-type"] == "text/event-stream"
            assert helper.get_final_text() == ANSWER
            assert helper.current_message_snapshot.content[0].text == ANSWER
    assert len(traced.traces) == 3


def test_async_caller_gets_the_sdk_objects(traced: Capture, server: FakeProviderServer) -> None:
    async def main() -> None:
        async with async_client(server) as client:
            message = await client.messages.create(**KWARGS)
            assert type(message) is anthropic.types.Message
            assert message._request_id == REQUEST_ID

            stream = await client.messages.create(**KWARGS, stream=True)
            assert isinstance(stream, anthropic.AsyncStream)
            assert stream.response.headers["request-id"] == REQUEST_ID
            await stream.close()

            manager = client.messages.stream(**KWARGS)
            assert isinstance(manager, AsyncMessageStreamManager)
            async with manager as helper:
                assert isinstance(helper, AsyncMessageStream)
                assert helper.request_id == REQUEST_ID
                assert await helper.get_final_text() == ANSWER

    asyncio.run(main())
    assert len(traced.traces) == 3


# -- context: not current between chunks, nested under the caller ----------------------


def test_span_is_not_current_between_chunks(traced: Capture, server: FakeProviderServer) -> None:
    with sync_client(server) as client:
        for _ in client.messages.create(**KWARGS, stream=True):
            assert tracekit.get_current_span() is None
        with client.messages.stream(**KWARGS) as stream:
            assert tracekit.get_current_span() is None
            for _ in stream:
                assert tracekit.get_current_span() is None
        with client.messages.stream(**KWARGS) as stream:
            for _ in stream.text_stream:
                assert tracekit.get_current_span() is None
    assert len(traced.traces) == 3


def test_sync_calls_nest_under_the_callers_span(
    traced: Capture, server: FakeProviderServer
) -> None:
    @tracekit.trace
    def agent() -> list[str]:
        parent = tracekit.get_current_span()
        out = []
        with sync_client(server) as client:
            out.append(client.messages.create(**KWARGS).content[0].text)
            assert tracekit.get_current_span() is parent
            parts = []
            for event in client.messages.create(**KWARGS, stream=True):
                assert tracekit.get_current_span() is parent
                if event.type == "content_block_delta":
                    parts.append(event.delta.text)
            out.append("".join(parts))
            with client.messages.stream(**KWARGS) as stream:
                assert tracekit.get_current_span() is parent
                out.append("".join(stream.text_stream))
            assert tracekit.get_current_span() is parent
            client.messages.count_tokens(model=MODEL, messages=MESSAGES)
        return out

    assert agent() == [ANSWER] * 3
    (record,) = traced.traces
    root, *children = record["spans"]
    assert root["name"] == "agent"
    assert root["parent_id"] is None
    assert [s["name"] for s in children] == [f"chat {MODEL}"] * 3 + [f"count_tokens {MODEL}"]
    assert all(s["parent_id"] == root["span_id"] for s in children)
    assert all(s["status"]["code"] == "OK" for s in children)
    assert all(text_of(s) == ANSWER for s in children[:3])
    # The trace sums the three chat calls; counting tokens consumes none.
    assert record["token_usage"] == {k: 3 * v for k, v in USAGE.items()}


def test_async_calls_nest_under_the_callers_span(
    traced: Capture, server: FakeProviderServer
) -> None:
    @tracekit.trace
    async def agent() -> list[str]:
        parent = tracekit.get_current_span()
        out = []
        async with async_client(server) as client:
            out.append((await client.messages.create(**KWARGS)).content[0].text)
            parts = []
            async for event in await client.messages.create(**KWARGS, stream=True):
                assert tracekit.get_current_span() is parent
                if event.type == "content_block_delta":
                    parts.append(event.delta.text)
            out.append("".join(parts))
            async with client.messages.stream(**KWARGS) as stream:
                async for _ in stream:
                    assert tracekit.get_current_span() is parent
                out.append((await stream.get_final_message()).content[0].text)
        return out

    assert asyncio.run(agent()) == [ANSWER] * 3
    (record,) = traced.traces
    root, *children = record["spans"]
    assert root["name"] == "agent"
    assert len(children) == 3
    assert all(s["parent_id"] == root["span_id"] for s in children)
    assert all(text_of(s) == ANSWER and s["token_usage"] == USAGE for s in children)


# -- other endpoints -------------------------------------------------------------------


@pytest.mark.parametrize("beta", [False, True])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_count_tokens(traced: Capture, server: FakeProviderServer, mode: str, beta: bool) -> None:
    def resource(client: Any) -> Any:
        return client.beta.messages if beta else client.messages

    if mode == "sync":
        with sync_client(server) as client:
            result = resource(client).count_tokens(model=MODEL, messages=MESSAGES)
    else:

        async def main() -> Any:
            async with async_client(server) as client:
                return await resource(client).count_tokens(model=MODEL, messages=MESSAGES)

        result = asyncio.run(main())
    assert result.input_tokens == 5
    (record,) = traced.traces
    (span,) = record["spans"]
    assert span["name"] == f"count_tokens {MODEL}"
    assert span["status"] == {"code": "OK", "message": ""}
    assert span["inputs"] == {"model": MODEL, "messages": MESSAGES}
    assert span["outputs"] == {"input_tokens": 5}
    assert "token_usage" not in span  # counting consumes no tokens
    assert "token_usage" not in record
    assert span["attributes"]["gen_ai.operation.name"] == "count_tokens"
    assert span["attributes"]["gen_ai.request.model"] == MODEL
    assert not any(key.startswith("gen_ai.usage.") for key in span["attributes"])


def test_beta_messages_are_traced(
    traced: Capture, finishes: Counter[str], server: FakeProviderServer
) -> None:
    with sync_client(server) as client:
        message = client.beta.messages.create(**KWARGS)
        assert message.content[0].text == ANSWER
        events = list(client.beta.messages.create(**KWARGS, stream=True))
        assert len(events) == RAW_EVENTS
        with client.beta.messages.stream(**KWARGS) as stream:
            assert stream.get_final_text() == ANSWER
    spans = [t["spans"] for t in traced.traces]
    assert [len(s) for s in spans] == [1, 1, 1]
    for (span,) in spans:
        assert span["name"] == f"chat {MODEL}"
        assert span["status"]["code"] == "OK"
        assert text_of(span) == ANSWER
        assert span["token_usage"] == USAGE
    assert finishes == {f"chat {MODEL}": 3}


def test_with_raw_response_create(traced: Capture, server: FakeProviderServer) -> None:
    with sync_client(server) as client:
        raw = client.messages.with_raw_response.create(**KWARGS)
        assert raw.headers["request-id"] == REQUEST_ID
        assert raw.http_request.url.path == "/v1/messages"
        message = raw.parse()
    assert isinstance(message, anthropic.types.Message)
    assert message.content[0].text == ANSWER

    span = only_span(traced)  # traced once
    assert span["name"] == f"chat {MODEL}"
    assert span["status"] == {"code": "OK", "message": ""}
    assert span["inputs"] == KWARGS  # no extra_headers
    assert text_of(span) == ANSWER
    assert span["token_usage"] == USAGE
    assert span["attributes"]["gen_ai.response.id"] == "msg_fake"


def test_async_with_raw_response_create(traced: Capture, server: FakeProviderServer) -> None:
    async def main() -> Any:
        async with async_client(server) as client:
            raw = await client.messages.with_raw_response.create(**KWARGS)
            assert raw.headers["request-id"] == REQUEST_ID
            return await raw.parse()

    assert asyncio.run(main()).content[0].text == ANSWER
    span = only_span(traced)
    assert span["status"]["code"] == "OK"
    assert text_of(span) == ANSWER
    assert span["token_usage"] == USAGE


def test_with_raw_response_stream_is_traced_once(
    traced: Capture, finishes: Counter[str], server: FakeProviderServer
) -> None:
    with sync_client(server) as client:
        raw = client.messages.with_raw_response.create(**KWARGS, stream=True)
        events = list(raw.parse())
    assert len(events) == RAW_EVENTS
    span = only_span(traced)
    assert span["name"] == f"chat {MODEL}"
    assert span["status"]["code"] == "OK"
    assert finishes == {f"chat {MODEL}": 1}


@pytest.mark.parametrize("how", ["create", "helper"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_error_on_open_reaches_the_caller(
    traced: Capture, server: FakeProviderServer, mode: str, how: str
) -> None:
    """A 404 when the stream opens: the SDK's exception, one ERROR span."""
    kwargs = {**KWARGS, "model": "missing-claude"}

    def open_sync() -> None:
        with sync_client(server) as client:
            if how == "create":
                client.messages.create(**kwargs, stream=True)
                return
            with client.messages.stream(**kwargs):
                pytest.fail("the block must not run")

    async def open_async() -> None:
        async with async_client(server) as client:
            if how == "create":
                await client.messages.create(**kwargs, stream=True)
                return
            async with client.messages.stream(**kwargs):
                pytest.fail("the block must not run")

    with pytest.raises(anthropic.NotFoundError) as info:
        open_sync() if mode == "sync" else asyncio.run(open_async())
    exc = info.value
    assert type(exc) is anthropic.NotFoundError
    assert exc.status_code == 404
    span = only_span(traced)
    assert span["name"] == "chat missing-claude"
    assert span["status"] == {"code": "ERROR", "message": f"NotFoundError: {exc}"}
    assert span["attributes"]["http.response.status_code"] == 404
    assert span["attributes"]["error.type"] == "NotFoundError"
    (event,) = span["events"]
    assert event["attributes"]["exception.type"] == "NotFoundError"
    assert "token_usage" not in span


# -- switched off ----------------------------------------------------------------------


def test_autolog_disable_records_nothing(traced: Capture, server: FakeProviderServer) -> None:
    tracekit.anthropic.autolog(disable=True)
    with sync_client(server) as client:
        assert client.messages.create(**KWARGS).content[0].text == ANSWER
        stream = client.messages.create(**KWARGS, stream=True)
        assert type(stream) is anthropic.Stream  # not even proxied
        assert len(list(stream)) == RAW_EVENTS
        with client.messages.stream(**KWARGS) as helper:
            assert type(helper) is MessageStream
            assert helper.get_final_text() == ANSWER
        client.messages.count_tokens(model=MODEL, messages=MESSAGES)
        client.beta.messages.create(**KWARGS)

    async def main() -> None:
        async with async_client(server) as client:
            await client.messages.create(**KWARGS)
            async with client.messages.stream(**KWARGS) as helper:
                await helper.until_done()

    asyncio.run(main())
    tracekit.anthropic.autolog(log_traces=False)
    with sync_client(server) as client:
        client.messages.create(**KWARGS)
    assert traced.traces == []

    tracekit.anthropic.autolog()  # on again, without patching twice
    with sync_client(server) as client:
        client.messages.create(**KWARGS)
    assert len(traced.traces) == 1
    assert len(traced.traces[0]["spans"]) == 1


# -- concurrency -----------------------------------------------------------------------


def test_100_concurrent_async_streams_under_one_parent(
    traced_realtime: Capture, server: FakeProviderServer
) -> None:
    async def ask(client: Any, i: int) -> str:
        messages = [{"role": "user", "content": f"question {i}"}]
        if i % 2:
            async with client.messages.stream(
                model=MODEL, max_tokens=64, messages=messages
            ) as stream:
                return "".join([text async for text in stream.text_stream])
        stream = await client.messages.create(
            model=MODEL, max_tokens=64, messages=messages, stream=True
        )
        parts = []
        async for event in stream:
            if event.type == "content_block_delta":
                parts.append(event.delta.text)
        return "".join(parts)

    @tracekit.trace
    async def fan_out() -> list[str]:
        async with async_client(server) as client:
            return await asyncio.gather(*(ask(client, i) for i in range(100)))

    assert asyncio.run(fan_out()) == [f"You asked: question {i}" for i in range(100)]

    (record,) = traced_realtime.traces
    (root,) = [s for s in record["spans"] if s["name"] == "fan_out"]
    children = [s for s in record["spans"] if s["parent_id"] == root["span_id"]]
    assert len(record["spans"]) == 101
    assert len(children) == 100
    seen = set()
    for span in children:
        i = int(span["inputs"]["messages"][0]["content"].split()[-1])
        seen.add(i)
        assert span["name"] == f"chat {MODEL}"
        assert span["status"] == {"code": "OK", "message": ""}
        assert span["end_time_ns"] is not None
        assert span["attributes"]["tracekit.stream"] is True
        assert "tracekit.stream.ended_by" not in span["attributes"]
        assert ("stream" in span["inputs"]) is (i % 2 == 0)
        assert text_of(span) == f"You asked: question {i}"
        assert span["token_usage"]["output_tokens"] == 4
    assert seen == set(range(100))
    assert record["token_usage"]["output_tokens"] == 400


# -- secrets ---------------------------------------------------------------------------


def test_api_keys_and_auth_headers_are_never_recorded(
    traced: Capture, server: FakeProviderServer
) -> None:
    key = "sk-ant-api03-SECRET-KEY-123"
    bearer = "Bearer SECRET-TOKEN-456"
    options = {"api_key": key, "default_headers": {"Authorization": bearer}}
    extra = {"x-api-key": key, "authorization": bearer}
    with sync_client(server, **options) as client:
        client.messages.create(**KWARGS, extra_headers=extra)
        list(client.messages.create(**KWARGS, stream=True, extra_headers=extra))
        with client.messages.stream(**KWARGS, extra_headers=extra) as stream:
            stream.until_done()
        client.messages.count_tokens(model=MODEL, messages=MESSAGES, extra_headers=extra)
        with pytest.raises(anthropic.NotFoundError):
            client.messages.create(**{**KWARGS, "model": "missing-x"}, extra_headers=extra)
        client.messages.with_raw_response.create(**KWARGS, extra_headers=extra).parse()

    async def main() -> None:
        async with async_client(server, **options) as client:
            await client.messages.create(**KWARGS, extra_headers=extra)

    asyncio.run(main())
    # The key really went over the wire (so its absence below means something).
    sent = server.requests[-1]["headers"]
    assert {k.lower(): v for k, v in sent.items()}["x-api-key"] == key

    records = traced.traces
    assert len(records) == 7
    dumped = json.dumps(records).lower()
    for secret in (key, bearer, "secret-key", "secret-token", "x-api-key", "authorization"):
        assert secret.lower() not in dumped, secret
