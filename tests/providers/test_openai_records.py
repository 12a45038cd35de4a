"""OpenAI chat completions and Responses, replayed: whole exported records incl. "chat"."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

openai = pytest.importorskip("openai")

from tests.replay import load_or_skip, replay_server  # noqa: E402

from tracekit.testing import Capture  # noqa: E402

Snapshot = Callable[[Capture], list[dict[str, Any]]]


def replay(
    name: str, path: str = "chat.completions.create", *, is_async: bool = False, prefix: str = "/v1"
) -> None:
    """Send every recorded request of the cassette with the real client; read streams."""
    cassette = load_or_skip(f"openai/{name}.yaml")
    requests = [cassette.request_json(i) for i in range(len(cassette))]
    for request in requests:  # an OpenAI-compatible server's own parameters
        if "reasoning" in request and path.startswith("chat."):
            request["extra_body"] = {"reasoning": request.pop("reasoning")}
    with replay_server(cassette) as server:
        base_url = server.base_url + prefix
        if not is_async:
            with openai.OpenAI(api_key="test", base_url=base_url, max_retries=0) as client:
                method = client
                for part in path.split("."):
                    method = getattr(method, part)
                for request in requests:
                    result = method(**request)
                    if isinstance(result, openai.Stream):
                        list(result)
        else:

            async def main() -> None:
                async with openai.AsyncOpenAI(
                    api_key="test", base_url=base_url, max_retries=0
                ) as client:
                    method: Any = client
                    for part in path.split("."):
                        method = getattr(method, part)
                    for request in requests:
                        result = await method(**request)
                        if isinstance(result, openai.AsyncStream):
                            [item async for item in result]

            asyncio.run(main())
        assert server.unmatched == []
        assert server.all_played()


def test_chat(autolog: Any, snapshot: Snapshot) -> None:
    captured = autolog("openai")
    replay("chat_completions_nonstream_basic")
    snapshot(captured)


def test_chat_tool_calls_two_turns(autolog: Any, snapshot: Snapshot) -> None:
    captured = autolog("openai")
    replay("chat_completions_tool_calls_two_turns")
    snapshot(captured)


def test_chat_stream(autolog: Any, snapshot: Snapshot) -> None:
    captured = autolog("openai")
    replay("chat_completions_stream_include_usage", is_async=True)
    snapshot(captured)


def test_chat_stream_parallel_tool_calls(autolog: Any, snapshot: Snapshot) -> None:
    captured = autolog("openai")
    replay("chat_completions_tool_calls_stream_parallel")
    snapshot(captured)


def test_chat_stream_reasoning_openrouter(autolog: Any, snapshot: Snapshot) -> None:
    captured = autolog("openai")
    replay("openai_compatible_openrouter_stream_reasoning", prefix="/api/v1")
    snapshot(captured)


def test_responses(autolog: Any, snapshot: Snapshot) -> None:
    captured = autolog("openai")
    replay("responses_nonstream_basic", "responses.create")
    snapshot(captured)


def test_responses_function_call(autolog: Any, snapshot: Snapshot) -> None:
    captured = autolog("openai")
    replay("responses_function_call", "responses.create")
    snapshot(captured)


def test_responses_reasoning(autolog: Any, snapshot: Snapshot) -> None:
    captured = autolog("openai")
    replay("responses_reasoning_tokens", "responses.create")
    snapshot(captured)


def test_responses_stream(autolog: Any, snapshot: Snapshot) -> None:
    captured = autolog("openai")
    replay("responses_stream", "responses.create")
    snapshot(captured)
