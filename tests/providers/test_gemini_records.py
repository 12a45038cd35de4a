"""Gemini (google-genai), replayed: whole exported records incl. "chat"."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

genai = pytest.importorskip("google.genai")

from google.genai import types  # noqa: E402
from tests.contract.adapters import GeminiStream  # noqa: E402
from tests.replay import Cassette, load_or_skip, replay_server  # noqa: E402

from tracekit.testing import Capture  # noqa: E402

Snapshot = Callable[[Capture], list[dict[str, Any]]]


@contextmanager
def client(cassette: Cassette, *, vertex: bool = False) -> Iterator[Any]:
    """A real client talking to the cassette's replay server; every interaction played."""
    with replay_server(cassette) as server:
        yield GeminiStream.client(server, vertex=vertex)
        assert server.unmatched == []
        assert server.all_played()


def test_generate_content_with_history_and_system_instruction(
    autolog: Any, snapshot: Snapshot
) -> None:
    captured = autolog("gemini")
    cassette = load_or_skip("gemini/generate_content_basic.yaml")
    body = cassette.request_json(0)
    with client(cassette) as c:
        c.models.generate_content(
            model="gemini-2.0-flash",
            contents=[types.Content.model_validate(x) for x in body["contents"]],
            config=types.GenerateContentConfig(
                system_instruction=types.Content.model_validate(body["systemInstruction"])
            ),
        )
    snapshot(captured)


def test_function_call(autolog: Any, snapshot: Snapshot) -> None:
    captured = autolog("gemini")
    cassette = load_or_skip("gemini/generate_content_function_call.yaml")
    body = cassette.request_json(0)
    with client(cassette) as c:
        c.models.generate_content(
            model="gemini-2.0-flash",
            contents="What's the weather like in San Francisco?",
            config=types.GenerateContentConfig(
                system_instruction=body["systemInstruction"]["parts"][0]["text"],
                tools=[types.Tool.model_validate(body["tools"][0])],
            ),
        )
    snapshot(captured)


def test_code_execution(autolog: Any, snapshot: Snapshot) -> None:
    captured = autolog("gemini")
    cassette = load_or_skip("gemini/generate_content_thinking_code_execution_tokens.yaml")
    with client(cassette) as c:
        c.models.generate_content(
            model="gemini-2.5-flash",
            contents=cassette.request_json(0)["contents"][0]["parts"][0]["text"],
            config=types.GenerateContentConfig(
                tools=[types.Tool(code_execution=types.ToolCodeExecution())]
            ),
        )
    snapshot(captured)


def test_stream(autolog: Any, snapshot: Snapshot) -> None:
    captured = autolog("gemini")
    cassette = load_or_skip("gemini/stream_generate_content_sse.yaml")
    with client(cassette) as c:

        async def main() -> None:
            stream = await c.aio.models.generate_content_stream(
                model="gemini-2.0-flash", contents="Tell me a short story about a cat."
            )
            [chunk async for chunk in stream]

        asyncio.run(main())
    snapshot(captured)


def test_vertex_stream_with_thinking(autolog: Any, snapshot: Snapshot) -> None:
    captured = autolog("gemini")
    cassette = load_or_skip("gemini/vertexai_stream_generate_content_thinking.yaml")
    with client(cassette, vertex=True) as c:
        list(
            c.models.generate_content_stream(
                model="gemini-2.5-flash", contents="Create a poem about Open Telemetry."
            )
        )
    snapshot(captured)


def get_current_weather(location: str) -> str:
    """Returns the current weather.

    Args:
      location: The city and state, e.g. San Francisco, CA
    """
    return "rainy"


@pytest.mark.filterwarnings("ignore")
def test_automatic_function_calling(autolog: Any, snapshot: Snapshot) -> None:
    """The outer call, the two model calls and the Python tool the SDK ran between them."""
    captured = autolog("gemini")
    cassette = load_or_skip("gemini/generate_content_two_calls_gzip.yaml")
    with client(cassette) as c:
        c.models.generate_content(
            model="gemini-2.0-flash-001",
            contents="What is the weather like in Boston?",
            config=types.GenerateContentConfig(tools=[get_current_weather]),
        )
    snapshot(captured)
