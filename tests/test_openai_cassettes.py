"""Recorded OpenAI traffic replayed through the real SDK: exact span content.

Every cassette in tests/cassettes/openai/ is served over loopback by
`tests.replay` to a real `openai.OpenAI` (and, where cheap, `AsyncOpenAI`)
client with `tracekit.openai.autolog()` on. The recorded request JSON is sent
again as keyword arguments, and each test asserts what the span must hold:
name, type, status, the normalized token usage (DESIGN.md's table), the
`gen_ai.*` attributes, the outputs, and for errors the SDK's own exception
reaching the caller and an `exception` event on the span.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

openai = pytest.importorskip("openai")

from tests.replay import Cassette, ReplayServer, cassette_names, load_or_skip, replay_server  # noqa: E402
from tests.trace_checks import only_trace  # noqa: E402

from tracekit.testing import Capture  # noqa: E402

PROVIDER = "openai"  # the `traced` fixture autologs it (tests/conftest.py)

# Every file in tests/cassettes/openai/ and the test(s) replaying it.
COVERED = {
    "chat_completions_404_model_not_found.yaml",
    "chat_completions_nonstream_basic.yaml",
    "chat_completions_prompt_caching_cached_tokens_gzip.yaml",
    "chat_completions_reasoning_tokens_gzip.yaml",
    "chat_completions_stream_include_usage.yaml",
    "chat_completions_stream_without_include_usage.yaml",
    "chat_completions_tool_calls_stream_parallel.yaml",
    "chat_completions_tool_calls_two_turns.yaml",
    "embeddings_404_model_not_found.yaml",
    "embeddings_dimensions.yaml",
    "openai_compatible_openrouter_429_x3_parsed_body.yaml",
    "openai_compatible_openrouter_stream_reasoning.yaml",
    "responses_400_api_error.yaml",
    "responses_function_call.yaml",
    "responses_nonstream_basic.yaml",
    "responses_reasoning_tokens.yaml",
    "responses_stream.yaml",
}

MODES = ["sync", "async"]


# -- calling the SDK -------------------------------------------------------------------


def _method(client: Any, path: str) -> Any:
    target = client
    for part in path.split("."):
        target = getattr(target, part)
    return target


def call(
    server: ReplayServer,
    path: str,
    kwargs: dict[str, Any],
    *,
    mode: str = "sync",
    prefix: str = "/v1",
    max_retries: int = 0,
    client_cls: Any = None,
) -> tuple[Any, list[Any] | None]:
    """`client.<path>(**kwargs)` sync or async; a stream is read to the end.

    Returns the SDK's result and the items of a stream (None for a non-stream).
    """
    base_url = server.base_url + prefix
    if mode == "sync":
        cls = client_cls or openai.OpenAI
        with cls(api_key="test", base_url=base_url, max_retries=max_retries) as client:
            result = _method(client, path)(**kwargs)
            items = list(result) if isinstance(result, openai.Stream) else None
            return result, items

    async def main() -> tuple[Any, list[Any] | None]:
        cls = client_cls or openai.AsyncOpenAI
        async with cls(api_key="test", base_url=base_url, max_retries=max_retries) as client:
            result = await _method(client, path)(**kwargs)
            items = None
            if isinstance(result, openai.AsyncStream):
                items = [item async for item in result]
            return result, items

    return asyncio.run(main())


# -- reading what was recorded ---------------------------------------------------------


def spans_of(captured: Capture, count: int) -> list[dict[str, Any]]:
    """The spans of `count` single-span traces, in call order."""
    traces = captured.traces
    assert len(traces) == count, [t["name"] for t in traces]
    out = []
    for trace in traces:
        assert len(trace["spans"]) == 1, [s["name"] for s in trace["spans"]]
        assert trace["token_usage"] == trace["spans"][0]["token_usage"]
        out.append(trace["spans"][0])
    return out


def base_attributes(
    server: ReplayServer, model: str, operation: str = "chat", **more: Any
) -> dict[str, Any]:
    return {
        "server.address": "127.0.0.1",
        "server.port": server.port,
        "gen_ai.provider.name": "openai",
        "gen_ai.operation.name": operation,
        "gen_ai.request.model": model,
        **more,
    }


def usage_attributes(
    input_tokens: int, output_tokens: int, cached: int | None = None, reasoning: int | None = None
) -> dict[str, int]:
    attributes = {
        "gen_ai.usage.input_tokens": input_tokens,
        "gen_ai.usage.output_tokens": output_tokens,
    }
    if cached is not None:
        attributes["gen_ai.usage.cache_read.input_tokens"] = cached
    if reasoning is not None:
        attributes["gen_ai.usage.reasoning.output_tokens"] = reasoning
    return attributes


def chat_usage(prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> dict[str, int]:
    """DESIGN.md's normalization of an OpenAI usage block with both details (chat
    completions' and Responses')."""
    return {
        "input_tokens": prompt,
        "output_tokens": completion,
        "total_tokens": prompt + completion,
        "cache_read_input_tokens": cached,
        "reasoning_tokens": reasoning,
    }


def stream_attributes(span: dict[str, Any], chunks: int) -> dict[str, Any]:
    """The span's attributes without the timing one, after checking the stream ones."""
    attributes = dict(span["attributes"])
    ttfc = attributes.pop("tracekit.time_to_first_chunk_s", None)
    assert isinstance(ttfc, float), span["attributes"]
    assert ttfc > 0
    assert attributes.get("tracekit.stream") is True
    assert attributes.get("tracekit.stream.chunks") == chunks
    assert "tracekit.stream.ended_by" not in attributes  # read to the end
    return attributes


def assert_contains(actual: Any, expected: Any, where: str = "outputs") -> None:
    """Everything in `expected` (recorded JSON) is in `actual`; `actual` may hold more keys."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: {actual!r} is not an object"
        for key, value in expected.items():
            assert key in actual, f"{where}: missing {key!r}"
            assert_contains(actual[key], value, f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{where}: {actual!r} is not a list"
        assert len(actual) == len(expected), f"{where}: {len(actual)} != {len(expected)} items"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_contains(a, e, f"{where}[{i}]")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def streamed_text(cassette: Cassette, key: str = "content") -> str:
    """The concatenated `delta[key]` strings of a recorded chat stream."""
    parts = []
    for chunk in cassette.sse_json(0):
        for choice in chunk.get("choices") or []:
            value = (choice.get("delta") or {}).get(key)
            if isinstance(value, str):
                parts.append(value)
    return "".join(parts)


def test_every_openai_cassette_is_replayed() -> None:
    assert cassette_names("openai") == COVERED


# -- chat completions ------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_chat_nonstream_basic(traced: Capture, mode: str) -> None:
    cassette = load_or_skip("openai/chat_completions_nonstream_basic.yaml")
    request = cassette.request_json(0)
    with replay_server(cassette) as server:
        result, _ = call(server, "chat.completions.create", request, mode=mode)
    assert isinstance(result, openai.types.chat.ChatCompletion)
    assert result.choices[0].message.content == "This is a test."

    trace, span = only_trace(traced)
    assert span["name"] == "chat gpt-4o-mini"
    assert span["span_type"] == "CHAT_MODEL"
    assert span["status"] == {"code": "OK", "message": ""}
    assert span["parent_id"] is None
    assert span["events"] == []
    assert span["inputs"] == request
    assert span["token_usage"] == chat_usage(12, 5)
    assert trace["token_usage"] == span["token_usage"]
    assert trace["status"] == "OK"
    assert span["attributes"] == base_attributes(
        server,
        "gpt-4o-mini",
        **{
            "gen_ai.response.id": "chatcmpl-ASYMQRl3A3DXL9FWCK9tnGRcKIO7q",
            "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
            "gen_ai.response.finish_reasons": ["stop"],
        },
        **usage_attributes(12, 5, cached=0, reasoning=0),
    )
    assert span["outputs"]["choices"][0]["message"]["content"] == "This is a test."
    assert_contains(span["outputs"], cassette.response_json(0))


@pytest.mark.parametrize("mode", MODES)
def test_chat_stream_include_usage(traced: Capture, mode: str) -> None:
    cassette = load_or_skip("openai/chat_completions_stream_include_usage.yaml")
    request = cassette.request_json(0)
    recorded = cassette.sse_json(0)
    with replay_server(cassette) as server:
        _, items = call(server, "chat.completions.create", request, mode=mode)
    assert items is not None
    assert len(items) == len(recorded) == 8
    assert items[-1].choices == []
    assert items[-1].usage.total_tokens == 17  # the caller asked for it: it sees it

    trace, span = only_trace(traced)
    text = streamed_text(cassette)
    assert text == '"This is a test."'
    assert span["name"] == "chat gpt-4"
    assert span["span_type"] == "CHAT_MODEL"
    assert span["status"] == {"code": "OK", "message": ""}
    assert span["inputs"] == request
    assert span["token_usage"] == chat_usage(12, 5)
    assert trace["token_usage"] == span["token_usage"]
    assert stream_attributes(span, chunks=8) == base_attributes(
        server,
        "gpt-4",
        **{
            "tracekit.stream": True,
            "tracekit.stream.chunks": 8,
            "gen_ai.response.id": "chatcmpl-ASYMZ4oSykiIFK4lXLReDiKyAjsQl",
            "gen_ai.response.model": "gpt-4-0613",
            "gen_ai.response.finish_reasons": ["stop"],
        },
        **usage_attributes(12, 5, cached=0, reasoning=0),
    )
    outputs = span["outputs"]
    assert outputs["id"] == "chatcmpl-ASYMZ4oSykiIFK4lXLReDiKyAjsQl"
    assert outputs["model"] == "gpt-4-0613"
    assert len(outputs["choices"]) == 1
    choice = outputs["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == text


@pytest.mark.parametrize("mode", MODES)
def test_chat_stream_without_include_usage_has_no_usage(traced: Capture, mode: str) -> None:
    cassette = load_or_skip("openai/chat_completions_stream_without_include_usage.yaml")
    request = cassette.request_json(0)
    with replay_server(cassette) as server:
        _, items = call(server, "chat.completions.create", request, mode=mode)
    assert items is not None
    assert len(items) == 7
    # The request was not changed: no stream_options were added behind the caller's back.
    assert server.requests[0].json == request

    trace, span = only_trace(traced)
    assert span["name"] == "chat gpt-4"
    assert span["status"] == {"code": "OK", "message": ""}
    assert "token_usage" not in span  # absent, not zeros
    assert "token_usage" not in trace
    attributes = stream_attributes(span, chunks=7)
    assert not [key for key in attributes if key.startswith("gen_ai.usage.")]
    assert attributes == base_attributes(
        server,
        "gpt-4",
        **{
            "tracekit.stream": True,
            "tracekit.stream.chunks": 7,
            "gen_ai.response.id": "chatcmpl-ASYMZbRqo8Bkz53FVzaTj7W7feOn4",
            "gen_ai.response.model": "gpt-4-0613",
            "gen_ai.response.finish_reasons": ["stop"],
        },
    )
    assert span["outputs"]["choices"][0]["message"]["content"] == "This is a test."
    assert "usage" not in span["outputs"] or span["outputs"]["usage"] is None


def test_chat_tool_calls_two_turns(traced: Capture) -> None:
    cassette = load_or_skip("openai/chat_completions_tool_calls_two_turns.yaml")
    with replay_server(cassette) as server:
        first, _ = call(server, "chat.completions.create", cassette.request_json(0))
        second, _ = call(server, "chat.completions.create", cassette.request_json(1))
        assert server.all_played()
    assert first.choices[0].finish_reason == "tool_calls"
    assert second.choices[0].message.content.startswith("Today, the weather in Seattle")

    one, two = spans_of(traced, 2)
    tools = cassette.request_json(0)["tools"]
    assert one["name"] == two["name"] == "chat gpt-4o-mini"
    assert one["inputs"] == cassette.request_json(0)
    assert two["inputs"] == cassette.request_json(1)
    assert one["token_usage"] == chat_usage(75, 51)
    assert two["token_usage"] == chat_usage(99, 25)
    assert one["attributes"] == base_attributes(
        server,
        "gpt-4o-mini",
        **{
            "gen_ai.tool.definitions": tools,
            "gen_ai.response.id": "chatcmpl-ASYMU9Ntix7ePttk0MSuerJstef6U",
            "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
            "gen_ai.response.finish_reasons": ["tool_calls"],
        },
        **usage_attributes(75, 51, cached=0, reasoning=0),
    )
    assert two["attributes"] == base_attributes(
        server,
        "gpt-4o-mini",
        **{
            "gen_ai.response.id": "chatcmpl-ASYMVzdmBGDbUoHFmt6R16tdtZUzR",
            "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
            "gen_ai.response.finish_reasons": ["stop"],
        },
        **usage_attributes(99, 25, cached=0, reasoning=0),
    )
    calls = one["outputs"]["choices"][0]["message"]["tool_calls"]
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("get_current_weather", {"location": "Seattle, WA"}),
        ("get_current_weather", {"location": "San Francisco, CA"}),
    ]
    assert_contains(one["outputs"], cassette.response_json(0))
    assert two["outputs"]["choices"][0]["message"]["content"] == (
        "Today, the weather in Seattle is 50 degrees and raining, "
        "while in San Francisco, it's 70 degrees and sunny."
    )
    assert_contains(two["outputs"], cassette.response_json(1))


@pytest.mark.parametrize("mode", MODES)
def test_chat_stream_parallel_tool_calls_assembled(traced: Capture, mode: str) -> None:
    cassette = load_or_skip("openai/chat_completions_tool_calls_stream_parallel.yaml")
    request = cassette.request_json(0)
    with replay_server(cassette) as server:
        _, items = call(server, "chat.completions.create", request, mode=mode)
    assert items is not None
    assert len(items) == 18

    trace, span = only_trace(traced)
    assert span["name"] == "chat gpt-4o-mini"
    assert span["status"] == {"code": "OK", "message": ""}
    assert span["inputs"] == request
    assert span["token_usage"] == chat_usage(75, 51)
    assert trace["token_usage"] == span["token_usage"]
    assert stream_attributes(span, chunks=18) == base_attributes(
        server,
        "gpt-4o-mini",
        **{
            "gen_ai.tool.definitions": request["tools"],
            "tracekit.stream": True,
            "tracekit.stream.chunks": 18,
            "gen_ai.response.id": "chatcmpl-ASYMbACebDoWcuraMEWQhU48q4dAp",
            "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
            "gen_ai.response.finish_reasons": ["tool_calls"],
        },
        **usage_attributes(75, 51, cached=0, reasoning=0),
    )
    (choice,) = span["outputs"]["choices"]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["role"] == "assistant"
    assert message.get("content") in (None, "")
    assert message["tool_calls"] == [
        {
            "id": "call_fHCjJqt9Pysde6vcJcvbXGBx",
            "type": "function",
            "function": {
                "name": "get_current_weather",
                "arguments": '{"location": "Seattle, WA"}',
            },
        },
        {
            "id": "call_3J9foSw3CUb48lrqIXoTky6U",
            "type": "function",
            "function": {
                "name": "get_current_weather",
                "arguments": '{"location": "San Francisco, CA"}',
            },
        },
    ]


def test_chat_prompt_caching_cached_tokens(traced: Capture) -> None:
    cassette = load_or_skip("openai/chat_completions_prompt_caching_cached_tokens_gzip.yaml")
    assert len(cassette) == 4
    with replay_server(cassette) as server:
        results = [
            call(server, "chat.completions.create", cassette.request_json(i))[0] for i in range(4)
        ]
        assert server.all_played()
    assert [r.usage.prompt_tokens_details.cached_tokens for r in results] == [0, 1024, 0, 0]

    spans = spans_of(traced, 4)
    completions = [315, 353, 297, 339]
    cached = [0, 1024, 0, 0]
    for i, span in enumerate(spans):
        assert span["name"] == "chat gpt-4o-mini"
        assert span["status"] == {"code": "OK", "message": ""}
        assert span["token_usage"] == chat_usage(1149, completions[i], cached=cached[i]), i
        assert span["attributes"] == base_attributes(
            server,
            "gpt-4o-mini",
            **{
                "gen_ai.response.id": cassette.response_json(i)["id"],
                "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                "gen_ai.response.finish_reasons": ["stop"],
            },
            **usage_attributes(1149, completions[i], cached=cached[i], reasoning=0),
        ), i
        assert (
            span["outputs"]["choices"][0]["message"]["content"]
            == (cassette.response_json(i)["choices"][0]["message"]["content"])
        )


def test_chat_reasoning_tokens(traced: Capture) -> None:
    cassette = load_or_skip("openai/chat_completions_reasoning_tokens_gzip.yaml")
    assert len(cassette) == 3
    with replay_server(cassette) as server:
        for i in range(3):
            call(server, "chat.completions.create", cassette.request_json(i))
        assert server.all_played()

    spans = spans_of(traced, 3)
    completions = [228, 202, 138]
    reasoning = [192, 192, 128]
    for i, span in enumerate(spans):
        assert span["name"] == "chat gpt-5-nano"
        assert span["inputs"] == cassette.request_json(i)
        assert span["token_usage"] == chat_usage(11, completions[i], reasoning=reasoning[i]), i
        assert span["attributes"] == base_attributes(
            server,
            "gpt-5-nano",
            **{
                "gen_ai.response.id": cassette.response_json(i)["id"],
                "gen_ai.response.model": "gpt-5-nano-2025-08-07",
                "gen_ai.response.finish_reasons": ["stop"],
            },
            **usage_attributes(11, completions[i], cached=0, reasoning=reasoning[i]),
        ), i
    assert spans[0]["outputs"]["choices"][0]["message"]["content"].startswith("3\n\nThere are")
    assert spans[1]["outputs"]["choices"][0]["message"]["content"] == "3"


# -- embeddings ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_embeddings_dimensions(traced: Capture, mode: str) -> None:
    cassette = load_or_skip("openai/embeddings_dimensions.yaml")
    request = cassette.request_json(0)
    with replay_server(cassette) as server:
        result, _ = call(server, "embeddings.create", request, mode=mode)
    assert len(result.data[0].embedding) == 512

    trace, span = only_trace(traced)
    assert span["name"] == "embeddings text-embedding-3-small"
    assert span["span_type"] == "EMBEDDING"
    assert span["status"] == {"code": "OK", "message": ""}
    assert span["inputs"] == request
    assert span["token_usage"] == {"input_tokens": 8, "output_tokens": 0, "total_tokens": 8}
    assert trace["token_usage"] == span["token_usage"]
    assert span["attributes"] == base_attributes(
        server,
        "text-embedding-3-small",
        "embeddings",
        **{
            "gen_ai.embeddings.dimension.count": 512,
            "gen_ai.response.model": "text-embedding-3-small",
        },
        **usage_attributes(8, 0),
    )
    assert span["outputs"] == {"model": "text-embedding-3-small", "count": 1, "dimensions": 512}


# -- Responses -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_responses_nonstream_basic(traced: Capture, mode: str) -> None:
    cassette = load_or_skip("openai/responses_nonstream_basic.yaml")
    request = cassette.request_json(0)
    with replay_server(cassette) as server:
        result, _ = call(server, "responses.create", request, mode=mode)
    assert result.output_text == "This is a test."

    trace, span = only_trace(traced)
    assert span["name"] == "chat gpt-4o-mini"
    assert span["span_type"] == "CHAT_MODEL"
    assert span["status"] == {"code": "OK", "message": ""}
    assert span["inputs"] == request
    assert span["token_usage"] == chat_usage(22, 6)
    assert trace["token_usage"] == span["token_usage"]
    recorded = cassette.response_json(0)
    assert span["attributes"] == base_attributes(
        server,
        "gpt-4o-mini",
        **{
            "gen_ai.response.id": recorded["id"],
            "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
            "gen_ai.response.finish_reasons": ["completed"],
        },
        **usage_attributes(22, 6, cached=0, reasoning=0),
    )
    assert span["outputs"]["output"][0]["content"][0]["text"] == "This is a test."
    assert_contains(span["outputs"], recorded)


@pytest.mark.parametrize("mode", MODES)
def test_responses_stream(traced: Capture, mode: str) -> None:
    cassette = load_or_skip("openai/responses_stream.yaml")
    request = cassette.request_json(0)
    events = cassette.sse_json(0)
    completed = events[-1]["response"]
    with replay_server(cassette) as server:
        _, items = call(server, "responses.create", request, mode=mode)
    assert items is not None
    assert [item.type for item in items] == [e["type"] for e in events]

    trace, span = only_trace(traced)
    assert span["name"] == "chat gpt-4o-mini"
    assert span["status"] == {"code": "OK", "message": ""}
    assert span["inputs"] == request
    assert span["token_usage"] == chat_usage(22, 6)
    assert trace["token_usage"] == span["token_usage"]
    assert stream_attributes(span, chunks=13) == base_attributes(
        server,
        "gpt-4o-mini",
        **{
            "tracekit.stream": True,
            "tracekit.stream.chunks": 13,
            "gen_ai.response.id": completed["id"],
            "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
            "gen_ai.response.finish_reasons": ["completed"],
        },
        **usage_attributes(22, 6, cached=0, reasoning=0),
    )
    assert span["outputs"]["output"][0]["content"][0]["text"] == "This is a test."
    assert_contains(span["outputs"], completed)


def test_responses_reasoning_tokens(traced: Capture) -> None:
    cassette = load_or_skip("openai/responses_reasoning_tokens.yaml")
    request = cassette.request_json(0)
    with replay_server(cassette) as server:
        call(server, "responses.create", request)

    trace, span = only_trace(traced)
    assert span["name"] == "chat gpt-5.4"
    assert span["inputs"] == request
    assert span["token_usage"] == chat_usage(44, 288, reasoning=9)
    assert span["token_usage"]["total_tokens"] == 332
    assert trace["token_usage"] == span["token_usage"]
    recorded = cassette.response_json(0)
    assert span["attributes"] == base_attributes(
        server,
        "gpt-5.4",
        **{
            "gen_ai.request.max_tokens": 300,
            "gen_ai.response.id": recorded["id"],
            "gen_ai.response.model": "gpt-5.4-2026-03-05",
            "gen_ai.response.finish_reasons": ["completed"],
        },
        **usage_attributes(44, 288, cached=0, reasoning=9),
    )
    assert span["outputs"]["output"][1]["content"][0]["text"].startswith("```bash\n")
    assert_contains(span["outputs"], recorded)


def test_responses_function_call(traced: Capture) -> None:
    cassette = load_or_skip("openai/responses_function_call.yaml")
    request = cassette.request_json(0)
    with replay_server(cassette) as server:
        call(server, "responses.create", request)

    trace, span = only_trace(traced)
    assert span["name"] == "chat gpt-4o-mini"
    assert span["inputs"] == request
    assert span["token_usage"] == chat_usage(72, 8)
    assert trace["token_usage"] == span["token_usage"]
    recorded = cassette.response_json(0)
    assert span["attributes"] == base_attributes(
        server,
        "gpt-4o-mini",
        **{
            "gen_ai.tool.definitions": request["tools"],
            "gen_ai.response.id": recorded["id"],
            "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
            "gen_ai.response.finish_reasons": ["completed"],
        },
        **usage_attributes(72, 8, cached=0, reasoning=0),
    )
    (item,) = span["outputs"]["output"]
    assert item["type"] == "function_call"
    assert item["name"] == "get_current_weather"
    assert json.loads(item["arguments"]) == {"location": "Seattle, WA"}
    assert_contains(span["outputs"], recorded)


# -- OpenAI-compatible endpoints -------------------------------------------------------


def test_openrouter_stream_reasoning(traced: Capture) -> None:
    cassette = load_or_skip("openai/openai_compatible_openrouter_stream_reasoning.yaml")
    recorded_request = cassette.request_json(0)
    request = {k: v for k, v in recorded_request.items() if k != "reasoning"}
    request["extra_body"] = {"reasoning": recorded_request["reasoning"]}
    with replay_server(cassette) as server:
        _, items = call(server, "chat.completions.create", request, prefix="/api/v1")
        assert server.requests[0].path == "/api/v1/chat/completions"
        assert server.requests[0].json == recorded_request
    assert items is not None
    assert len(items) == 8

    trace, span = only_trace(traced)
    assert span["name"] == "chat google/gemini-2.5-flash"
    assert span["status"] == {"code": "OK", "message": ""}
    assert span["inputs"]["messages"] == recorded_request["messages"]
    # OpenRouter sends usage on its last content chunk, without details: nothing invented.
    assert span["token_usage"] == {"input_tokens": 13, "output_tokens": 1003, "total_tokens": 1016}
    assert trace["token_usage"] == span["token_usage"]
    assert stream_attributes(span, chunks=8) == base_attributes(
        server,
        "google/gemini-2.5-flash",
        **{
            "tracekit.stream": True,
            "tracekit.stream.chunks": 8,
            "gen_ai.response.id": "gen-1751918758-SZqPQwzFgmd8JdDUxRuL",
            "gen_ai.response.model": "google/gemini-2.5-flash",
            "gen_ai.response.finish_reasons": ["stop"],
        },
        **usage_attributes(13, 1003),
    )
    (choice,) = span["outputs"]["choices"]
    assert choice["finish_reason"] == "stop"
    content = streamed_text(cassette)
    reasoning = streamed_text(cassette, "reasoning")
    assert content.startswith("That's a clever way to put it!")
    assert content.endswith("and what can I help you with?")
    assert reasoning.startswith("**Interpreting User Intent**")
    assert choice["message"]["content"] == content
    assert choice["message"]["reasoning"] == reasoning


class _NoWaitOpenAI(openai.OpenAI):  # type: ignore[misc]
    """Retries at once (the SDK's own backoff would add about a second)."""

    def _calculate_retry_timeout(self, *args: Any, **kwargs: Any) -> float:
        return 0.0


def test_openrouter_429_retried_is_one_error_span(traced: Capture) -> None:
    cassette = load_or_skip("openai/openai_compatible_openrouter_429_x3_parsed_body.yaml")
    request = cassette.request_json(0)
    with replay_server(cassette) as server, pytest.raises(openai.RateLimitError) as info:
        call(
            server,
            "chat.completions.create",
            request,
            prefix="/api/v1",
            max_retries=2,
            client_cls=_NoWaitOpenAI,
        )
    assert type(info.value) is openai.RateLimitError
    assert info.value.status_code == 429
    assert len(server.requests) == 3
    assert server.all_played()
    assert [r.headers.get("x-stainless-retry-count") for r in server.requests] == ["0", "1", "2"]

    trace, span = only_trace(traced)  # the retries are inside the one traced call
    assert trace["status"] == "ERROR"
    assert span["name"] == "chat google/gemini-2.0-flash-exp:free"
    assert span["status"] == {"code": "ERROR", "message": f"RateLimitError: {info.value}"}
    assert "token_usage" not in span
    (event,) = span["events"]
    assert event["name"] == "exception"
    assert event["attributes"]["exception.type"] == "RateLimitError"
    assert event["attributes"]["exception.message"] == str(info.value)


# -- errors ----------------------------------------------------------------------------

ERRORS = [
    pytest.param(
        "openai/chat_completions_404_model_not_found.yaml",
        "chat.completions.create",
        "NotFoundError",
        404,
        ("chat this-model-does-not-exist", "CHAT_MODEL", "chat"),
        id="chat-404",
    ),
    pytest.param(
        "openai/embeddings_404_model_not_found.yaml",
        "embeddings.create",
        "NotFoundError",
        404,
        ("embeddings non-existent-embedding-model", "EMBEDDING", "embeddings"),
        id="embeddings-404",
    ),
    pytest.param(
        "openai/responses_400_api_error.yaml",
        "responses.create",
        "BadRequestError",
        400,
        ("chat this-model-does-not-exist", "CHAT_MODEL", "chat"),
        id="responses-400",
    ),
]


def _call_expecting_error(
    relpath: str, path: str, error: str, mode: str
) -> tuple[Cassette, ReplayServer, Any]:
    cassette = load_or_skip(relpath)
    exc_type = getattr(openai, error)
    with replay_server(cassette) as server, pytest.raises(exc_type) as info:
        call(server, path, cassette.request_json(0), mode=mode)
    return cassette, server, info.value


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("relpath", "path", "error", "status", "span"), ERRORS)
def test_error_reaches_caller_and_marks_span(
    traced: Capture,
    mode: str,
    relpath: str,
    path: str,
    error: str,
    status: int,
    span: tuple[str, str, str],
) -> None:
    cassette, server, exc = _call_expecting_error(relpath, path, error, mode)
    assert type(exc) is getattr(openai, error)  # the SDK's own class, not a wrapper
    assert exc.status_code == status
    assert exc.response.status_code == status
    assert exc.body == cassette.response_json(0)["error"]

    name, span_type, operation = span
    trace, record = only_trace(traced)
    assert trace["status"] == "ERROR"
    assert "token_usage" not in trace
    assert record["name"] == name
    assert record["span_type"] == span_type
    assert record["status"] == {"code": "ERROR", "message": f"{error}: {exc}"}
    assert "does not exist" in record["status"]["message"]
    assert record["inputs"] == cassette.request_json(0)
    assert record["outputs"] is None
    assert "token_usage" not in record
    (event,) = record["events"]
    assert event["name"] == "exception"
    attributes = event["attributes"]
    assert attributes["exception.type"] == error
    assert attributes["exception.message"] == str(exc)
    assert f"openai.{error}" in attributes["exception.stacktrace"]
    expected = base_attributes(server, cassette.request_json(0)["model"], operation)
    for key, value in expected.items():
        assert record["attributes"][key] == value, key
    assert not [k for k in record["attributes"] if k.startswith(("gen_ai.usage.", "gen_ai.resp"))]


@pytest.mark.parametrize(("relpath", "path", "error", "status", "span"), ERRORS)
def test_error_span_records_http_status(
    traced: Capture,
    relpath: str,
    path: str,
    error: str,
    status: int,
    span: tuple[str, str, str],
) -> None:
    """Issue 3: "the span is ERROR with an exception event and the HTTP status"."""
    _call_expecting_error(relpath, path, error, "sync")
    _, record = only_trace(traced)
    status_attributes = {
        key: value for key, value in record["attributes"].items() if "status_code" in key
    }
    assert status_attributes, f"no HTTP status attribute in {sorted(record['attributes'])}"
    assert set(status_attributes.values()) <= {status, str(status)}, status_attributes
