"""OpenAI streams end their span exactly once, whatever the caller does.

Against `tracekit.testing.FakeProviderServer` (real loopback sockets, the real
SDK): `chat.completions.create(stream=True)`, the `chat.completions.stream()`
helper, `responses.create(stream=True)` and the `responses.stream()` helper,
sync and async, each exited by exhaustion, `break` inside `with`, `close()`,
being dropped after a partial read (garbage collection), an error mid-stream
(the server hangs up) and being dropped unread. Also: the caller gets the
SDK's own objects, one call makes one span, the span is not current between
chunks, and stream spans nest under the caller's span.
"""

from __future__ import annotations

import asyncio
import gc
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

openai = pytest.importorskip("openai")

from openai.lib.streaming.chat import (  # noqa: E402
    AsyncChatCompletionStream,
    AsyncChatCompletionStreamManager,
    ChatCompletionStream,
    ChatCompletionStreamManager,
)
from openai.lib.streaming.responses import (  # noqa: E402
    AsyncResponseStream,
    AsyncResponseStreamManager,
    ResponseStream,
    ResponseStreamManager,
)

import tracekit  # noqa: E402
import tracekit.openai  # noqa: E402
from tracekit import _api  # noqa: E402
from tracekit._fake_server import FakeProviderServer  # noqa: E402
from tracekit.integrations import _streams  # noqa: E402
from tracekit.integrations.openai import integration  # noqa: E402
from tracekit.testing import Capture  # noqa: E402

MODEL = "fake-mini"
QUESTION = "hello there"
ANSWER = "You asked: hello there"
MESSAGES = [{"role": "user", "content": QUESTION}]

KINDS = ["chat.create", "chat.stream", "responses.create", "responses.stream"]
HELPERS = {"chat.stream", "responses.stream"}
# Raw SSE chunks the fake server sends for ANSWER (4 words):
# chat: role, 4 content deltas, finish, usage; Responses: created, item added,
# part added, 4 text deltas, text done, part done, item done, completed.
FULL = {"chat": 7, "responses": 11}
KEEP = 2  # chunks a dropping server sends before it hangs up


def family(kind: str) -> str:
    return kind.split(".")[0]


# -- fixtures --------------------------------------------------------------------------


@pytest.fixture
def traced(captured: Capture) -> Iterator[Capture]:
    """OpenAI autolog on for one test, really unpatched afterwards."""
    tracekit.openai.autolog()
    try:
        yield captured
    finally:
        integration.revert()


@pytest.fixture(scope="module")
def server() -> Iterator[FakeProviderServer]:
    # One per module: stopping a server waits for its 0.5 s poll interval.
    with FakeProviderServer() as fake:
        yield fake


class DroppingServer(FakeProviderServer):
    """Sends the first `keep` SSE events of a streamed answer, then hangs up mid-response."""

    def __init__(self, keep: int) -> None:
        super().__init__()
        self.drop_after = keep


@pytest.fixture(scope="module")
def dropping() -> Iterator[FakeProviderServer]:
    with DroppingServer(KEEP) as fake:
        yield fake


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


def sync_client(server: FakeProviderServer) -> Any:
    return openai.OpenAI(api_key="test", base_url=server.base_url + "/v1", max_retries=0)


def async_client(server: FakeProviderServer) -> Any:
    return openai.AsyncOpenAI(api_key="test", base_url=server.base_url + "/v1", max_retries=0)


# -- opening a stream of each kind -----------------------------------------------------


def open_sync(client: Any, kind: str) -> Any:
    """A stream (create) or a stream manager (helpers)."""
    usage = {"include_usage": True}
    if kind == "chat.create":
        return client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options=usage
        )
    if kind == "chat.stream":
        return client.chat.completions.stream(model=MODEL, messages=MESSAGES, stream_options=usage)
    if kind == "responses.create":
        return client.responses.create(model=MODEL, input=QUESTION, stream=True)
    assert kind == "responses.stream"
    return client.responses.stream(model=MODEL, input=QUESTION)


async def open_async(client: Any, kind: str) -> Any:
    usage = {"include_usage": True}
    if kind == "chat.create":
        return await client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options=usage
        )
    if kind == "chat.stream":
        return client.chat.completions.stream(model=MODEL, messages=MESSAGES, stream_options=usage)
    if kind == "responses.create":
        return await client.responses.create(model=MODEL, input=QUESTION, stream=True)
    assert kind == "responses.stream"
    return client.responses.stream(model=MODEL, input=QUESTION)


def read_all_sync(client: Any, kind: str, seen: list[Any]) -> None:
    if kind in HELPERS:
        with open_sync(client, kind) as stream:
            seen.extend(stream)
    else:
        seen.extend(open_sync(client, kind))


async def read_all_async(client: Any, kind: str, seen: list[Any]) -> None:
    if kind in HELPERS:
        async with await open_async(client, kind) as stream:
            async for item in stream:
                seen.append(item)
    else:
        async for item in await open_async(client, kind):
            seen.append(item)


# -- the exits, sync -------------------------------------------------------------------


@dataclass
class Outcome:
    """What the span must show after an exit."""

    ended_by: str | None  # the `tracekit.stream.ended_by` attribute (None: absent)
    chunks: int  # raw chunks the SDK read
    error: BaseException | None = None  # what the caller got


def nothing_recorded_yet(captured: Capture) -> None:
    assert captured.traces == [], "the span ended before the stream was done with"


def sync_exhausted(client: Any, kind: str, captured: Capture) -> Outcome:
    if kind in HELPERS:
        with open_sync(client, kind) as stream:
            events = list(stream)
            assert events
    else:
        stream = open_sync(client, kind)
        items = list(stream)
        assert len(items) == FULL[family(kind)]
    return Outcome(None, FULL[family(kind)])


def sync_break_in_with(client: Any, kind: str, captured: Capture) -> Outcome:
    with open_sync(client, kind) as stream:
        for _ in stream:
            break
        nothing_recorded_yet(captured)
    return Outcome("context_exit", 1)


def sync_close(client: Any, kind: str, captured: Capture) -> Outcome:
    if kind in HELPERS:
        with open_sync(client, kind) as stream:
            next(stream)
            stream.close()
        return Outcome("context_exit", 1)
    stream = open_sync(client, kind)
    next(stream)
    nothing_recorded_yet(captured)
    stream.close()
    stream.close()  # twice: still one end
    return Outcome("close", 1)


def sync_dropped_partly_read(client: Any, kind: str, captured: Capture) -> Outcome:
    if kind in HELPERS:
        manager = open_sync(client, kind)
        stream = manager.__enter__()
        next(stream)
        nothing_recorded_yet(captured)
        del manager, stream
    else:
        stream = open_sync(client, kind)
        next(stream)
        nothing_recorded_yet(captured)
        del stream
    gc.collect()
    return Outcome("garbage_collected", 1)


def sync_error_mid_stream(client: Any, kind: str, captured: Capture) -> Outcome:
    seen: list[Any] = []
    with pytest.raises(Exception) as info:  # noqa: PT011 - whatever the SDK raises
        read_all_sync(client, kind, seen)
    assert seen
    assert not type(info.value).__module__.startswith("tracekit"), info.value
    return Outcome(None, KEEP, info.value)


def sync_dropped_unread(client: Any, kind: str, captured: Capture) -> Outcome:
    if kind in HELPERS:
        with open_sync(client, kind):
            pass
        return Outcome("context_exit", 0)
    stream = open_sync(client, kind)
    nothing_recorded_yet(captured)
    del stream
    gc.collect()
    return Outcome("garbage_collected", 0)


# -- the exits, async ------------------------------------------------------------------


async def async_exhausted(client: Any, kind: str, captured: Capture) -> Outcome:
    if kind in HELPERS:
        async with await open_async(client, kind) as stream:
            events = [event async for event in stream]
            assert events
    else:
        stream = await open_async(client, kind)
        items = [item async for item in stream]
        assert len(items) == FULL[family(kind)]
    return Outcome(None, FULL[family(kind)])


async def async_break_in_with(client: Any, kind: str, captured: Capture) -> Outcome:
    async with await open_async(client, kind) as stream:
        async for _ in stream:
            break
        nothing_recorded_yet(captured)
    return Outcome("context_exit", 1)


async def async_close(client: Any, kind: str, captured: Capture) -> Outcome:
    if kind in HELPERS:
        async with await open_async(client, kind) as stream:
            await stream.__anext__()
            await stream.close()
        return Outcome("context_exit", 1)
    stream = await open_async(client, kind)
    await stream.__anext__()
    nothing_recorded_yet(captured)
    await stream.close()
    await stream.close()
    return Outcome("close", 1)


async def async_dropped_partly_read(client: Any, kind: str, captured: Capture) -> Outcome:
    if kind in HELPERS:
        manager = await open_async(client, kind)
        stream = await manager.__aenter__()
        await stream.__anext__()
        nothing_recorded_yet(captured)
        del manager, stream
    else:
        stream = await open_async(client, kind)
        await stream.__anext__()
        nothing_recorded_yet(captured)
        del stream
    gc.collect()
    return Outcome("garbage_collected", 1)


async def async_error_mid_stream(client: Any, kind: str, captured: Capture) -> Outcome:
    seen: list[Any] = []
    with pytest.raises(Exception) as info:  # noqa: PT011 - whatever the SDK raises
        await read_all_async(client, kind, seen)
    assert seen
    assert not type(info.value).__module__.startswith("tracekit"), info.value
    return Outcome(None, KEEP, info.value)


async def async_dropped_unread(client: Any, kind: str, captured: Capture) -> Outcome:
    if kind in HELPERS:
        async with await open_async(client, kind):
            pass
        return Outcome("context_exit", 0)
    stream = await open_async(client, kind)
    nothing_recorded_yet(captured)
    del stream
    gc.collect()
    return Outcome("garbage_collected", 0)


SYNC_EXITS: dict[str, Callable[..., Outcome]] = {
    "exhausted": sync_exhausted,
    "break_in_with": sync_break_in_with,
    "close": sync_close,
    "dropped_partly_read": sync_dropped_partly_read,
    "error_mid_stream": sync_error_mid_stream,
    "dropped_unread": sync_dropped_unread,
}
PARTIAL = {"break_in_with", "close"}
ASYNC_EXITS: dict[str, Callable[..., Any]] = {
    "exhausted": async_exhausted,
    "break_in_with": async_break_in_with,
    "close": async_close,
    "dropped_partly_read": async_dropped_partly_read,
    "error_mid_stream": async_error_mid_stream,
    "dropped_unread": async_dropped_unread,
}


def check_stream_span(
    captured: Capture, finishes: Counter[str], kind: str, outcome: Outcome, partial: bool
) -> dict[str, Any]:
    traces = captured.traces
    assert len(traces) == 1, [t["name"] for t in traces]
    (span,) = traces[0]["spans"]  # one call, one span (helpers included)
    assert span["name"] == f"chat {MODEL}"
    assert span["span_type"] == "CHAT_MODEL"
    assert finishes == {f"chat {MODEL}": 1}, "the span must end exactly once"
    assert span["end_time_ns"] is not None
    attributes = span["attributes"]
    assert attributes["tracekit.stream"] is True
    assert attributes.get("tracekit.stream.ended_by") == outcome.ended_by, attributes
    if partial and kind in HELPERS:
        # A helper may read ahead of the events it hands out, never to the end.
        assert 1 <= attributes["tracekit.stream.chunks"] < FULL[family(kind)], attributes
    else:
        assert attributes["tracekit.stream.chunks"] == outcome.chunks, attributes
    if attributes["tracekit.stream.chunks"]:
        assert attributes["tracekit.time_to_first_chunk_s"] > 0
    else:
        assert "tracekit.time_to_first_chunk_s" not in attributes
    assert "tracekit.force_ended" not in attributes
    exc = outcome.error
    if exc is not None:
        assert span["status"]["code"] == "ERROR"
        (event,) = span["events"]
        assert event["name"] == "exception"
        assert event["attributes"]["exception.type"] == type(exc).__qualname__
        assert event["attributes"]["exception.message"] == str(exc)
    else:
        assert span["status"] == {"code": "OK", "message": ""}
        assert span["events"] == []
    return span


def check_complete_outputs(span: dict[str, Any], kind: str) -> None:
    if family(kind) == "chat":
        assert span["outputs"]["choices"][0]["message"]["content"] == ANSWER
        assert span["token_usage"]["output_tokens"] == 4
    else:
        assert span["outputs"]["output"][0]["content"][0]["text"] == ANSWER
        assert span["token_usage"] == {
            "input_tokens": 2,
            "output_tokens": 4,
            "total_tokens": 6,
            "cache_read_input_tokens": 0,
            "reasoning_tokens": 0,
        }


@pytest.mark.parametrize("how", list(SYNC_EXITS))
@pytest.mark.parametrize("kind", KINDS)
def test_sync_stream_exit_ends_span_once(
    traced: Capture,
    finishes: Counter[str],
    server: FakeProviderServer,
    dropping: FakeProviderServer,
    kind: str,
    how: str,
) -> None:
    fake = dropping if how == "error_mid_stream" else server
    with sync_client(fake) as client:
        outcome = SYNC_EXITS[how](client, kind, traced)
    span = check_stream_span(traced, finishes, kind, outcome, partial=how in PARTIAL)
    if how == "exhausted":
        check_complete_outputs(span, kind)
    gc.collect()  # a later collection changes nothing
    assert finishes == {f"chat {MODEL}": 1}


@pytest.mark.parametrize("how", list(ASYNC_EXITS))
@pytest.mark.parametrize("kind", KINDS)
def test_async_stream_exit_ends_span_once(
    traced: Capture,
    finishes: Counter[str],
    server: FakeProviderServer,
    dropping: FakeProviderServer,
    kind: str,
    how: str,
) -> None:
    fake = dropping if how == "error_mid_stream" else server

    async def main() -> Outcome:
        async with async_client(fake) as client:
            return await ASYNC_EXITS[how](client, kind, traced)

    outcome = asyncio.run(main())
    span = check_stream_span(traced, finishes, kind, outcome, partial=how in PARTIAL)
    if how == "exhausted":
        check_complete_outputs(span, kind)
    gc.collect()
    assert finishes == {f"chat {MODEL}": 1}


# -- the caller's view -----------------------------------------------------------------


def test_sync_streams_are_the_sdk_objects(traced: Capture, server: FakeProviderServer) -> None:
    with sync_client(server) as client:
        stream = open_sync(client, "chat.create")
        assert isinstance(stream, openai.Stream)
        assert stream.response.status_code == 200
        assert stream.response.headers["content-type"] == "text/event-stream"
        chunks = list(stream)
        assert all(isinstance(c, openai.types.chat.ChatCompletionChunk) for c in chunks)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER

        manager = open_sync(client, "chat.stream")
        assert isinstance(manager, ChatCompletionStreamManager)
        with manager as helper:
            assert isinstance(helper, ChatCompletionStream)
            completion = helper.get_final_completion()
        assert completion.choices[0].message.content == ANSWER
        assert completion.usage.completion_tokens == 4

        stream = open_sync(client, "responses.create")
        assert isinstance(stream, openai.Stream)
        assert [e.type for e in stream][-1] == "response.completed"

        manager = open_sync(client, "responses.stream")
        assert isinstance(manager, ResponseStreamManager)
        with manager as helper:
            assert isinstance(helper, ResponseStream)
            response = helper.get_final_response()
        assert response.output_text == ANSWER
    spans = [s for t in traced.traces for s in t["spans"]]
    assert len(spans) == 4  # one per call: the helpers do not add a second
    assert all(s["status"]["code"] == "OK" for s in spans)


def test_async_streams_are_the_sdk_objects(traced: Capture, server: FakeProviderServer) -> None:
    async def main() -> None:
        async with async_client(server) as client:
            stream = await open_async(client, "chat.create")
            assert isinstance(stream, openai.AsyncStream)
            assert stream.response.headers["content-type"] == "text/event-stream"
            async with stream:
                chunks = [c async for c in stream]
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert text == ANSWER

            manager = await open_async(client, "chat.stream")
            assert isinstance(manager, AsyncChatCompletionStreamManager)
            async with manager as helper:
                assert isinstance(helper, AsyncChatCompletionStream)
                completion = await helper.get_final_completion()
            assert completion.choices[0].message.content == ANSWER

            stream = await open_async(client, "responses.create")
            assert isinstance(stream, openai.AsyncStream)
            await stream.close()

            manager = await open_async(client, "responses.stream")
            assert isinstance(manager, AsyncResponseStreamManager)
            async with manager as helper:
                assert isinstance(helper, AsyncResponseStream)
                response = await helper.get_final_response()
            assert response.output_text == ANSWER

    asyncio.run(main())
    spans = [s for t in traced.traces for s in t["spans"]]
    assert len(spans) == 4
    assert [s["attributes"].get("tracekit.stream.ended_by") for s in spans] == [
        None,
        None,
        "close",
        None,
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_stream_span_is_not_current_between_chunks(
    traced: Capture, server: FakeProviderServer, kind: str
) -> None:
    @tracekit.trace
    def caller() -> int:
        parent = tracekit.get_current_span()
        seen = 0
        with sync_client(server) as client:
            opened = open_sync(client, kind)
            assert tracekit.get_current_span() is parent
            with opened as stream:
                assert tracekit.get_current_span() is parent
                for _ in stream:
                    assert tracekit.get_current_span() is parent
                    seen += 1
            assert tracekit.get_current_span() is parent
        return seen

    assert caller() > 0
    (trace,) = traced.traces
    assert len(trace["spans"]) == 2
    root, llm = sorted(trace["spans"], key=lambda s: s["parent_id"] is not None)
    assert root["name"] == "caller"
    assert llm["name"] == f"chat {MODEL}"
    assert llm["parent_id"] == root["span_id"]
    assert llm["attributes"]["tracekit.stream.chunks"] == FULL[family(kind)]
    assert llm["attributes"]["tracekit.time_to_first_chunk_s"] > 0
    assert llm["start_time_ns"] >= root["start_time_ns"]
    assert llm["end_time_ns"] <= root["end_time_ns"]


@pytest.mark.parametrize("kind", KINDS)
def test_async_stream_nests_under_trace_parent(
    traced: Capture, server: FakeProviderServer, kind: str
) -> None:
    @tracekit.trace
    async def caller() -> None:
        parent = tracekit.get_current_span()
        async with async_client(server) as client:
            async with await open_async(client, kind) as stream:
                async for _ in stream:
                    assert tracekit.get_current_span() is parent
            assert tracekit.get_current_span() is parent

    asyncio.run(caller())
    (trace,) = traced.traces
    root, llm = sorted(trace["spans"], key=lambda s: s["parent_id"] is not None)
    assert root["name"] == "caller"
    assert llm["parent_id"] == root["span_id"]
    assert llm["attributes"]["tracekit.stream.chunks"] == FULL[family(kind)]
    assert trace["token_usage"] == llm["token_usage"]


def test_stream_without_include_usage_records_no_usage(
    traced: Capture, server: FakeProviderServer
) -> None:
    with sync_client(server) as client:
        chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    assert len(chunks) == 6  # no usage chunk: none was asked for
    assert server.requests[-1]["body"] == {"model": MODEL, "messages": MESSAGES, "stream": True}
    (trace,) = traced.traces
    (span,) = trace["spans"]
    assert "token_usage" not in span
    assert "token_usage" not in trace
    assert span["outputs"]["choices"][0]["message"]["content"] == ANSWER


@pytest.mark.parametrize("kind", KINDS)
def test_sync_stream_request_error_is_one_error_span(
    traced: Capture, finishes: Counter[str], server: FakeProviderServer, kind: str
) -> None:
    def request(client: Any) -> None:
        if kind == "chat.create":
            client.chat.completions.create(model="missing-x", messages=MESSAGES, stream=True)
        elif kind == "chat.stream":
            with client.chat.completions.stream(model="missing-x", messages=MESSAGES):
                pass
        elif kind == "responses.create":
            client.responses.create(model="missing-x", input=QUESTION, stream=True)
        else:
            with client.responses.stream(model="missing-x", input=QUESTION):
                pass

    with sync_client(server) as client, pytest.raises(openai.NotFoundError) as info:
        request(client)
    assert type(info.value) is openai.NotFoundError
    (trace,) = traced.traces
    (span,) = trace["spans"]
    assert span["name"] == "chat missing-x"
    assert span["status"] == {"code": "ERROR", "message": f"NotFoundError: {info.value}"}
    assert [e["name"] for e in span["events"]] == ["exception"]
    assert finishes == {"chat missing-x": 1}


@pytest.mark.parametrize("kind", KINDS)
def test_async_stream_request_error_is_one_error_span(
    traced: Capture, finishes: Counter[str], server: FakeProviderServer, kind: str
) -> None:
    async def request() -> None:
        async with async_client(server) as client:
            if kind == "chat.create":
                await client.chat.completions.create(
                    model="missing-x", messages=MESSAGES, stream=True
                )
            elif kind == "chat.stream":
                async with client.chat.completions.stream(model="missing-x", messages=MESSAGES):
                    pass
            elif kind == "responses.create":
                await client.responses.create(model="missing-x", input=QUESTION, stream=True)
            else:
                async with client.responses.stream(model="missing-x", input=QUESTION):
                    pass

    with pytest.raises(openai.NotFoundError) as info:
        asyncio.run(request())
    (trace,) = traced.traces
    (span,) = trace["spans"]
    assert span["status"] == {"code": "ERROR", "message": f"NotFoundError: {info.value}"}
    assert finishes == {"chat missing-x": 1}


def test_stream_read_after_its_parent_returned_stays_in_the_trace(
    traced: Capture, server: FakeProviderServer
) -> None:
    @tracekit.trace
    def start_answer(client: Any) -> Any:
        return client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)

    with sync_client(server) as client:
        stream = start_answer(client)
        assert traced.traces == []  # the stream's span is still open: the trace waits
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == ANSWER
    (trace,) = traced.traces
    root, llm = sorted(trace["spans"], key=lambda s: s["parent_id"] is not None)
    assert root["name"] == "start_answer"
    assert llm["parent_id"] == root["span_id"]
    assert llm["outputs"]["choices"][0]["message"]["content"] == ANSWER
    assert "tracekit.force_ended" not in llm["attributes"]
