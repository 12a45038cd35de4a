"""Each provider's calls as MLflow 3.17 and Phoenix 20.26 show them, read back through
their own APIs: the records are those the real SDKs produced over recorded traffic
(tests/providers/snapshots, one per provider shape)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from tests.mlflow_server import MlflowServer, create_experiment, read_trace
from tests.phoenix_server import PhoenixServer
from tests.test_phoenix_render import export

from tracekit.exporters import _messages
from tracekit.exporters._http import HttpClient
from tracekit.exporters.tracking import TrackingServerExporter

pytestmark = pytest.mark.timeout(900)

RECORDS = Path(__file__).resolve().parent / "providers" / "snapshots"
# One call per dialect, with tools where the recording has them; the MLflow format.
SHAPES = {
    "openai.chat_tool_calls_two_turns": "openai",
    "openai.responses_function_call": "openai",
    "anthropic.tool_use": "anthropic",
    "anthropic.extended_thinking_stream": "anthropic",
    "gemini.function_call": "gemini",
    "gemini.generate_content_with_history_and_system_instruction": "gemini",
}


def load(name: str) -> list[dict[str, Any]]:
    """The shape's records under fresh ids (the recordings' counting ids repeat, and a
    server keeps the first span it sees under an id)."""
    records: list[dict[str, Any]] = json.loads((RECORDS / f"{name}.json").read_text())
    for record in records:
        record["trace_id"] = uuid.uuid4().hex
        ids = {s["span_id"]: uuid.uuid4().hex[:16] for s in record["spans"]}
        for span in record["spans"]:
            span["span_id"] = ids[span["span_id"]]
            span["parent_id"] = ids.get(span["parent_id"], span["parent_id"])
    return records


def chat_spans(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in record["spans"] if s.get("chat")]


@pytest.mark.parametrize(("name", "message_format"), SHAPES.items(), ids=list(SHAPES))
def test_mlflow_shows_the_chat(name: str, message_format: str, mlflow_server: MlflowServer) -> None:
    records = load(name)
    experiment = create_experiment(mlflow_server.url, f"{name}-{uuid.uuid4().hex[:6]}")
    exporter = TrackingServerExporter(HttpClient(mlflow_server.url), experiment_id=experiment)
    assert exporter.export(records).ok
    for record in records:
        trace = read_trace(mlflow_server.python, mlflow_server.url, "tr-" + record["trace_id"])
        ours = {s["span_id"]: s for s in chat_spans(record)}
        spans = [s for s in trace["spans"] if s["span_id"] in ours]
        assert len(spans) == len(ours)
        for span in spans:
            mine = ours[span["span_id"]]
            attributes = span["attributes"]
            assert attributes["mlflow.message.format"] == message_format
            # The SDK's request and response, as MLflow's own autologging keeps them.
            assert span["inputs"] == mine["inputs"]
            tools = _messages.openai_tools(mine["chat"])
            assert attributes.get("mlflow.chat.tools", []) == tools
        root = next(s for s in record["spans"] if s["parent_id"] is None)
        if root.get("chat"):  # the question and the answer, not the SDK's JSON
            assert trace["request_preview"] == _messages.question(root["chat"])
            if _messages.answer(root["chat"]):
                assert trace["response_preview"] == _messages.answer(root["chat"])


@pytest.mark.parametrize("name", list(SHAPES))
def test_phoenix_shows_the_chat(name: str, phoenix_server: PhoenixServer) -> None:
    records = load(name)
    project = name.replace(".", "-")
    export(phoenix_server, records, project)
    total = sum(len(r["spans"]) for r in records)
    stored = {s["context"]["span_id"]: s for s in phoenix_server.wait_for_spans(total, project)}
    for record in records:
        for mine in chat_spans(record):
            span = stored[mine["span_id"]]
            assert span["span_kind"] == "LLM"
            attributes = span["attributes"]
            messages = _messages.openai_messages(mine["chat"])
            assert attributes["llm.input_messages.0.message.role"] == messages[0]["role"]
            last = len(messages) - 1
            assert attributes[f"llm.input_messages.{last}.message.role"] == messages[-1]["role"]
            assert f"llm.input_messages.{last + 1}.message.role" not in attributes
            if _messages.answer(mine["chat"]):
                assert attributes["output.value"] == _messages.answer(mine["chat"])
                assert attributes["llm.output_messages.0.message.role"] == "assistant"
            tools = _messages.openai_tools(mine["chat"])
            found = [
                json.loads(attributes[f"llm.tools.{i}.tool.json_schema"]) for i in range(len(tools))
            ]
            assert found == tools
            usage = mine.get("token_usage") or {}
            if "reasoning_tokens" in usage:
                reasoning = attributes["llm.token_count.completion_details.reasoning"]
                assert reasoning == usage["reasoning_tokens"]
