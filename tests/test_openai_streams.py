"""OpenAI streams: what only OpenAI's have.

The behaviours every provider stream owes (every exit ends the span once, the
span is not current between chunks, nesting, errors on open, disable, revert,
secrets) are in tests/contract, over the adapters for `chat.completions.create`,
the `chat.completions.stream()` helper, `responses.create` and `responses.stream()`.
Here, against `tracekit.testing.FakeProviderServer` (real loopback sockets, the
real SDK): the caller gets the SDK's own objects and one call makes one span,
a stream without `include_usage` records no usage, and a stream read after its
parent returned stays in the trace.
"""

from __future__ import annotations

import asyncio
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
from tests.contract.adapters import ADAPTERS  # noqa: E402

import tracekit  # noqa: E402
from tracekit._fake_server import FakeProviderServer  # noqa: E402
from tracekit.testing import Capture  # noqa: E402

PROVIDER = "openai"  # for the `traced` fixture
MODEL = "fake-mini"
QUESTION = "hello there"
ANSWER = "You asked: hello there"
MESSAGES = [{"role": "user", "content": QUESTION}]


# The contract suite's adapters open each kind of stream (with include_usage for chat).
CHAT, CHAT_HELPER, RESPONSES, RESPONSES_HELPER = ADAPTERS[:4]


# -- the caller's view -----------------------------------------------------------------


def test_sync_streams_are_the_sdk_objects(traced: Capture, server: FakeProviderServer) -> None:
    with CHAT.sync_client(server, "test") as client:
        stream = CHAT.open_sync(client, QUESTION, MODEL)
        assert isinstance(stream, openai.Stream)
        assert stream.response.status_code == 200
        assert stream.response.headers["content-type"] == "text/event-stream"
        chunks = list(stream)
        assert all(isinstance(c, openai.types.chat.ChatCompletionChunk) for c in chunks)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER

        manager = CHAT_HELPER.open_sync(client, QUESTION, MODEL)
        assert isinstance(manager, ChatCompletionStreamManager)
        with manager as helper:
            assert isinstance(helper, ChatCompletionStream)
            completion = helper.get_final_completion()
        assert completion.choices[0].message.content == ANSWER
        assert completion.usage.completion_tokens == 4

        stream = RESPONSES.open_sync(client, QUESTION, MODEL)
        assert isinstance(stream, openai.Stream)
        assert [e.type for e in stream][-1] == "response.completed"

        manager = RESPONSES_HELPER.open_sync(client, QUESTION, MODEL)
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
        async with CHAT.async_client(server, "test") as client:
            stream = await CHAT.open_async(client, QUESTION, MODEL)
            assert isinstance(stream, openai.AsyncStream)
            assert stream.response.headers["content-type"] == "text/event-stream"
            async with stream:
                chunks = [c async for c in stream]
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert text == ANSWER

            manager = await CHAT_HELPER.open_async(client, QUESTION, MODEL)
            assert isinstance(manager, AsyncChatCompletionStreamManager)
            async with manager as helper:
                assert isinstance(helper, AsyncChatCompletionStream)
                completion = await helper.get_final_completion()
            assert completion.choices[0].message.content == ANSWER

            stream = await RESPONSES.open_async(client, QUESTION, MODEL)
            assert isinstance(stream, openai.AsyncStream)
            await stream.close()

            manager = await RESPONSES_HELPER.open_async(client, QUESTION, MODEL)
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


def test_stream_without_include_usage_records_no_usage(
    traced: Capture, server: FakeProviderServer
) -> None:
    with CHAT.sync_client(server, "test") as client:
        chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    assert len(chunks) == 6  # no usage chunk: none was asked for
    assert server.requests[-1]["body"] == {"model": MODEL, "messages": MESSAGES, "stream": True}
    (trace,) = traced.traces
    (span,) = trace["spans"]
    assert "token_usage" not in span
    assert "token_usage" not in trace
    assert span["outputs"]["choices"][0]["message"]["content"] == ANSWER


def test_stream_read_after_its_parent_returned_stays_in_the_trace(
    traced: Capture, server: FakeProviderServer
) -> None:
    @tracekit.trace
    def start_answer(client: Any) -> Any:
        return client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)

    with CHAT.sync_client(server, "test") as client:
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
