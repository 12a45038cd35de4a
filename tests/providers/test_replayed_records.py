"""Recorded requests sent again as they were, through the real SDK, with autolog on:
whole exported records (incl. "chat") against snapshots/<provider>.<case>.json.

One row a cassette: the adapter (tests/contract/adapters.py: how the provider's client
is made and its call driven) replays every request the cassette holds. A provider whose
calls cannot be sent again from the recorded body (Gemini's typed configs, LangChain's
chains) keeps its own tests beside this file.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from tests.contract.adapters import Adapter, AnthropicMessages, OpenAIChat, OpenAIResponses
from tests.replay import load_or_skip, replay_server

from tracekit.testing import Capture

Snapshot = Callable[..., list[dict[str, Any]]]


@dataclass(frozen=True)
class Case:
    name: str  # the snapshot: <provider>.<name>.json
    adapter: Adapter
    cassette: str  # tests/cassettes/<provider>/<cassette>.yaml
    is_async: bool = False

    @property
    def id(self) -> str:
        return f"{self.adapter.provider}.{self.name}"


ANTHROPIC = AnthropicMessages(helper=False)
ANTHROPIC_HELPER = AnthropicMessages(helper=True)
CHAT = OpenAIChat(helper=False)
RESPONSES = OpenAIResponses(helper=False)

CASES = [
    Case("messages", ANTHROPIC, "messages_nonstream_basic_gzip"),
    Case("tool_use", ANTHROPIC, "messages_tool_use_nonstream_gzip"),
    Case("tool_use_stream_parallel", ANTHROPIC, "messages_tool_use_stream_parallel", True),
    Case("stream", ANTHROPIC, "messages_stream_basic"),
    Case("stream_helper", ANTHROPIC_HELPER, "messages_stream_basic"),
    Case("extended_thinking_stream", ANTHROPIC, "messages_extended_thinking_stream"),
    Case(
        "prompt_caching_system_and_cache_control",
        ANTHROPIC,
        "messages_prompt_caching_nonstream_write_then_read_gzip",
    ),
    Case("chat", CHAT, "chat_completions_nonstream_basic"),
    Case("chat_tool_calls_two_turns", CHAT, "chat_completions_tool_calls_two_turns"),
    Case("chat_stream", CHAT, "chat_completions_stream_include_usage", True),
    Case("chat_stream_parallel_tool_calls", CHAT, "chat_completions_tool_calls_stream_parallel"),
    Case(
        "chat_stream_reasoning_openrouter",
        OpenAIChat(helper=False, api_path="/api/v1"),
        "openai_compatible_openrouter_stream_reasoning",
    ),
    Case("responses", RESPONSES, "responses_nonstream_basic"),
    Case("responses_function_call", RESPONSES, "responses_function_call"),
    Case("responses_reasoning", RESPONSES, "responses_reasoning_tokens"),
    Case("responses_stream", RESPONSES, "responses_stream"),
]


def replay(case: Case) -> None:
    """Send every recorded request of the case's cassette with the real client."""
    a = case.adapter
    pytest.importorskip(a.provider)
    cassette = load_or_skip(f"{a.provider}/{case.cassette}.yaml")
    requests = [cassette.request_json(i) for i in range(len(cassette))]
    with replay_server(cassette) as server:
        if case.is_async:

            async def main() -> None:
                async with a.async_client(server, "test") as client:
                    for request in requests:
                        await a.replay_async(client, request)

            asyncio.run(main())
        else:
            with a.sync_client(server, "test") as client:
                for request in requests:
                    a.replay_sync(client, request)
        assert server.unmatched == []
        assert server.all_played()


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_replayed(case: Case, autolog: Any, snapshot: Snapshot) -> None:
    captured: Capture = autolog(case.adapter.provider)
    replay(case)
    snapshot(captured, case.id)
