"""Anthropic messages, replayed: whole exported records incl. "chat"."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

anthropic = pytest.importorskip("anthropic")

from tests.replay import load_or_skip, replay_server  # noqa: E402

from tracekit.testing import Capture  # noqa: E402

Snapshot = Callable[[Capture], list[dict[str, Any]]]


def replay(name: str, *, helper: bool = False, is_async: bool = False) -> None:
    """Send every recorded request with the real client: `create` (streams read to the
    end) or the `messages.stream()` helper."""
    cassette = load_or_skip(f"anthropic/{name}.yaml")
    requests = [cassette.request_json(i) for i in range(len(cassette))]
    with replay_server(cassette) as server:
        if is_async:

            async def main() -> None:
                async with anthropic.AsyncAnthropic(
                    api_key="test", base_url=server.base_url, max_retries=0
                ) as client:
                    for request in requests:
                        result = await client.messages.create(**request)
                        if isinstance(result, anthropic.AsyncStream):
                            [event async for event in result]

            asyncio.run(main())
        else:
            with anthropic.Anthropic(
                api_key="test", base_url=server.base_url, max_retries=0
            ) as client:
                for request in requests:
                    if helper:
                        kwargs = {k: v for k, v in request.items() if k != "stream"}
                        with client.messages.stream(**kwargs) as stream:
                            stream.get_final_message()
                    else:
                        result = client.messages.create(**request)
                        if isinstance(result, anthropic.Stream):
                            list(result)
        assert server.unmatched == []
        assert server.all_played()


def test_messages(autolog: Any, snapshot: Snapshot) -> None:
    captured = autolog("anthropic")
    replay("messages_nonstream_basic_gzip")
    snapshot(captured)


def test_tool_use(autolog: Any, snapshot: Snapshot) -> None:
    captured = autolog("anthropic")
    replay("messages_tool_use_nonstream_gzip")
    snapshot(captured)


def test_tool_use_stream_parallel(autolog: Any, snapshot: Snapshot) -> None:
    captured = autolog("anthropic")
    replay("messages_tool_use_stream_parallel", is_async=True)
    snapshot(captured)


def test_stream(autolog: Any, snapshot: Snapshot) -> None:
    captured = autolog("anthropic")
    replay("messages_stream_basic")
    snapshot(captured)


def test_stream_helper(autolog: Any, snapshot: Snapshot) -> None:
    captured = autolog("anthropic")
    replay("messages_stream_basic", helper=True)
    snapshot(captured)


def test_extended_thinking_stream(autolog: Any, snapshot: Snapshot) -> None:
    captured = autolog("anthropic")
    replay("messages_extended_thinking_stream")
    snapshot(captured)


def test_prompt_caching_system_and_cache_control(autolog: Any, snapshot: Snapshot) -> None:
    captured = autolog("anthropic")
    replay("messages_prompt_caching_nonstream_write_then_read_gzip")
    snapshot(captured)
