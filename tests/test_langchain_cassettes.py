"""Recorded ChatOpenAI traffic replayed through langchain-openai: exact LangChain spans.

Every cassette in tests/cassettes/langchain/ is served over loopback by
`tests.replay` (with `match_body=True`, so the test proves it reproduced the
recorded request: model, stream, stream_options, n, logprobs, temperature,
max_tokens, tools) to a real `langchain_openai.ChatOpenAI`, with
`tracekit.langchain.autolog()` on, and once more with `tracekit.openai.autolog()`
on as well. Each test asserts the ChatOpenAI `CHAT_MODEL` span's exact token
usage (for streams the final figure, never a sum of chunks; absent when the
server sent none), its outputs, and with the provider integration on, that the
provider span nests inside the ChatOpenAI span and the trace counts the call's
tokens once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

pytest.importorskip("openai")
langchain_openai = pytest.importorskip("langchain_openai")

from langchain_core.messages import AIMessageChunk  # noqa: E402
from langchain_core.prompts import ChatPromptTemplate  # noqa: E402
from langchain_core.tools import tool  # noqa: E402
from tests.replay import (  # noqa: E402
    Cassette,
    ReplayServer,
    cassette_names,
    load_or_skip,
    replay_server,
)

import tracekit  # noqa: E402
import tracekit.langchain  # noqa: E402
import tracekit.openai  # noqa: E402
from tracekit.integrations.langchain import integration as langchain_integration  # noqa: E402
from tracekit.integrations.openai import integration as openai_integration  # noqa: E402
from tracekit.testing import Capture  # noqa: E402


@dataclass(frozen=True)
class Expected:
    usage: dict[str, int] | None  # the ChatOpenAI span's exact token_usage (None: no key)
    modes: tuple[str, ...]  # how the cassette is replayed


STREAM_MODES = ("invoke", "ainvoke", "stream", "astream")
PLAIN_MODES = ("invoke", "ainvoke")

# Every file in tests/cassettes/langchain/ and what its ChatOpenAI span must hold.
CASES: dict[str, Expected] = {
    "chatopenai_stream_usage_include_usage.yaml": Expected(
        {"input_tokens": 18, "output_tokens": 15, "total_tokens": 33}, STREAM_MODES
    ),
    "chatopenai_bind_tools_parallel_calls.yaml": Expected(
        {
            "input_tokens": 87,
            "output_tokens": 50,
            "total_tokens": 137,
            "cache_read_input_tokens": 0,
            "reasoning_tokens": 0,
        },
        PLAIN_MODES,
    ),
    "chatopenai_lcel_cached_tokens_gzip.yaml": Expected(
        {
            "input_tokens": 1497,
            "output_tokens": 1037,
            "total_tokens": 2534,
            "cache_read_input_tokens": 1408,
            "reasoning_tokens": 0,
        },
        PLAIN_MODES,
    ),
    "chatopenai_vllm_openai_compatible_nonstream.yaml": Expected(
        {"input_tokens": 57, "output_tokens": 20, "total_tokens": 77}, PLAIN_MODES
    ),
    "chatopenai_vllm_openai_compatible_stream.yaml": Expected(None, STREAM_MODES),
}

CASE_PARAMS = [
    pytest.param(name, mode, id=f"{name.removesuffix('.yaml')}-{mode}")
    for name, expected in CASES.items()
    for mode in expected.modes
]


@pytest.fixture(params=[False, True], ids=["langchain", "langchain+openai"])
def provider(request: pytest.FixtureRequest, autolog: Callable[..., Capture]) -> bool:
    """LangChain autolog on (and OpenAI autolog too when the param is True)."""
    autolog("langchain", *(["openai"] if request.param else []))
    return bool(request.param)


def test_every_langchain_cassette_is_replayed() -> None:
    assert cassette_names("langchain") == set(CASES)


# -- rebuilding the recorded call ---------------------------------------------------------


@tool
def add(a: int, b: int) -> int:
    """Adds a and b."""
    return a + b


@tool
def multiply(a: int, b: int) -> int:
    """Multiplies a and b."""
    return a * b


TOOLS = {"add": add, "multiply": multiply}


def chat_model(server: ReplayServer, request: dict[str, Any]) -> Any:
    """A ChatOpenAI that sends exactly the recorded request body."""
    kwargs: dict[str, Any] = {
        "base_url": server.base_url + "/v1",
        "api_key": "test",
        "max_retries": 0,
        "model": request["model"],
    }
    for key in ("temperature", "n", "logprobs"):
        if key in request:
            kwargs[key] = request[key]
    if "max_tokens" in request:
        # ChatOpenAI sends its `max_tokens` as `max_completion_tokens`; the vLLM server
        # of the recording was sent the legacy field, as a user of such a server would.
        kwargs["extra_body"] = {"max_tokens": request["max_tokens"]}
    if request.get("stream"):
        kwargs["streaming"] = True
        kwargs["stream_usage"] = bool((request.get("stream_options") or {}).get("include_usage"))
    model = langchain_openai.ChatOpenAI(**kwargs)
    if request.get("tools"):
        names = [t["function"]["name"] for t in request["tools"]]
        model = model.bind_tools([TOOLS[name] for name in names])
    return model


def runnable_and_input(server: ReplayServer, cassette: Cassette) -> tuple[Any, Any]:
    request = cassette.request_json(0)
    model = chat_model(server, request)
    messages = [(m["role"], m["content"]) for m in request["messages"]]
    if "lcel" in cassette.path.name:  # recorded from `prompt | ChatOpenAI`
        (_, system), (_, text) = messages
        prompt = ChatPromptTemplate.from_messages([("system", system), ("user", "{text}")])
        return prompt | model, {"text": text}
    return model, messages


def run(runnable: Any, value: Any, mode: str) -> Any:
    """The final AIMessage as the user sees it (streams aggregated by the caller)."""
    if mode == "invoke":
        return runnable.invoke(value)
    if mode == "ainvoke":
        return asyncio.run(runnable.ainvoke(value))
    if mode == "stream":
        chunks = list(runnable.stream(value))
    else:

        async def consume() -> list[AIMessageChunk]:
            return [chunk async for chunk in runnable.astream(value)]

        chunks = asyncio.run(consume())
    assert len(chunks) > 1
    message = chunks[0]
    for chunk in chunks[1:]:
        message = message + chunk
    return message


def recorded_content(cassette: Cassette) -> str | None:
    if cassette.interactions[0].is_sse:
        return "".join(
            (choice.get("delta") or {}).get("content") or ""
            for event in cassette.sse_json(0)
            for choice in event.get("choices") or []
        )
    return cassette.response_json(0)["choices"][0]["message"]["content"]


# -- the tests ------------------------------------------------------------------------------


def _spans(record: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [s for s in record["spans"] if s["name"] == name]


def _generation(span: dict[str, Any]) -> dict[str, Any]:
    ((generation,),) = span["outputs"]["generations"]
    return generation


@pytest.mark.parametrize(("name", "mode"), CASE_PARAMS)
def test_chatopenai_cassette(name: str, mode: str, provider: bool, captured: Capture) -> None:
    expected = CASES[name]
    cassette = load_or_skip(f"langchain/{name}")
    request = cassette.request_json(0)
    with replay_server(cassette, match_body=True) as server:
        runnable, value = runnable_and_input(server, cassette)
        message = run(runnable, value, mode)
        assert server.unmatched == [], "the recorded request was not reproduced"
        assert server.all_played()

    # What the user got is what LangChain parsed from the recording.
    content = recorded_content(cassette)
    if content is not None:
        assert message.content == content
    if expected.usage is None:
        assert message.usage_metadata is None
    else:
        assert message.usage_metadata["total_tokens"] == expected.usage["total_tokens"]

    record = captured.single()
    (chat,) = _spans(record, "ChatOpenAI")
    assert chat["span_type"] == "CHAT_MODEL"
    assert chat["status"]["code"] == "OK"
    assert chat["events"] == []
    assert chat["attributes"]["gen_ai.request.model"] == request["model"]
    assert chat["attributes"]["gen_ai.provider.name"] == "openai"
    if request.get("stream"):
        assert chat["attributes"]["tracekit.stream"] is True

    # Exact usage: the final figure of the call (for streams never a sum of chunks),
    # absent when the server sent none.
    if expected.usage is None:
        assert "token_usage" not in chat
        assert "token_usage" not in record
    else:
        assert chat["token_usage"] == expected.usage
        input_tokens = chat["attributes"]["gen_ai.usage.input_tokens"]
        assert input_tokens == expected.usage["input_tokens"]
        assert chat["attributes"]["gen_ai.usage.output_tokens"] == expected.usage["output_tokens"]
        # Counted once, whether or not the provider span inside carries the same usage.
        assert record["token_usage"] == expected.usage

    # Outputs: the LLMResult, JSON-safe, with the recorded answer.
    generation = _generation(chat)
    if content is not None:
        assert generation["text"] == content
        assert generation["message"]["content"] == content
    if request.get("tools"):
        assert [c["name"] for c in message.tool_calls] == ["multiply", "add"]
    assert chat["inputs"]["messages"][0][-1]["content"] == request["messages"][-1]["content"]

    # The recorded call, as a span tree.
    if "lcel" in name:
        (root,) = _spans(record, "RunnableSequence")
        (prompt,) = _spans(record, "ChatPromptTemplate")
        assert root["parent_id"] is None
        assert prompt["parent_id"] == chat["parent_id"] == root["span_id"]
        assert root["outputs"]["content"] == content
        assert root["inputs"] == {"text": request["messages"][1]["content"]}
    else:
        assert chat["parent_id"] is None
        assert record["name"] == "ChatOpenAI"

    provider_spans = [s for s in record["spans"] if s["name"] == f"chat {request['model']}"]
    if not provider:
        assert provider_spans == []
        assert len(record["spans"]) == (3 if "lcel" in name else 1)
    else:
        # With OpenAI autolog: the provider span nests inside the ChatOpenAI span.
        (inner,) = provider_spans
        assert inner["parent_id"] == chat["span_id"]
        assert inner["span_type"] == "CHAT_MODEL"
        assert inner["status"]["code"] == "OK"
        assert len(record["spans"]) == (4 if "lcel" in name else 2)
        if expected.usage is None:
            assert "token_usage" not in inner
        else:
            # Both spans show the call's usage; the trace (asserted above) counts it once.
            for key in ("input_tokens", "output_tokens", "total_tokens"):
                assert inner["token_usage"][key] == expected.usage[key]
            both = sum(s.get("token_usage", {}).get("total_tokens", 0) for s in record["spans"])
            assert both == 2 * expected.usage["total_tokens"]

    # The parsed tool calls are part of the span's outputs (the AIMessage, whole).
    if request.get("tools"):
        calls = generation["message"]["tool_calls"]
        assert [c["name"] for c in calls] == ["multiply", "add"]
        assert [c["args"] for c in calls] == [{"a": 3, "b": 12}, {"a": 11, "b": 49}]


def run_agent_step(cassette: Cassette, session: str | None = None) -> list[Any]:
    """The app, with LangChain and OpenAI autolog on: an agent step (in `session`) that
    asks the model and runs the tools it called; returns the tools' results."""
    tracekit.langchain.autolog()
    tracekit.openai.autolog()
    try:
        with replay_server(cassette, match_body=True) as server:
            runnable, value = runnable_and_input(server, cassette)

            @tracekit.trace(span_type="AGENT")
            def agent_step() -> list[Any]:
                if session is not None:
                    tracekit.update_current_trace(session_id=session, user_id="u-7")
                message = runnable.invoke(value)
                return [TOOLS[call["name"]].invoke(call) for call in message.tool_calls]

            results = agent_step()
            assert server.unmatched == []
    finally:
        langchain_integration.revert()
        openai_integration.revert()
    return results


def test_bind_tools_calls_run_as_tool_spans_in_one_trace(captured: Capture) -> None:
    """The recorded parallel tool calls executed by the app: one trace, two TOOL spans
    under the app's span, beside the model span; the usage is the model call's."""
    cassette = load_or_skip("langchain/chatopenai_bind_tools_parallel_calls.yaml")
    results = run_agent_step(cassette)
    assert [r.content for r in results] == ["36", "60"]
    record = captured.single()
    (root,) = _spans(record, "agent_step")
    (chat,) = _spans(record, "ChatOpenAI")
    (inner,) = _spans(record, "chat gpt-4o-mini")
    (mul,) = _spans(record, "multiply")
    (plus,) = _spans(record, "add")
    assert root["parent_id"] is None
    assert chat["parent_id"] == mul["parent_id"] == plus["parent_id"] == root["span_id"]
    assert inner["parent_id"] == chat["span_id"]
    assert mul["span_type"] == plus["span_type"] == "TOOL"
    assert mul["inputs"] == {"a": 3, "b": 12}
    assert plus["inputs"] == {"a": 11, "b": 49}
    assert mul["outputs"]["content"] == "36"
    assert plus["outputs"]["content"] == "60"
    assert mul["attributes"]["gen_ai.tool.name"] == "multiply"
    assert record["token_usage"] == CASES[cassette.path.name].usage
