"""LangChain and OpenAI autolog both on, as Phoenix and MLflow show it: each call's
tokens counted once, the chat readable, tools and tool names, the session.

A recorded ChatOpenAI call with two tools (tests/cassettes/langchain) is replayed to
the real langchain-openai; the trace tracekit recorded is exported to a real Phoenix
(OTLP) and a real `mlflow server`, and read back through their own APIs.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

pytest.importorskip("openai")
pytest.importorskip("langchain_openai")

from tests.mlflow_server import MlflowServer, create_experiment, read_trace
from tests.phoenix_server import PhoenixServer
from tests.replay import load_or_skip, replay_server
from tests.test_langchain_cassettes import run_agent_step, runnable_and_input
from tests.test_phoenix_render import export

import tracekit
import tracekit.langchain
import tracekit.openai
from tracekit.exporters._http import HttpClient
from tracekit.exporters.tracking import TrackingServerExporter
from tracekit.integrations.langchain import integration as langchain_integration
from tracekit.testing import Capture

pytestmark = pytest.mark.timeout(900)

CASSETTE = "langchain/chatopenai_bind_tools_parallel_calls.yaml"
QUESTION = "What is 3 * 12? Also, what is 11 + 49?"
TOTAL_TOKENS = 137  # the one model call's, as the provider reported it


def agent_trace(captured: Capture, session: str) -> dict[str, Any]:
    """The app: an agent step that asks the model and runs the tools it called."""
    run_agent_step(load_or_skip(CASSETTE), session)
    record = captured.single()
    # Both spans carry the call's usage; tracekit's own total counts it once.
    with_usage = [s["name"] for s in record["spans"] if s.get("token_usage")]
    assert sorted(with_usage) == ["ChatOpenAI", "chat gpt-4o-mini"]
    assert record["token_usage"]["total_tokens"] == TOTAL_TOKENS
    return record


def test_phoenix_counts_the_tokens_once_and_shows_the_chat(
    captured: Capture, phoenix_server: PhoenixServer
) -> None:
    record = agent_trace(captured, "lc-phoenix")
    record["trace_id"] = uuid.uuid4().hex  # the capture's counting ids repeat per test
    export(phoenix_server, [record], "langchain")
    spans = {s["name"]: s for s in phoenix_server.wait_for_spans(5, project="langchain")}
    assert set(spans) == {
        "invoke_agent agent_step",
        "ChatOpenAI",
        "chat gpt-4o-mini",
        "execute_tool multiply",
        "execute_tool add",
    }
    (trace,) = phoenix_server.get("/v1/projects/langchain/traces")["data"]
    assert trace["token_count_total"] == TOTAL_TOKENS
    (session,) = phoenix_server.get("/v1/projects/langchain/sessions")["data"]
    assert (session["session_id"], session["token_count_total"]) == ("lc-phoenix", TOTAL_TOKENS)

    wrapper = spans["ChatOpenAI"]["attributes"]
    assert "llm.token_count.total" not in wrapper  # kept readable, not summed
    assert wrapper["tracekit.usage.total_tokens"] == TOTAL_TOKENS
    assert spans["chat gpt-4o-mini"]["attributes"]["llm.token_count.total"] == TOTAL_TOKENS
    for name in ("ChatOpenAI", "chat gpt-4o-mini"):
        attributes = spans[name]["attributes"]
        assert attributes["input.value"] == QUESTION
        assert attributes["llm.input_messages.0.message.content"] == QUESTION
        calls = [
            attributes[f"llm.output_messages.0.message.tool_calls.{i}.tool_call.function.name"]
            for i in range(2)
        ]
        assert calls == ["multiply", "add"]
        tools = [json.loads(attributes[f"llm.tools.{i}.tool.json_schema"]) for i in range(2)]
        assert [t["function"]["name"] for t in tools] == ["add", "multiply"]
    assert spans["execute_tool multiply"]["attributes"]["tool.name"] == "multiply"
    assert spans["execute_tool multiply"]["span_kind"] == "TOOL"


def test_mlflow_counts_the_tokens_once_and_shows_the_langchain_chat(
    captured: Capture, mlflow_server: MlflowServer
) -> None:
    record = agent_trace(captured, "lc-mlflow")
    record["trace_id"] = uuid.uuid4().hex
    experiment = create_experiment(mlflow_server.url, f"langchain-{uuid.uuid4().hex[:8]}")
    exporter = TrackingServerExporter(HttpClient(mlflow_server.url), experiment_id=experiment)
    result = exporter.export([record])
    assert result.ok, result.message
    trace = read_trace(mlflow_server.python, mlflow_server.url, "tr-" + record["trace_id"])
    assert trace["token_usage"]["total_tokens"] == TOTAL_TOKENS
    assert trace["metadata"]["mlflow.trace.session"] == "lc-mlflow"
    spans = {s["name"]: s for s in trace["spans"]}
    chat = spans["ChatOpenAI"]
    # What MLflow's own LangChain autolog records: the chat in the OpenAI shape.
    assert chat["inputs"] == {"messages": [{"role": "user", "content": QUESTION}]}
    (choice,) = chat["outputs"]["choices"]
    assert choice["finish_reason"] == "tool_call"
    assert choice["message"]["role"] == "assistant"
    assert [c["function"]["name"] for c in choice["message"]["tool_calls"]] == ["multiply", "add"]
    assert json.loads(choice["message"]["tool_calls"][0]["function"]["arguments"]) == {
        "a": 3,
        "b": 12,
    }
    assert chat["attributes"]["mlflow.message.format"] == "langchain"
    tools = chat["attributes"]["mlflow.chat.tools"]
    assert [t["function"]["name"] for t in tools] == ["add", "multiply"]
    provider = spans["chat gpt-4o-mini"]
    assert provider["attributes"]["mlflow.message.format"] == "openai"
    assert provider["inputs"]["messages"] == [{"role": "user", "content": QUESTION}]
    assert spans["multiply"]["span_type"] == "TOOL"


def test_mlflow_previews_a_langchain_trace_as_its_question_and_answer(
    captured: Capture, mlflow_server: MlflowServer
) -> None:
    cassette = load_or_skip("langchain/chatopenai_vllm_openai_compatible_nonstream.yaml")
    tracekit.langchain.autolog()
    try:
        with replay_server(cassette, match_body=True) as server:
            runnable, value = runnable_and_input(server, cassette)
            answer = runnable.invoke(value).content
    finally:
        langchain_integration.revert()
    record = captured.single()
    record["trace_id"] = uuid.uuid4().hex
    experiment = create_experiment(mlflow_server.url, f"preview-{uuid.uuid4().hex[:8]}")
    exporter = TrackingServerExporter(HttpClient(mlflow_server.url), experiment_id=experiment)
    assert exporter.export([record]).ok
    trace = read_trace(mlflow_server.python, mlflow_server.url, "tr-" + record["trace_id"])
    question = [m for m in cassette.request_json(0)["messages"] if m["role"] == "user"][-1]
    assert trace["request_preview"] == question["content"]
    assert trace["response_preview"] == answer
