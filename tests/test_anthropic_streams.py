"""Anthropic: what only Anthropic's integration has.

The behaviours every provider stream owes (every exit of `messages.create(stream=True)`
and of the `messages.stream()` helper, including the helper's own: `text_stream`,
`get_final_message()`, `get_final_text()`, `until_done()`, an exception in the
block; the span not current between chunks, nesting, errors on open, disable,
revert, secrets, concurrent async streams) are in tests/contract. Here, against
`tracekit.testing.FakeProviderServer` (real loopback sockets, the real SDK): a
helper's record does not change after its span ended, the caller gets the SDK's
own objects, `count_tokens`, `beta.messages` and `with_raw_response`.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

anthropic = pytest.importorskip("anthropic")

from anthropic.lib.streaming import (  # noqa: E402
    AsyncMessageStream,
    AsyncMessageStreamManager,
    MessageStream,
    MessageStreamManager,
)
from tests.contract.adapters import ANSWER, QUESTION, AnthropicMessages  # noqa: E402
from tests.contract.anthropic_server import REQUEST_ID, IdServer  # noqa: E402
from tests.trace_checks import only_span  # noqa: E402

import tracekit  # noqa: E402
from tracekit._fake_server import FakeProviderServer  # noqa: E402
from tracekit.testing import Capture  # noqa: E402

SERVER = IdServer  # the `server` fixture runs it (tests/conftest.py)

PROVIDER = "anthropic"  # for the `traced` fixture
# The contract suite's adapter: its client, its fake answer's usage and text.
MESSAGES_ADAPTER = AnthropicMessages(helper=False)
MODEL = MESSAGES_ADAPTER.model
MESSAGES = [{"role": "user", "content": QUESTION}]
KWARGS: dict[str, Any] = MESSAGES_ADAPTER.kwargs(QUESTION, MODEL, {})
USAGE = MESSAGES_ADAPTER.usage  # the fake server's figures for MESSAGES
RAW_EVENTS = MESSAGES_ADAPTER.full_chunks  # raw SSE events for ANSWER
text_of = MESSAGES_ADAPTER.text_of


def sync_client(server: FakeProviderServer) -> Any:
    return MESSAGES_ADAPTER.sync_client(server, "test")


def async_client(server: FakeProviderServer) -> Any:
    return MESSAGES_ADAPTER.async_client(server, "test")


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


def test_count_tokens_nests_under_the_callers_span_and_adds_no_usage(
    traced: Capture, server: FakeProviderServer
) -> None:
    @tracekit.trace
    def agent() -> str:
        with sync_client(server) as client:
            text = client.messages.create(**KWARGS).content[0].text
            client.messages.count_tokens(model=MODEL, messages=MESSAGES)
        return str(text)

    assert agent() == ANSWER
    (record,) = traced.traces
    root, *children = record["spans"]
    assert root["name"] == "agent"
    assert [s["name"] for s in children] == [f"chat {MODEL}", f"count_tokens {MODEL}"]
    assert all(s["parent_id"] == root["span_id"] for s in children)
    # The trace has the chat call's usage; counting tokens consumes none.
    assert record["token_usage"] == USAGE


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
