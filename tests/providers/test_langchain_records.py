"""LangChain's ChatOpenAI over the real OpenAI SDK, replayed with LangChain and OpenAI
autolog both on: whole exported records (the LangChain span and the provider span
inside it) incl. both spans' "chat"."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("openai")
langchain_openai = pytest.importorskip("langchain_openai")

from langchain_core.prompts import ChatPromptTemplate  # noqa: E402
from tests.replay import load_or_skip, replay_server  # noqa: E402
from tests.test_langchain_cassettes import add, multiply  # noqa: E402

from tracekit.testing import Capture  # noqa: E402

Snapshot = Callable[[Capture], list[dict[str, Any]]]


def model(base_url: str, request: dict[str, Any]) -> Any:
    """A ChatOpenAI that sends the recorded request."""
    stream = bool(request.get("stream"))
    chat = langchain_openai.ChatOpenAI(
        base_url=base_url + "/v1",
        api_key="test",
        max_retries=0,
        model=request["model"],
        streaming=stream,
        stream_usage=stream and bool((request.get("stream_options") or {}).get("include_usage")),
        **{k: request[k] for k in ("temperature",) if k in request},
    )
    if request.get("tools"):
        return chat.bind_tools([add, multiply])
    return chat


def test_chatopenai_tool_calls(autolog: Any, snapshot: Snapshot) -> None:
    captured = autolog("langchain", "openai")
    cassette = load_or_skip("langchain/chatopenai_bind_tools_parallel_calls.yaml")
    request = cassette.request_json(0)
    with replay_server(cassette) as server:
        model(server.base_url, request).invoke(
            [(m["role"], m["content"]) for m in request["messages"]]
        )
        assert server.all_played()
    snapshot(captured)


def test_chatopenai_stream(autolog: Any, snapshot: Snapshot) -> None:
    captured = autolog("langchain", "openai")
    cassette = load_or_skip("langchain/chatopenai_stream_usage_include_usage.yaml")
    request = cassette.request_json(0)
    with replay_server(cassette) as server:

        async def main() -> None:
            messages = [(m["role"], m["content"]) for m in request["messages"]]
            [chunk async for chunk in model(server.base_url, request).astream(messages)]

        asyncio.run(main())
        assert server.all_played()
    snapshot(captured)


def test_prompt_template_chain(autolog: Any, snapshot: Snapshot) -> None:
    captured = autolog("langchain")
    cassette = load_or_skip("langchain/chatopenai_lcel_cached_tokens_gzip.yaml")
    request = cassette.request_json(0)
    (system, question) = (m["content"] for m in request["messages"])
    prompt = ChatPromptTemplate.from_messages([("system", system), ("user", "{text}")])
    with replay_server(cassette) as server:
        (prompt | model(server.base_url, request)).invoke({"text": question})
        assert server.all_played()
    snapshot(captured)
