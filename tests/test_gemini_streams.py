"""Gemini (google-genai): what only Gemini's integration has.

The behaviours every provider stream owes (every exit of
`models.generate_content_stream`, sync and on `client.aio`, including one dropped
before it was ever iterated; the span not current between chunks, nesting under
`@tracekit.trace`, a 404 on the first chunk, `autolog(disable=True)`, revert,
API keys on the client and in per-call `http_options`, 50 concurrent `client.aio`
calls) are in tests/contract. Here, against the fake server with Gemini's extra
routes (tests/contract/gemini_server.py; real loopback sockets, the real SDK):
`models.generate_content`, the SDK's own stream objects, thought and
function-call parts in streams, `chats` (`send_message` and
`send_message_stream`, one span per message), `embed_content`, `count_tokens`
and a pydantic `response_schema`.

The fake server answers "You asked: <question>" (one SSE chunk per word) with
cumulative usageMetadata; for QUESTION that is 2 prompt tokens and 4 answer
tokens.
"""

from __future__ import annotations

import asyncio
import json
import types as pytypes
from collections import Counter
from typing import Any

import pytest

genai = pytest.importorskip("google.genai")

import pydantic  # noqa: E402
from google.genai import errors, types  # noqa: E402
from tests.contract.adapters import GeminiStream  # noqa: E402
from tests.contract.gemini_server import EMBED_DIMS, GeminiServer  # noqa: E402
from tests.trace_checks import only_span  # noqa: E402

import tracekit  # noqa: E402
from tracekit._fake_server import FakeProviderServer  # noqa: E402
from tracekit.testing import Capture  # noqa: E402

SERVER = GeminiServer  # the `server` fixture runs it (tests/conftest.py)

PROVIDER = "gemini"  # for the `traced` fixture
MODEL = "fake-gemini"
SPAN_NAME = f"generate_content {MODEL}"
QUESTION = "hello there"
ANSWER = "You asked: hello there"
WORDS = ["You ", "asked: ", "hello ", "there"]  # the streamed chunks of ANSWER
USAGE = {"input_tokens": 2, "output_tokens": 4, "total_tokens": 6}


def parts_of(span: dict[str, Any]) -> list[dict[str, Any]]:
    return span["outputs"]["candidates"][0]["content"]["parts"]


def text_of(span: dict[str, Any]) -> str:
    return "".join(p.get("text") or "" for p in parts_of(span) if not p.get("thought"))


# -- generate_content ------------------------------------------------------------------


def test_generate_content(traced: Capture, server: FakeProviderServer, finishes: Counter[str]):
    client = GeminiStream.client(
        server
    )  # kept: a collected genai.Client closes its connection pool
    response = client.models.generate_content(model=MODEL, contents=QUESTION)
    assert isinstance(response, types.GenerateContentResponse)
    assert response.text == ANSWER

    span = only_span(traced)
    assert finishes == {SPAN_NAME: 1}
    assert span["name"] == SPAN_NAME
    assert span["span_type"] == "CHAT_MODEL"
    assert span["status"] == {"code": "OK", "message": ""}
    assert span["parent_id"] is None
    assert span["inputs"] == {"model": MODEL, "contents": QUESTION}
    assert text_of(span) == ANSWER
    assert span["outputs"]["candidates"][0]["finish_reason"] == "STOP"
    assert span["token_usage"] == USAGE
    attributes = span["attributes"]
    assert attributes["gen_ai.provider.name"] == "gcp.gemini"
    assert attributes["gen_ai.operation.name"] == "generate_content"
    assert attributes["gen_ai.request.model"] == MODEL
    assert attributes["gen_ai.response.model"] == MODEL
    assert attributes["gen_ai.response.id"] == "fake-response"
    assert attributes["gen_ai.response.finish_reasons"] == ["STOP"]
    assert attributes["server.address"] == "127.0.0.1"
    assert attributes["server.port"] == server.server_address[1]
    assert "tracekit.stream" not in attributes


def test_request_parameters_become_attributes(traced: Capture, server: FakeProviderServer):
    config = types.GenerateContentConfig(
        temperature=0.2, top_p=0.9, top_k=20, max_output_tokens=64, stop_sequences=["\n\n"], seed=7
    )
    client = GeminiStream.client(server)
    client.models.generate_content(model=f"models/{MODEL}", contents=QUESTION, config=config)
    span = only_span(traced)
    assert span["name"] == SPAN_NAME  # "models/" is not part of the model's name
    attributes = span["attributes"]
    assert attributes["gen_ai.request.model"] == MODEL
    assert attributes["gen_ai.request.temperature"] == 0.2
    assert attributes["gen_ai.request.top_p"] == 0.9
    assert attributes["gen_ai.request.top_k"] == 20
    assert attributes["gen_ai.request.max_tokens"] == 64
    assert attributes["gen_ai.request.stop_sequences"] == ["\n\n"]
    assert attributes["gen_ai.request.seed"] == 7
    assert span["inputs"]["config"]["temperature"] == 0.2


def test_aio_generate_content(traced: Capture, server: FakeProviderServer, finishes: Counter[str]):
    client = GeminiStream.client(server)

    async def main() -> Any:
        return await client.aio.models.generate_content(model=MODEL, contents=QUESTION)

    assert asyncio.run(main()).text == ANSWER
    span = only_span(traced)
    assert finishes == {SPAN_NAME: 1}
    assert span["name"] == SPAN_NAME
    assert span["status"]["code"] == "OK"
    assert span["token_usage"] == USAGE
    assert text_of(span) == ANSWER
    assert span["attributes"]["gen_ai.provider.name"] == "gcp.gemini"


def test_generate_content_error_reaches_the_caller(traced: Capture, server: FakeProviderServer):
    client = GeminiStream.client(server)
    with pytest.raises(errors.ClientError) as info:
        client.models.generate_content(model="missing-model", contents=QUESTION)
    assert type(info.value) is errors.ClientError
    span = only_span(traced)
    assert span["status"]["code"] == "ERROR"
    assert span["attributes"]["http.response.status_code"] == 404
    assert span["attributes"]["error.type"] == "ClientError"
    assert [e["name"] for e in span["events"]] == ["exception"]


# -- generate_content_stream ----------------------------------------------------------


def test_streams_are_the_sdks_own_objects(traced: Capture, server: FakeProviderServer):
    client = GeminiStream.client(server)
    stream = client.models.generate_content_stream(model=MODEL, contents=QUESTION)
    assert isinstance(stream, pytypes.GeneratorType)
    chunks = list(stream)
    assert [c.text for c in chunks] == WORDS
    assert all(isinstance(c, types.GenerateContentResponse) for c in chunks)

    async def main() -> list[Any]:
        stream = await client.aio.models.generate_content_stream(model=MODEL, contents=QUESTION)
        assert isinstance(stream, pytypes.AsyncGeneratorType)
        return [chunk async for chunk in stream]

    assert [c.text for c in asyncio.run(main())] == WORDS
    assert [len(t["spans"]) for t in traced.traces] == [1, 1]


def test_stream_keeps_thought_parts_separate(traced: Capture, server: FakeProviderServer):
    client = GeminiStream.client(server)
    chunks = list(client.models.generate_content_stream(model="fake-thinker", contents=QUESTION))
    assert len(chunks) == 4
    span = only_span(traced)
    assert span["name"] == "generate_content fake-thinker"
    assert parts_of(span) == [
        {"text": "Let me think harder.", "thought": True},
        {"text": "The answer is 42."},
    ]
    assert text_of(span) == "The answer is 42."
    assert span["outputs"]["candidates"][0]["finish_reason"] == "STOP"
    # prompt 2; candidates 5 + thoughts 4; total 11 (last chunk's, not a sum)
    assert span["token_usage"] == {
        "input_tokens": 2,
        "output_tokens": 9,
        "total_tokens": 11,
        "reasoning_tokens": 4,
    }


def test_stream_records_function_call_parts(traced: Capture, server: FakeProviderServer):
    client = GeminiStream.client(server)
    chunks = list(client.models.generate_content_stream(model="fake-caller", contents=QUESTION))
    assert chunks[-1].function_calls[0].name == "lookup"
    (record,) = traced.traces
    json.dumps(record)  # the thought signature's bytes too
    (span,) = record["spans"]
    parts = parts_of(span)
    assert parts[0] == {"text": "Looking it up."}
    assert parts[1]["function_call"] == {"name": "lookup", "args": {"q": "hello there"}}
    assert len(parts) == 2
    assert span["outputs"]["candidates"][0]["finish_reason"] == "STOP"
    assert span["token_usage"] == {"input_tokens": 2, "output_tokens": 9, "total_tokens": 11}


# -- chats -----------------------------------------------------------------------------


def chat_spans(captured: Capture, n: int) -> list[dict[str, Any]]:
    (record,) = captured.traces
    root, *children = record["spans"]
    assert root["name"] == "conversation"
    assert len(children) == n
    for span in children:
        assert span["parent_id"] == root["span_id"]
        assert span["name"] == SPAN_NAME
        assert span["span_type"] == "CHAT_MODEL"
        assert span["status"]["code"] == "OK"
    return children


# Second message: prompt = "hello there" (2) + "You asked: hello there" (4) + "and again" (2).
SECOND_USAGE = {"input_tokens": 8, "output_tokens": 4, "total_tokens": 12}


def test_chat_send_message_one_span_per_message(traced: Capture, server: FakeProviderServer):
    client = GeminiStream.client(server)
    chat = client.chats.create(model=MODEL)

    @tracekit.trace(name="conversation")
    def conversation() -> list[str]:
        return [chat.send_message(QUESTION).text, chat.send_message("and again").text]

    assert conversation() == [ANSWER, "You asked: and again"]
    first, second = chat_spans(traced, 2)
    assert first["inputs"]["contents"][-1]["parts"][0]["text"] == QUESTION
    assert text_of(first) == ANSWER
    assert first["token_usage"] == USAGE
    # The second call carries the history: user, model, user.
    assert [c["role"] for c in second["inputs"]["contents"]] == ["user", "model", "user"]
    assert second["inputs"]["contents"][-1]["parts"][0]["text"] == "and again"
    assert text_of(second) == "You asked: and again"
    assert second["token_usage"] == SECOND_USAGE


def test_chat_send_message_stream_one_span_per_message(traced: Capture, server: FakeProviderServer):
    client = GeminiStream.client(server)
    chat = client.chats.create(model=MODEL)

    @tracekit.trace(name="conversation")
    def conversation() -> list[str]:
        return [
            "".join(c.text for c in chat.send_message_stream(QUESTION)),
            "".join(c.text for c in chat.send_message_stream("and again")),
        ]

    assert conversation() == [ANSWER, "You asked: and again"]
    first, second = chat_spans(traced, 2)
    for span in (first, second):
        assert span["attributes"]["tracekit.stream"] is True
        assert span["attributes"]["tracekit.stream.chunks"] == 4
    assert text_of(first) == ANSWER
    assert text_of(second) == "You asked: and again"
    assert first["token_usage"] == USAGE
    assert second["token_usage"] == SECOND_USAGE


def test_aio_chat_send_message_and_stream(traced: Capture, server: FakeProviderServer):
    client = GeminiStream.client(server)
    chat = client.aio.chats.create(model=MODEL)

    @tracekit.trace(name="conversation")
    async def conversation() -> list[str]:
        first = (await chat.send_message(QUESTION)).text
        second = "".join([c.text async for c in await chat.send_message_stream("and again")])
        return [first, second]

    assert asyncio.run(conversation()) == [ANSWER, "You asked: and again"]
    first, second = chat_spans(traced, 2)
    assert "tracekit.stream" not in first["attributes"]
    assert second["attributes"]["tracekit.stream"] is True
    assert first["token_usage"] == USAGE
    assert second["token_usage"] == SECOND_USAGE


# -- embed_content, count_tokens --------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "aio"])
def test_embed_content(traced: Capture, server: FakeProviderServer, mode: str):
    client = GeminiStream.client(server)
    kwargs = {"model": "text-embedding-004", "contents": ["first text", "second text"]}
    if mode == "sync":
        response = client.models.embed_content(**kwargs)
    else:
        response = asyncio.run(client.aio.models.embed_content(**kwargs))
    assert server.requests[-1]["path"].endswith("/models/text-embedding-004:batchEmbedContents")
    assert len(response.embeddings) == 2

    span = only_span(traced)
    assert span["name"] == "embeddings text-embedding-004"
    assert span["span_type"] == "EMBEDDING"
    assert span["status"]["code"] == "OK"
    assert span["inputs"] == kwargs
    assert span["outputs"] == {"count": 2, "dimensions": EMBED_DIMS}
    assert span["attributes"]["gen_ai.operation.name"] == "embeddings"
    assert span["attributes"]["gen_ai.provider.name"] == "gcp.gemini"
    assert span["attributes"]["gen_ai.request.model"] == "text-embedding-004"
    assert "token_usage" not in span  # the Gemini API sends none for embeddings


@pytest.mark.parametrize("mode", ["sync", "aio"])
def test_count_tokens_records_outputs_only(traced: Capture, server: FakeProviderServer, mode: str):
    client = GeminiStream.client(server)
    kwargs = {"model": MODEL, "contents": "one two three four five"}
    if mode == "sync":
        response = client.models.count_tokens(**kwargs)
    else:
        response = asyncio.run(client.aio.models.count_tokens(**kwargs))
    assert response.total_tokens == 5

    (record,) = traced.traces
    (span,) = record["spans"]
    assert span["name"] == f"count_tokens {MODEL}"
    assert span["status"]["code"] == "OK"
    assert span["inputs"] == kwargs
    assert span["outputs"]["total_tokens"] == 5
    # Counting consumes no tokens: nothing to add to the trace's usage.
    assert "token_usage" not in span
    assert "token_usage" not in record
    assert not any(k.startswith("gen_ai.usage.") for k in span["attributes"])


# -- request content -------------------------------------------------------------------


class Recipe(pydantic.BaseModel):
    name: str
    minutes: int


@pytest.mark.parametrize("as_dict", [False, True], ids=["config_object", "config_dict"])
def test_pydantic_response_schema_serializes(
    traced: Capture, server: FakeProviderServer, as_dict: bool
):
    settings = {"response_mime_type": "application/json", "response_schema": Recipe}
    config = settings if as_dict else types.GenerateContentConfig(**settings)
    client = GeminiStream.client(server)
    response = client.models.generate_content(model="fake-json", contents=QUESTION, config=config)
    assert response.parsed == Recipe(name="pancakes", minutes=20)

    (record,) = traced.traces
    json.dumps(record)
    dumped = json.dumps(record)
    assert "[tracekit:" not in dumped  # no placeholder for something that failed
    (span,) = record["spans"]
    assert span["status"]["code"] == "OK"
    recorded = span["inputs"]["config"]
    assert recorded["response_mime_type"] == "application/json"
    assert recorded["response_schema"] == Recipe.model_json_schema()
    assert span["token_usage"] == {"input_tokens": 3, "output_tokens": 5, "total_tokens": 8}


def test_pydantic_response_schema_in_a_stream_and_a_list(
    traced: Capture, server: FakeProviderServer
):
    config = types.GenerateContentConfig(
        response_mime_type="application/json", response_schema=list[Recipe]
    )
    client = GeminiStream.client(server)
    list(client.models.generate_content_stream(model=MODEL, contents=QUESTION, config=config))
    (record,) = traced.traces
    json.dumps(record)
    assert record["spans"][0]["status"]["code"] == "OK"
    assert "Recipe" in json.dumps(record["spans"][0]["inputs"]["config"]["response_schema"])
