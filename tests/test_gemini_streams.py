"""Gemini (google-genai) against `tracekit.testing.FakeProviderServer`.

Real loopback sockets, the real SDK: `models.generate_content`, every exit of
`models.generate_content_stream` (read to the end, broken out of then closed or
garbage collected, failing mid-stream when the server hangs up, failing on its
first chunk with a 404, dropped before it was ever iterated), the same on
`client.aio` (awaited, then iterated), `chats` (`send_message` and
`send_message_stream`, one span per message), `embed_content`, `count_tokens`,
thought and function-call parts in streams, a pydantic `response_schema`,
secrets, `autolog(disable=True)`, nesting under `@tracekit.trace` and 50
concurrent `client.aio` calls under one parent.

The fake server answers "You asked: <question>" (one SSE chunk per word) with
cumulative usageMetadata; for QUESTION that is 2 prompt tokens and 4 answer
tokens.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import types as pytypes
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

genai = pytest.importorskip("google.genai")

import pydantic  # noqa: E402
from google.genai import errors, types  # noqa: E402

import tracekit  # noqa: E402
import tracekit.gemini  # noqa: E402
from tracekit import _api, _fake_server  # noqa: E402
from tracekit._fake_server import FakeProviderServer  # noqa: E402
from tracekit.integrations import _streams  # noqa: E402
from tracekit.integrations.gemini import integration  # noqa: E402
from tracekit.testing import Capture  # noqa: E402

MODEL = "fake-gemini"
SPAN_NAME = f"generate_content {MODEL}"
QUESTION = "hello there"
ANSWER = "You asked: hello there"
WORDS = ["You ", "asked: ", "hello ", "there"]  # the streamed chunks of ANSWER
USAGE = {"input_tokens": 2, "output_tokens": 4, "total_tokens": 6}
KEEP = 2  # chunks a dropping server sends before it hangs up
EMBED_DIMS = 8
SIGNATURE = base64.b64encode(b"\x00\xffsig\xfe").decode()  # not UTF-8 once decoded


# -- servers ---------------------------------------------------------------------------


def _texts(body: dict[str, Any]) -> list[str]:
    return [
        p.get("text", "")
        for c in body.get("contents") or []
        for p in c.get("parts") or []
        if isinstance(p, dict)
    ]


class _GeminiHandler(_fake_server._Handler):
    """The fake server's handler, plus the Gemini routes it lacks (shapes as the API sends):
    `:batchEmbedContents`, `:embedContent`, `:countTokens`, JSON mode, and streamed
    thought parts (`fake-thinker`) and function calls (`fake-caller`)."""

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        model = path.split("/models/", 1)[-1].split(":", 1)[0]
        custom = (
            path.endswith((":batchEmbedContents", ":embedContent", ":countTokens"))
            or model in ("fake-thinker", "fake-caller")
            or "json" in model
        )
        if not custom:
            super().do_POST()
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.server.record(self.path, dict(self.headers), body)
        if path.endswith(":batchEmbedContents"):
            self._json(200, {"embeddings": [_vector(i) for i in range(len(body["requests"]))]})
        elif path.endswith(":embedContent"):
            self._json(200, {"embedding": _vector(0)})
        elif path.endswith(":countTokens"):
            n = sum(len(t.split()) for t in _texts(body))
            self._json(
                200,
                {"totalTokens": n, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": n}]},
            )
        elif "json" in model:
            self._json(200, _json_answer(model))
        else:
            self._sse(iter(_THINKER if model == "fake-thinker" else _CALLER))


def _vector(i: int) -> dict[str, Any]:
    return {"values": [round((i + 1) / (d + 1), 4) for d in range(EMBED_DIMS)]}


def _json_answer(model: str) -> dict[str, Any]:
    text = json.dumps({"name": "pancakes", "minutes": 20})
    return {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}
        ],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 5, "totalTokenCount": 8},
        "modelVersion": model,
        "responseId": "json-response",
    }


def _chunk(parts: list[dict[str, Any]], usage: dict[str, int], last: bool) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if last:
        candidate["finishReason"] = "STOP"
    return {
        "candidates": [candidate],
        "usageMetadata": {"promptTokenCount": 2, **usage},
        "modelVersion": "fake-thinker",
        "responseId": "thinker-response",
    }


# Thoughts first (cumulative thoughtsTokenCount), then the answer.
_THINKER = [
    _chunk([{"text": "Let me think", "thought": True}], {"thoughtsTokenCount": 3}, False),
    _chunk([{"text": " harder.", "thought": True}], {"thoughtsTokenCount": 4}, False),
    _chunk(
        [{"text": "The answer"}],
        {"thoughtsTokenCount": 4, "candidatesTokenCount": 2, "totalTokenCount": 8},
        False,
    ),
    _chunk(
        [{"text": " is 42."}],
        {"thoughtsTokenCount": 4, "candidatesTokenCount": 5, "totalTokenCount": 11},
        True,
    ),
]
# A function call (with the thought signature Gemini 2.5 attaches) after some text.
_CALLER = [
    _chunk([{"text": "Looking it up."}], {"candidatesTokenCount": 3, "totalTokenCount": 5}, False),
    _chunk(
        [
            {
                "functionCall": {"name": "lookup", "args": {"q": "hello there"}},
                "thoughtSignature": SIGNATURE,
            }
        ],
        {"candidatesTokenCount": 9, "totalTokenCount": 11},
        True,
    ),
]


class GeminiServer(FakeProviderServer):
    def __init__(self) -> None:
        super().__init__()
        self.RequestHandlerClass = _GeminiHandler


class DroppingServer(GeminiServer):
    """Sends the first `keep` SSE events of a streamed answer, then hangs up mid-response."""

    def __init__(self, keep: int) -> None:
        super().__init__()
        self.drop_after = keep


# -- fixtures --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[FakeProviderServer]:
    # One per module: stopping a server waits for its 0.5 s poll interval.
    with GeminiServer() as fake:
        yield fake


@pytest.fixture(scope="module")
def dropping() -> Iterator[FakeProviderServer]:
    with DroppingServer(KEEP) as fake:
        yield fake


@pytest.fixture
def traced(captured: Capture) -> Iterator[Capture]:
    """Gemini autolog on for one test, really unpatched afterwards."""
    tracekit.gemini.autolog()
    try:
        yield captured
    finally:
        integration.revert()


@pytest.fixture
def traced_realtime(captured_realtime: Capture) -> Iterator[Capture]:
    tracekit.gemini.autolog()
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


def make_client(server: FakeProviderServer, api_key: str = "test-key") -> Any:
    return genai.Client(
        api_key=api_key,
        http_options=types.HttpOptions(base_url=server.base_url, api_version="v1beta"),
    )


def nothing_recorded_yet(captured: Capture) -> None:
    assert captured.traces == [], "the span ended before the stream was done with"


def only_span(captured: Capture) -> dict[str, Any]:
    traces = captured.traces
    assert len(traces) == 1, [t["name"] for t in traces]
    spans = traces[0]["spans"]
    assert len(spans) == 1, [s["name"] for s in spans]  # one call, one span
    return spans[0]


def parts_of(span: dict[str, Any]) -> list[dict[str, Any]]:
    return span["outputs"]["candidates"][0]["content"]["parts"]


def text_of(span: dict[str, Any]) -> str:
    return "".join(p.get("text") or "" for p in parts_of(span) if not p.get("thought"))


# -- generate_content ------------------------------------------------------------------


def test_generate_content(traced: Capture, server: FakeProviderServer, finishes: Counter[str]):
    client = make_client(server)  # kept: a collected genai.Client closes its connection pool
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
    client = make_client(server)
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
    client = make_client(server)

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
    client = make_client(server)
    with pytest.raises(errors.ClientError) as info:
        client.models.generate_content(model="missing-model", contents=QUESTION)
    assert type(info.value) is errors.ClientError
    span = only_span(traced)
    assert span["status"]["code"] == "ERROR"
    assert span["attributes"]["http.response.status_code"] == 404
    assert span["attributes"]["error.type"] == "ClientError"
    assert [e["name"] for e in span["events"]] == ["exception"]


# -- generate_content_stream: every exit -----------------------------------------------


@dataclass
class Outcome:
    """What the span must show after an exit."""

    ended_by: str | None  # `tracekit.stream.ended_by` (None: absent)
    chunks: int  # chunks the span counted
    error: BaseException | None = None  # the exception the caller got and the span records
    requests: int = 1  # requests the server received


def sync_exhausted(client: Any, captured: Capture) -> Outcome:
    stream = client.models.generate_content_stream(model=MODEL, contents=QUESTION)
    # The caller gets the SDK's own object: a generator.
    assert isinstance(stream, pytypes.GeneratorType)
    chunks = list(stream)
    assert [c.text for c in chunks] == WORDS
    assert all(isinstance(c, types.GenerateContentResponse) for c in chunks)
    return Outcome(None, 4)


def sync_break_then_gc(client: Any, captured: Capture) -> Outcome:
    stream = client.models.generate_content_stream(model=MODEL, contents=QUESTION)
    for _ in stream:
        break
    nothing_recorded_yet(captured)
    del stream
    gc.collect()
    return Outcome("garbage_collected", 1)


def sync_break_then_close(client: Any, captured: Capture) -> Outcome:
    stream = client.models.generate_content_stream(model=MODEL, contents=QUESTION)
    for _ in stream:
        break
    nothing_recorded_yet(captured)
    stream.close()
    stream.close()  # twice: still one end
    return Outcome("close", 1)


def sync_error_mid_stream(client: Any, captured: Capture) -> Outcome:
    seen: list[Any] = []
    stream = client.models.generate_content_stream(model=MODEL, contents=QUESTION)
    with pytest.raises(Exception) as info:  # noqa: PT011 - whatever the SDK raises
        seen.extend(stream)
    assert [c.text for c in seen] == WORDS[:KEEP]
    return Outcome(None, KEEP, info.value)


def sync_error_on_first_chunk(client: Any, captured: Capture) -> Outcome:
    stream = client.models.generate_content_stream(model="missing-model", contents=QUESTION)
    with pytest.raises(errors.ClientError) as info:
        next(stream)
    assert info.value.code == 404
    return Outcome(None, 0, info.value)


def sync_dropped_never_iterated(client: Any, captured: Capture) -> Outcome:
    """`generate_content_stream` is a generator: calling it sends nothing. A stream
    that is never iterated makes no request, and its span still ends once (when
    the generator is collected), with no chunks, no outputs' text and no usage."""
    stream = client.models.generate_content_stream(model=MODEL, contents=QUESTION)
    nothing_recorded_yet(captured)
    del stream
    gc.collect()
    return Outcome("garbage_collected", 0, requests=0)


def aio_exhausted(client: Any, captured: Capture) -> Outcome:
    async def main() -> list[Any]:
        stream = await client.aio.models.generate_content_stream(model=MODEL, contents=QUESTION)
        assert isinstance(stream, pytypes.AsyncGeneratorType)  # the SDK's own object
        return [chunk async for chunk in stream]

    assert [c.text for c in asyncio.run(main())] == WORDS
    return Outcome(None, 4)


def aio_break_then_aclose(client: Any, captured: Capture) -> Outcome:
    async def main() -> None:
        stream = await client.aio.models.generate_content_stream(model=MODEL, contents=QUESTION)
        async for _ in stream:
            break
        nothing_recorded_yet(captured)
        await stream.aclose()
        await stream.aclose()

    asyncio.run(main())
    return Outcome("close", 1)


def aio_break_then_gc(client: Any, captured: Capture) -> Outcome:
    async def main() -> None:
        stream = await client.aio.models.generate_content_stream(model=MODEL, contents=QUESTION)
        async for _ in stream:
            break
        nothing_recorded_yet(captured)
        del stream
        gc.collect()

    asyncio.run(main())
    return Outcome("garbage_collected", 1)


def aio_error_mid_stream(client: Any, captured: Capture) -> Outcome:
    seen: list[Any] = []

    async def main() -> None:
        stream = await client.aio.models.generate_content_stream(model=MODEL, contents=QUESTION)
        async for chunk in stream:
            seen.append(chunk)

    with pytest.raises(Exception) as info:  # noqa: PT011 - whatever the SDK raises
        asyncio.run(main())
    assert [c.text for c in seen] == WORDS[:KEEP]
    return Outcome(None, KEEP, info.value)


def aio_error_on_first_chunk(client: Any, captured: Capture) -> Outcome:
    async def main() -> None:
        stream = await client.aio.models.generate_content_stream(
            model="missing-model", contents=QUESTION
        )
        async for _ in stream:
            pass

    with pytest.raises(errors.ClientError) as info:
        asyncio.run(main())
    assert info.value.code == 404
    return Outcome(None, 0, info.value)


def aio_awaited_never_iterated(client: Any, captured: Capture) -> Outcome:
    """The awaited aio stream is an async generator: no request until it is iterated."""

    async def main() -> None:
        stream = await client.aio.models.generate_content_stream(model=MODEL, contents=QUESTION)
        nothing_recorded_yet(captured)
        del stream
        gc.collect()

    asyncio.run(main())
    return Outcome("garbage_collected", 0, requests=0)


EXITS: list[Callable[[Any, Capture], Outcome]] = [
    sync_exhausted,
    sync_break_then_gc,
    sync_break_then_close,
    sync_error_mid_stream,
    sync_error_on_first_chunk,
    sync_dropped_never_iterated,
    aio_exhausted,
    aio_break_then_aclose,
    aio_break_then_gc,
    aio_error_mid_stream,
    aio_error_on_first_chunk,
    aio_awaited_never_iterated,
]


@pytest.mark.parametrize("exit_", EXITS, ids=lambda f: f.__name__)
def test_stream_exit_ends_the_span_once(
    exit_: Callable[[Any, Capture], Outcome],
    traced: Capture,
    server: FakeProviderServer,
    dropping: FakeProviderServer,
    finishes: Counter[str],
):
    target = dropping if "mid_stream" in exit_.__name__ else server
    before = len(target.requests)
    client = make_client(target)
    outcome = exit_(client, traced)
    assert len(target.requests) - before == outcome.requests

    span = only_span(traced)
    assert sum(finishes.values()) == 1, finishes  # ended exactly once
    assert span["end_time_ns"] >= span["start_time_ns"]
    assert span["span_type"] == "CHAT_MODEL"
    attributes = span["attributes"]
    assert attributes["tracekit.stream"] is True
    assert attributes["tracekit.stream.chunks"] == outcome.chunks
    assert attributes.get("tracekit.stream.ended_by") == outcome.ended_by
    assert attributes["gen_ai.provider.name"] == "gcp.gemini"
    if outcome.chunks:
        assert attributes["tracekit.time_to_first_chunk_s"] >= 0
    # Whatever arrived is recorded: the text so far and the last cumulative usage.
    assert text_of(span) == "".join(WORDS[: outcome.chunks])
    if outcome.chunks:
        n = outcome.chunks
        assert span["token_usage"] == {"input_tokens": 2, "output_tokens": n, "total_tokens": 2 + n}
    else:
        assert "token_usage" not in span  # never invented
    if outcome.chunks == len(WORDS):
        assert span["outputs"]["candidates"][0]["finish_reason"] == "STOP"
        assert attributes["gen_ai.response.finish_reasons"] == ["STOP"]
        assert span["token_usage"] == USAGE
    else:
        assert span["outputs"]["candidates"][0]["finish_reason"] is None

    if outcome.error is None:
        assert span["status"] == {"code": "OK", "message": ""}
        assert span["events"] == []
        return
    assert span["status"]["code"] == "ERROR"
    (event,) = span["events"]
    assert event["name"] == "exception"
    assert event["attributes"]["exception.type"].endswith(type(outcome.error).__name__)
    assert event["attributes"]["exception.message"] == str(outcome.error)
    if isinstance(outcome.error, errors.APIError):
        # The request itself failed (the SDK sends it on the first `next`): recorded
        # like a failed generate_content, with the HTTP status and the error type.
        assert attributes["http.response.status_code"] == outcome.error.code
        assert attributes["error.type"] == type(outcome.error).__qualname__


def test_span_is_not_current_between_chunks(traced: Capture, server: FakeProviderServer):
    client = make_client(server)

    @tracekit.trace
    def read() -> list[str]:
        outer = tracekit.get_current_span()
        texts = []
        for chunk in client.models.generate_content_stream(model=MODEL, contents=QUESTION):
            assert tracekit.get_current_span() is outer
            texts.append(chunk.text)
        return texts

    assert read() == WORDS
    (record,) = traced.traces
    root, child = record["spans"]
    assert child["parent_id"] == root["span_id"]
    assert child["name"] == SPAN_NAME
    assert record["token_usage"] == USAGE


def test_stream_keeps_thought_parts_separate(traced: Capture, server: FakeProviderServer):
    client = make_client(server)
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
    client = make_client(server)
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
    client = make_client(server)
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
    client = make_client(server)
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
    client = make_client(server)
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
    client = make_client(server)
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
    client = make_client(server)
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
    client = make_client(server)
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
    client = make_client(server)
    list(client.models.generate_content_stream(model=MODEL, contents=QUESTION, config=config))
    (record,) = traced.traces
    json.dumps(record)
    assert record["spans"][0]["status"]["code"] == "OK"
    assert "Recipe" in json.dumps(record["spans"][0]["inputs"]["config"]["response_schema"])


def test_client_api_key_is_never_recorded(traced: Capture, server: FakeProviderServer):
    key = "AIzaSy-CLIENT-SECRET-KEY-123"
    client = make_client(server, api_key=key)
    client.models.generate_content(model=MODEL, contents=QUESTION)
    list(client.models.generate_content_stream(model=MODEL, contents=QUESTION))
    client.models.count_tokens(model=MODEL, contents=QUESTION)
    client.models.embed_content(model="text-embedding-004", contents=[QUESTION])
    with pytest.raises(errors.ClientError):
        client.models.generate_content(model="missing-model", contents=QUESTION)
    with pytest.raises(errors.ClientError):
        next(client.models.generate_content_stream(model="missing-model", contents=QUESTION))
    asyncio.run(client.aio.models.generate_content(model=MODEL, contents=QUESTION))
    client.chats.create(model=MODEL).send_message(QUESTION)
    # The key really went over the wire (so its absence below means something).
    sent = {k.lower(): v for k, v in server.requests[-1]["headers"].items()}
    assert sent["x-goog-api-key"] == key

    records = traced.traces
    assert len(records) == 8
    dumped = json.dumps(records)
    for secret in (key, "SECRET", "x-goog-api-key"):
        assert secret not in dumped, secret


def test_api_key_in_per_call_http_options_is_never_recorded(
    traced: Capture, server: FakeProviderServer
):
    """`config.http_options.headers` is where a per-request key or bearer token goes
    (the OpenAI and Anthropic integrations never record `extra_headers` for this reason)."""
    key = "AIzaSy-PER-CALL-SECRET-456"
    bearer = "Bearer PER-CALL-SECRET-TOKEN-789"
    headers = {"x-goog-api-key": key, "Authorization": bearer}
    client = make_client(server)
    config = types.GenerateContentConfig(http_options=types.HttpOptions(headers=headers))
    client.models.generate_content(model=MODEL, contents=QUESTION, config=config)
    list(client.models.generate_content_stream(model=MODEL, contents=QUESTION, config=config))
    client.models.generate_content(
        model=MODEL, contents=QUESTION, config={"http_options": {"headers": headers}}
    )
    sent = {k.lower(): v for k, v in server.requests[-1]["headers"].items()}
    assert sent["x-goog-api-key"] == key
    assert sent["authorization"] == bearer

    records = traced.traces
    assert len(records) == 3
    dumped = json.dumps(records)
    for secret in (key, bearer, "SECRET"):
        assert secret not in dumped, secret


# -- switches and nesting --------------------------------------------------------------


def test_autolog_disable_records_nothing(traced: Capture, server: FakeProviderServer):
    client = make_client(server)
    tracekit.gemini.autolog(disable=True)
    assert client.models.generate_content(model=MODEL, contents=QUESTION).text == ANSWER
    assert [
        c.text for c in client.models.generate_content_stream(model=MODEL, contents=QUESTION)
    ] == WORDS

    async def aio() -> None:
        await client.aio.models.generate_content(model=MODEL, contents=QUESTION)
        async for _ in await client.aio.models.generate_content_stream(
            model=MODEL, contents=QUESTION
        ):
            pass

    asyncio.run(aio())
    client.models.count_tokens(model=MODEL, contents=QUESTION)
    assert traced.traces == []

    tracekit.gemini.autolog()  # on again: the same client is traced
    client.models.generate_content(model=MODEL, contents=QUESTION)
    assert only_span(traced)["name"] == SPAN_NAME


def test_log_traces_false_records_nothing(traced: Capture, server: FakeProviderServer):
    tracekit.gemini.autolog(log_traces=False)
    client = make_client(server)
    client.models.generate_content(model=MODEL, contents=QUESTION)
    assert traced.traces == []


def test_nesting_under_trace_sync_and_async(traced: Capture, server: FakeProviderServer):
    client = make_client(server)

    @tracekit.trace(name="sync_pipeline")
    def sync_pipeline() -> str:
        client.models.generate_content(model=MODEL, contents=QUESTION)
        return "".join(
            c.text for c in client.models.generate_content_stream(model=MODEL, contents=QUESTION)
        )

    @tracekit.trace(name="async_pipeline")
    async def async_pipeline() -> str:
        await client.aio.models.generate_content(model=MODEL, contents=QUESTION)
        stream = await client.aio.models.generate_content_stream(model=MODEL, contents=QUESTION)
        return "".join([c.text async for c in stream])

    assert sync_pipeline() == ANSWER
    assert asyncio.run(async_pipeline()) == ANSWER
    records = traced.traces
    assert [r["name"] for r in records] == ["sync_pipeline", "async_pipeline"]
    for record in records:
        root, plain, streamed = record["spans"]
        assert root["parent_id"] is None
        assert plain["parent_id"] == streamed["parent_id"] == root["span_id"]
        assert plain["name"] == streamed["name"] == SPAN_NAME
        assert "tracekit.stream" not in plain["attributes"]
        assert streamed["attributes"]["tracekit.stream"] is True
        assert record["token_usage"] == {"input_tokens": 4, "output_tokens": 8, "total_tokens": 12}


def test_50_concurrent_aio_calls_under_one_parent(
    traced_realtime: Capture, server: FakeProviderServer
):
    client = make_client(server)

    async def ask(i: int) -> str:
        question = f"question {i}"
        if i % 2:
            response = await client.aio.models.generate_content(model=MODEL, contents=question)
            return response.text
        stream = await client.aio.models.generate_content_stream(model=MODEL, contents=question)
        return "".join([chunk.text async for chunk in stream])

    @tracekit.trace
    async def fan_out() -> list[str]:
        return await asyncio.gather(*(ask(i) for i in range(50)))

    assert asyncio.run(fan_out()) == [f"You asked: question {i}" for i in range(50)]
    (record,) = traced_realtime.traces
    (root,) = [s for s in record["spans"] if s["name"] == "fan_out"]
    children = [s for s in record["spans"] if s["parent_id"] == root["span_id"]]
    assert len(record["spans"]) == 51
    assert len(children) == 50
    seen = set()
    for span in children:
        i = int(span["inputs"]["contents"].split()[-1])
        seen.add(i)
        assert span["name"] == SPAN_NAME
        assert span["status"]["code"] == "OK"
        assert span["end_time_ns"] >= span["start_time_ns"]
        assert ("tracekit.stream" in span["attributes"]) is (i % 2 == 0)
        assert text_of(span) == f"You asked: question {i}"
        assert span["token_usage"] == {"input_tokens": 2, "output_tokens": 4, "total_tokens": 6}
    assert seen == set(range(50))
    assert record["token_usage"] == {
        "input_tokens": 100,
        "output_tokens": 200,
        "total_tokens": 300,
    }
