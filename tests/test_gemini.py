"""Gemini (google-genai) cassettes replayed through the real SDK, sync and `client.aio`.

Every cassette in tests/cassettes/gemini/ is served over a loopback socket
(tests/replay.py) to a real `genai.Client` (the Gemini Developer API on
`/v1beta`, and a Vertex AI client for the Vertex cassette), with
`tracekit.gemini.autolog()` on. The expected figures come from the recorded
wire (DESIGN.md's Gemini row: input = promptTokenCount + toolUsePromptTokenCount,
output = candidatesTokenCount + thoughtsTokenCount, total = totalTokenCount,
reasoning = thoughtsTokenCount; a stream's usage is its LAST cumulative
usageMetadata, never a sum).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import pytest

genai = pytest.importorskip("google.genai")

from google.genai import errors, types  # noqa: E402
from tests.contract.adapters import GeminiStream  # noqa: E402
from tests.replay import Cassette, ReplayServer, cassette_names, load_or_skip, replay_server  # noqa: E402
from tests.trace_checks import only_trace  # noqa: E402

from tracekit.testing import Capture  # noqa: E402

PROVIDER = "gemini"  # the `traced` fixture autologs it (tests/conftest.py)

MODES = ["sync", "aio"]


# -- helpers ---------------------------------------------------------------------------


def run(mode: str, client: Any, method: str, **kwargs: Any) -> Any:
    """`client.models.<method>(**kwargs)` or its `client.aio` twin (awaited)."""
    if mode == "sync":
        return getattr(client.models, method)(**kwargs)
    return asyncio.run(getattr(client.aio.models, method)(**kwargs))


def stream(mode: str, client: Any, **kwargs: Any) -> list[Any]:
    """Every chunk of `generate_content_stream`, sync or awaited-then-iterated."""
    if mode == "sync":
        return list(client.models.generate_content_stream(**kwargs))

    async def go() -> list[Any]:
        chunks = []
        async for chunk in await client.aio.models.generate_content_stream(**kwargs):
            chunks.append(chunk)
        return chunks

    return asyncio.run(go())


def part_kinds(span: dict[str, Any]) -> list[str]:
    """The kind of each output part (its set fields, `thought_signature` aside)."""
    parts = span["outputs"]["candidates"][0]["content"]["parts"]
    kinds = []
    for part in parts:
        (kind,) = [k for k, v in part.items() if v is not None and k not in ("thought_signature",)]
        kinds.append(kind)
    return kinds


def played_cleanly(server: ReplayServer) -> None:
    assert server.unmatched == [], [r.path for r in server.unmatched]
    assert server.all_played()


def recorded_text(cassette: Cassette, i: int = 0) -> str:
    parts = cassette.response_json(i)["candidates"][0]["content"]["parts"]
    return "".join(p.get("text", "") for p in parts)


def sse_texts(cassette: Cassette) -> list[str]:
    """The text of every streamed text part, in order, from the recorded SSE body."""
    out = []
    for event in cassette.sse_json(0):
        for part in event["candidates"][0]["content"]["parts"]:
            if "text" in part:
                out.append(part["text"])
    return out


def common_attributes(span: dict[str, Any], model: str, provider: str = "gcp.gemini") -> None:
    attributes = span["attributes"]
    assert attributes["gen_ai.provider.name"] == provider
    assert attributes["gen_ai.operation.name"] == "generate_content"
    assert attributes["gen_ai.request.model"] == model
    assert attributes["server.address"] == "127.0.0.1"
    assert isinstance(attributes["server.port"], int)


def usage_attributes(span: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in span["attributes"].items() if k.startswith("gen_ai.usage.")}


# -- non-streamed generateContent -----------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_generate_content_basic(traced: Capture, mode: str):
    cassette = load_or_skip("gemini/generate_content_basic.yaml")
    body = cassette.request_json(0)
    contents = [types.Content.model_validate(c) for c in body["contents"]]
    system = types.Content.model_validate(body["systemInstruction"])
    with replay_server(cassette) as server:
        response = run(
            mode,
            GeminiStream.client(server),
            "generate_content",
            model="gemini-2.0-flash",
            contents=contents,
            config=types.GenerateContentConfig(system_instruction=system),
        )
        played_cleanly(server)
        # The SDK sent what was recorded: the replay is faithful.
        assert server.requests[0].json["contents"] == body["contents"]
    assert isinstance(response, types.GenerateContentResponse)  # the caller's object
    assert response.text == recorded_text(cassette)

    record, span = only_trace(traced)
    assert span["name"] == "generate_content gemini-2.0-flash"
    assert span["span_type"] == "CHAT_MODEL"
    assert span["status"] == {"code": "OK", "message": ""}
    assert span["token_usage"] == {"input_tokens": 45, "output_tokens": 23, "total_tokens": 68}
    assert record["token_usage"] == span["token_usage"]
    common_attributes(span, "gemini-2.0-flash")
    attributes = span["attributes"]
    assert attributes["gen_ai.response.model"] == "gemini-2.0-flash"
    assert attributes["gen_ai.response.id"] == "hNcEarPuMNa3qtsP7MHt4As"
    assert attributes["gen_ai.response.finish_reasons"] == ["STOP"]
    assert usage_attributes(span) == {
        "gen_ai.usage.input_tokens": 45,
        "gen_ai.usage.output_tokens": 23,
    }
    assert "tracekit.stream" not in attributes
    assert "tracekit.gemini.automatic_function_calling" not in attributes
    # inputs: the call's arguments, the conversation with its function response included
    assert span["inputs"]["model"] == "gemini-2.0-flash"
    assert len(span["inputs"]["contents"]) == 3
    assert span["inputs"]["contents"][2]["parts"][0]["function_response"]["response"] == {
        "location": "San Francisco",
        "temperature": 65,
        "unit": "fahrenheit",
        "condition": "foggy",
        "humidity": "85%",
    }
    assert span["inputs"]["config"]["system_instruction"]["parts"][0]["text"].startswith(
        "You are a helpful assistant"
    )
    # outputs: the candidates as received
    assert part_kinds(span) == ["text"]
    candidate = span["outputs"]["candidates"][0]
    assert candidate["content"]["parts"][0]["text"] == recorded_text(cassette)
    assert candidate["finish_reason"] == "STOP"
    assert span["outputs"]["usage_metadata"]["prompt_token_count"] == 45
    assert span["outputs"]["model_version"] == "gemini-2.0-flash"
    json.dumps(record)


@pytest.mark.parametrize("mode", MODES)
def test_generate_content_function_call(traced: Capture, mode: str):
    cassette = load_or_skip("gemini/generate_content_function_call.yaml")
    body = cassette.request_json(0)
    tool = types.Tool.model_validate(body["tools"][0])  # a declaration, not a Python function
    with replay_server(cassette) as server:
        response = run(
            mode,
            GeminiStream.client(server),
            "generate_content",
            model="gemini-2.0-flash",
            contents="What's the weather like in San Francisco?",
            config=types.GenerateContentConfig(
                system_instruction=body["systemInstruction"]["parts"][0]["text"], tools=[tool]
            ),
        )
        played_cleanly(server)
    assert response.function_calls[0].name == "get_weather"

    record, span = only_trace(traced)  # no automatic function calling: one span
    assert span["name"] == "generate_content gemini-2.0-flash"
    assert span["span_type"] == "CHAT_MODEL"
    assert span["status"]["code"] == "OK"
    assert span["token_usage"] == {"input_tokens": 63, "output_tokens": 6, "total_tokens": 69}
    assert record["token_usage"] == span["token_usage"]
    common_attributes(span, "gemini-2.0-flash")
    attributes = span["attributes"]
    assert "tracekit.gemini.automatic_function_calling" not in attributes
    assert attributes["gen_ai.response.finish_reasons"] == ["STOP"]
    (definition,) = attributes["gen_ai.tool.definitions"]
    assert definition["function_declarations"][0]["name"] == "get_weather"
    assert part_kinds(span) == ["function_call"]
    call = span["outputs"]["candidates"][0]["content"]["parts"][0]["function_call"]
    assert call["name"] == "get_weather"
    assert call["args"] == {"location": "San Francisco"}


@pytest.mark.parametrize("mode", MODES)
def test_generate_content_thinking_and_code_execution_tokens(traced: Capture, mode: str):
    cassette = load_or_skip("gemini/generate_content_thinking_code_execution_tokens.yaml")
    with replay_server(cassette) as server:
        response = run(
            mode,
            GeminiStream.client(server),
            "generate_content",
            model="gemini-2.5-flash",
            contents=cassette.request_json(0)["contents"][0]["parts"][0]["text"],
            config=types.GenerateContentConfig(
                tools=[types.Tool(code_execution=types.ToolCodeExecution())]
            ),
        )
        played_cleanly(server)
    assert response.usage_metadata.total_token_count == 1196

    record, span = only_trace(traced)
    assert span["name"] == "generate_content gemini-2.5-flash"
    assert span["status"]["code"] == "OK"
    # prompt 32 + tool-use prompt 720; candidates 341 + thoughts 103; total as sent.
    assert span["token_usage"] == {
        "input_tokens": 752,
        "output_tokens": 444,
        "total_tokens": 1196,
        "reasoning_tokens": 103,
    }
    assert record["token_usage"] == span["token_usage"]
    assert usage_attributes(span) == {
        "gen_ai.usage.input_tokens": 752,
        "gen_ai.usage.output_tokens": 444,
        "gen_ai.usage.reasoning.output_tokens": 103,
    }
    common_attributes(span, "gemini-2.5-flash")
    assert part_kinds(span) == ["text", "executable_code", "code_execution_result", "text"]
    parts = span["outputs"]["candidates"][0]["content"]["parts"]
    assert parts[1]["executable_code"]["language"] == "PYTHON"
    assert parts[2]["code_execution_result"]["outcome"] == "OUTCOME_OK"
    assert "5117" in parts[3]["text"]


def get_current_weather(location: str) -> str:
    """Returns the current weather.

    Args:
      location: The city and state, e.g. San Francisco, CA
    """
    return "rainy"


async def _async_get_current_weather(location: str) -> str:
    """Returns the current weather.

    Args:
      location: The city and state, e.g. San Francisco, CA
    """
    return "rainy"


# The SDK finds the function by name: the async twin must have the recorded one.
_async_get_current_weather.__name__ = "get_current_weather"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.filterwarnings("ignore")
def test_automatic_function_calling_nests_model_calls_and_the_tool(traced: Capture, mode: str):
    cassette = load_or_skip("gemini/generate_content_two_calls_gzip.yaml")
    question = "What is the weather like in Boston?"
    tool = get_current_weather if mode == "sync" else _async_get_current_weather
    with replay_server(cassette) as server:
        response = run(
            mode,
            GeminiStream.client(server),
            "generate_content",
            model="gemini-2.0-flash-001",
            contents=question,
            config=types.GenerateContentConfig(tools=[tool]),
        )
        played_cleanly(server)
        # The second request carried the function's answer, as recorded.
        sent = server.requests[1].json["contents"][2]["parts"][0]["functionResponse"]
        assert sent == {"name": "get_current_weather", "response": {"result": "rainy"}}
    assert response.text == "It is rainy in Boston, MA.\n"

    (record,) = traced.traces
    spans = record["spans"]
    assert [s["name"] for s in spans] == [
        "generate_content gemini-2.0-flash-001",
        "generate_content gemini-2.0-flash-001",
        "get_current_weather",
        "generate_content gemini-2.0-flash-001",
    ]
    outer, first, tool_span, second = spans
    assert outer["parent_id"] is None
    assert {first["parent_id"], tool_span["parent_id"], second["parent_id"]} == {outer["span_id"]}
    # The tool ran between the two model calls.
    assert first["end_time_ns"] <= tool_span["start_time_ns"]
    assert tool_span["end_time_ns"] <= second["start_time_ns"]
    assert second["end_time_ns"] <= outer["end_time_ns"]

    # The outer span: the whole exchange, without usage of its own (the calls carry it).
    assert outer["span_type"] == "CHAT_MODEL"
    assert outer["status"]["code"] == "OK"
    assert "token_usage" not in outer
    assert outer["attributes"]["tracekit.gemini.automatic_function_calling"] is True
    assert outer["inputs"]["contents"] == question
    assert outer["outputs"]["candidates"][0]["content"]["parts"][0]["text"] == (
        "It is rainy in Boston, MA.\n"
    )
    history = outer["outputs"]["automatic_function_calling_history"]
    assert [c["role"] for c in history] == ["user", "model", "user"]

    # The model calls, each with its own recorded usage.
    for span in (first, second):
        assert span["name"] == "generate_content gemini-2.0-flash-001"
        assert span["span_type"] == "CHAT_MODEL"
        assert span["status"]["code"] == "OK"
        common_attributes(span, "gemini-2.0-flash-001")
        assert "tracekit.gemini.automatic_function_calling" not in span["attributes"]
    assert first["token_usage"] == {"input_tokens": 42, "output_tokens": 9, "total_tokens": 51}
    assert second["token_usage"] == {"input_tokens": 58, "output_tokens": 9, "total_tokens": 67}
    assert part_kinds(first) == ["function_call"]
    call = first["outputs"]["candidates"][0]["content"]["parts"][0]["function_call"]
    assert call["name"] == "get_current_weather"
    assert call["args"] == {"location": "Boston, MA"}
    assert first["attributes"]["gen_ai.response.id"] == "-AtkaJ3CG-mm7dcPpc-_sAU"
    assert second["attributes"]["gen_ai.response.id"] == "-QtkaLDGCIuT7dcPsNuzuAk"
    assert part_kinds(second) == ["text"]
    # Each model call's inputs are what that call sent: the question, then the
    # question, the function call and the function's response.
    assert first["inputs"]["contents"] == question
    assert [c["role"] for c in second["inputs"]["contents"]] == ["user", "model", "user"]

    # The tool: the model's arguments in, the function's return out.
    assert tool_span["span_type"] == "TOOL"
    assert tool_span["status"]["code"] == "OK"
    assert tool_span["inputs"] == {"location": "Boston, MA"}
    assert tool_span["outputs"] == "rainy"
    assert tool_span["attributes"]["gen_ai.tool.name"] == "get_current_weather"
    assert tool_span["attributes"]["gen_ai.operation.name"] == "execute_tool"
    assert "token_usage" not in tool_span

    # The trace counts both model calls once each.
    assert record["token_usage"] == {"input_tokens": 100, "output_tokens": 18, "total_tokens": 118}
    json.dumps(record)


def as_sse(cassette: Cassette) -> Cassette:
    """The cassette's generateContent answers served as one-event streamGenerateContent
    answers (the same recorded JSON, as Gemini streams it)."""
    interactions = []
    for i, it in enumerate(cassette.interactions):
        body = f"data: {json.dumps(cassette.response_json(i))}\r\n\r\n".encode()
        interactions.append(
            dataclasses.replace(
                it,
                path=it.path.replace(":generateContent", ":streamGenerateContent"),
                response_headers=[
                    ("Content-Type", "text/event-stream"),
                    ("Content-Length", str(len(body))),
                ],
                response_body=body,
            )
        )
    return Cassette(cassette.path, interactions)


@pytest.mark.xfail(
    strict=True,
    reason="known gap: automatic function calling inside generate_content_stream is one span "
    "with the last call's usage; the model calls and tools are not split out yet",
)
@pytest.mark.filterwarnings("ignore")
def test_automatic_function_calling_in_a_stream_counts_both_model_calls(traced: Capture):
    """`generate_content_stream` with a Python tool runs the same two model calls and
    the tool: the trace must count both calls' usage and show the tool."""
    cassette = as_sse(load_or_skip("gemini/generate_content_two_calls_gzip.yaml"))
    with replay_server(cassette) as server:
        client = GeminiStream.client(server)
        chunks = list(
            client.models.generate_content_stream(
                model="gemini-2.0-flash-001",
                contents="What is the weather like in Boston?",
                config=types.GenerateContentConfig(tools=[get_current_weather]),
            )
        )
        played_cleanly(server)
    assert chunks[-1].text == "It is rainy in Boston, MA.\n"

    (record,) = traced.traces
    tools = [s for s in record["spans"] if s["span_type"] == "TOOL"]
    assert [(s["name"], s["inputs"], s["outputs"]) for s in tools] == [
        ("get_current_weather", {"location": "Boston, MA"}, "rainy")
    ]
    assert record["token_usage"] == {"input_tokens": 100, "output_tokens": 18, "total_tokens": 118}


@pytest.mark.parametrize("mode", MODES)
def test_404_reaches_the_caller_unchanged_and_the_span_is_an_error(traced: Capture, mode: str):
    cassette = load_or_skip("gemini/generate_content_404_model_not_found_parsed_body.yaml")
    with replay_server(cassette) as server, pytest.raises(errors.ClientError) as info:
        run(
            mode,
            GeminiStream.client(server),
            "generate_content",
            model="gemini-3.6-flahs",
            contents="hello",
            config=types.GenerateContentConfig(response_modalities=["TEXT"]),
        )
    assert type(info.value) is errors.ClientError  # the SDK's own exception, not a wrapper
    assert info.value.code == 404
    assert info.value.status == "NOT_FOUND"

    record, span = only_trace(traced)
    assert record["status"] == "ERROR"
    assert span["name"] == "generate_content gemini-3.6-flahs"
    assert span["status"]["code"] == "ERROR"
    assert "is not found" in span["status"]["message"]
    assert span["attributes"]["http.response.status_code"] == 404
    assert span["attributes"]["error.type"] == "ClientError"
    (event,) = span["events"]
    assert event["name"] == "exception"
    assert event["attributes"]["exception.type"].endswith("ClientError")
    assert "is not found" in event["attributes"]["exception.message"]
    assert "ClientError" in event["attributes"]["exception.stacktrace"]
    assert "token_usage" not in span
    assert span["outputs"] is None


# -- streamed streamGenerateContent (SSE) ----------------------------------------------


def stream_span(captured: Capture, chunks: int) -> tuple[dict[str, Any], dict[str, Any]]:
    record, span = only_trace(captured)
    assert span["span_type"] == "CHAT_MODEL"
    assert span["status"] == {"code": "OK", "message": ""}
    assert span["attributes"]["tracekit.stream"] is True
    assert span["attributes"]["tracekit.stream.chunks"] == chunks
    assert "tracekit.stream.ended_by" not in span["attributes"]  # read to the end
    assert span["attributes"]["tracekit.time_to_first_chunk_s"] >= 0
    return record, span


@pytest.mark.parametrize("mode", MODES)
def test_stream_takes_the_last_cumulative_usage(traced: Capture, mode: str):
    cassette = load_or_skip("gemini/stream_generate_content_sse.yaml")
    with replay_server(cassette) as server:
        chunks = stream(
            mode,
            GeminiStream.client(server),
            model="gemini-2.0-flash",
            contents="Tell me a short story about a cat.",
        )
        played_cleanly(server)
        assert server.requests[0].query == "alt=sse"
    assert len(chunks) == 12
    assert all(isinstance(c, types.GenerateContentResponse) for c in chunks)
    text = "".join(sse_texts(cassette))
    assert "".join(c.text for c in chunks) == text

    record, span = stream_span(traced, 12)
    assert span["name"] == "generate_content gemini-2.0-flash"
    # Every chunk carried usage (10 prompt tokens each); the last one is the answer.
    assert span["token_usage"] == {"input_tokens": 9, "output_tokens": 527, "total_tokens": 536}
    assert record["token_usage"] == span["token_usage"]
    assert usage_attributes(span) == {
        "gen_ai.usage.input_tokens": 9,
        "gen_ai.usage.output_tokens": 527,
    }
    common_attributes(span, "gemini-2.0-flash")
    assert span["attributes"]["gen_ai.response.finish_reasons"] == ["STOP"]
    assert span["attributes"]["gen_ai.response.id"] == "jNcEavSuHfWA7_UP9-uokQs"
    assert span["attributes"]["gen_ai.response.model"] == "gemini-2.0-flash"
    candidate = span["outputs"]["candidates"][0]
    assert candidate["content"] == {"role": "model", "parts": [{"text": text}]}  # assembled
    assert candidate["finish_reason"] == "STOP"
    assert span["outputs"]["usage_metadata"]["total_token_count"] == 536
    assert span["inputs"]["contents"] == "Tell me a short story about a cat."


@pytest.mark.parametrize("mode", MODES)
def test_stream_with_thinking_and_code_execution_tokens(traced: Capture, mode: str):
    cassette = load_or_skip("gemini/stream_generate_content_thinking_code_execution_tokens.yaml")
    with replay_server(cassette) as server:
        chunks = stream(
            mode,
            GeminiStream.client(server),
            model="gemini-2.5-flash",
            contents=cassette.request_json(0)["contents"][0]["parts"][0]["text"],
            config=types.GenerateContentConfig(
                tools=[types.Tool(code_execution=types.ToolCodeExecution())]
            ),
        )
        played_cleanly(server)
    assert len(chunks) == 11

    record, span = stream_span(traced, 11)
    assert span["name"] == "generate_content gemini-2.5-flash"
    # Last chunk: prompt 32 + tool-use prompt 764, candidates 477 + thoughts 240, total 1513.
    assert span["token_usage"] == {
        "input_tokens": 796,
        "output_tokens": 717,
        "total_tokens": 1513,
        "reasoning_tokens": 240,
    }
    assert record["token_usage"] == span["token_usage"]
    assert span["attributes"]["gen_ai.usage.reasoning.output_tokens"] == 240
    assert span["attributes"]["gen_ai.response.finish_reasons"] == ["STOP"]
    # Texts are joined; code and its result stay parts of their own, in order.
    texts = sse_texts(cassette)
    parts = span["outputs"]["candidates"][0]["content"]["parts"]
    assert [next(iter(p)) for p in parts] == [
        "text",
        "executable_code",
        "code_execution_result",
        "text",
    ]
    assert parts[0] == {"text": "".join(texts[:2])}
    assert parts[3] == {"text": "".join(texts[2:])}
    assert parts[1]["executable_code"]["language"] == "PYTHON"
    assert "def is_prime" in parts[1]["executable_code"]["code"]
    assert parts[2]["code_execution_result"]["outcome"] == "OUTCOME_OK"
    assert not any(p.get("thought") for p in parts)
    assert span["outputs"]["candidates"][0]["finish_reason"] == "STOP"


@pytest.mark.parametrize("mode", MODES)
def test_vertex_ai_stream_with_thinking(traced: Capture, mode: str):
    cassette = load_or_skip("gemini/vertexai_stream_generate_content_thinking.yaml")
    with replay_server(cassette) as server:
        chunks = stream(
            mode,
            GeminiStream.client(server, vertex=True),
            model="gemini-2.5-flash",
            contents="Create a poem about Open Telemetry.",
        )
        played_cleanly(server)
        assert server.requests[0].path.startswith("/v1beta1/projects/test-project/")
        # Vertex authenticates with the bearer token, never records it.
        assert server.requests[0].headers["authorization"] == "Bearer test-token"
    assert len(chunks) == 6

    record, span = stream_span(traced, 6)
    assert span["name"] == "generate_content gemini-2.5-flash"
    common_attributes(span, "gemini-2.5-flash", provider="gcp.vertex_ai")
    # Early chunks carry only {trafficType}; the last has the counts (thoughts 2193).
    assert span["token_usage"] == {
        "input_tokens": 8,
        "output_tokens": 2581,
        "total_tokens": 2589,
        "reasoning_tokens": 2193,
    }
    assert record["token_usage"] == span["token_usage"]
    assert span["attributes"]["gen_ai.response.id"] == "vizpaJGEDvXZnvgPisGa2A0"
    text = "".join(sse_texts(cassette))
    assert text.startswith("When systems hum")
    candidate = span["outputs"]["candidates"][0]
    assert candidate["content"]["parts"] == [{"text": text}]
    assert candidate["finish_reason"] == "STOP"
    assert "test-token" not in json.dumps(record)


def test_every_gemini_cassette_is_replayed_here():
    """A new cassette in tests/cassettes/gemini/ needs a test in this file."""
    covered = {
        "generate_content_404_model_not_found_parsed_body.yaml",
        "generate_content_basic.yaml",
        "generate_content_function_call.yaml",
        "generate_content_thinking_code_execution_tokens.yaml",
        "generate_content_two_calls_gzip.yaml",
        "stream_generate_content_sse.yaml",
        "stream_generate_content_thinking_code_execution_tokens.yaml",
        "vertexai_stream_generate_content_thinking.yaml",
    }
    assert cassette_names("gemini") == covered
