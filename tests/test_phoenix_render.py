"""What a user sees in a real Arize Phoenix (20.26.1): tracekit's OTLP export read back
through Phoenix's REST API.

Messages, tools, tool names, reasoning tokens and sessions from a hand-built record
(whole spans as Phoenix stores them, snapshot in tests/snapshots/); token totals counted
once with LangChain and OpenAI autolog both on (a recorded ChatOpenAI call with tools);
the session kept when tracekit's top span has a remote parent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from tests import chat_records
from tests.phoenix_server import PhoenixServer

from tracekit.exporters.base import TraceRecord
from tracekit.exporters.otlp import OtlpExporter, settings_for

pytestmark = pytest.mark.timeout(900)  # the first run may build Phoenix's virtualenv

SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
UPDATE = os.environ.get("TRACEKIT_UPDATE_SNAPSHOTS", "").lower() in ("1", "true", "yes")


def export(server: PhoenixServer, records: list[TraceRecord], project: str) -> None:
    """Send records to Phoenix as a user's `otlp+http://...` destination does."""
    for record in records:  # Phoenix files spans under the resource's project name
        record["resource"] = {**record["resource"], "openinference.project.name": project}
    exporter = OtlpExporter(settings_for("otlp+" + server.url))
    assert exporter.settings.protobuf  # Phoenix takes protobuf only
    result = exporter.export(records)
    assert result.ok, result.message


def by_name(spans: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in spans}


def check_snapshot(name: str, value: Any) -> None:
    path = SNAPSHOTS / name
    if UPDATE or not path.exists():
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        if not UPDATE:
            pytest.fail(f"snapshot {name} was missing and has been written: review it")
    assert value == json.loads(path.read_text())


def test_messages_tools_tool_names_reasoning_tokens_and_the_session(
    phoenix_server: PhoenixServer,
) -> None:
    export(phoenix_server, [chat_records.record()], "weather")
    spans = by_name(phoenix_server.wait_for_spans(4, project="weather"))
    # Phoenix's own row ids depend on what else the session's server holds: left out.
    stored = sorted(spans.values(), key=lambda s: s["context"]["span_id"])
    check_snapshot("phoenix_weather_spans.json", [{**s, "id": None} for s in stored])

    provider = spans["chat gpt-4o-mini"]
    assert provider["span_kind"] == "LLM"
    attributes = provider["attributes"]
    assert attributes["llm.input_messages.1.message.content"] == chat_records.QUESTION
    assert attributes["llm.output_messages.0.message.content"] == chat_records.ANSWER
    call = "llm.output_messages.0.message.tool_calls.0.tool_call."
    assert attributes[call + "function.name"] == "get_weather"
    assert json.loads(attributes[call + "function.arguments"]) == {"city": "Paris"}
    tool_schema = json.loads(attributes["llm.tools.0.tool.json_schema"])
    assert tool_schema["function"]["name"] == "get_weather"
    assert attributes["llm.token_count.completion_details.reasoning"] == 4
    assert attributes["llm.token_count.prompt_details.cache_read"] == 10
    assert (attributes["input.value"], attributes["input.mime_type"]) == (
        chat_records.QUESTION,
        "text/plain",
    )
    tool = spans["execute_tool get_weather"]
    assert tool["span_kind"] == "TOOL"
    assert tool["attributes"]["tool.name"] == "get_weather"

    (session,) = phoenix_server.get("/v1/projects/weather/sessions")["data"]
    assert session["session_id"] == "s-1"
    # The LangChain span and the OpenAI span inside it are one call: counted once.
    assert session["token_count_total"] == chat_records.USAGE["total_tokens"]
    (trace,) = phoenix_server.get("/v1/projects/weather/traces")["data"]
    assert trace["token_count_total"] == chat_records.USAGE["total_tokens"]


def test_the_session_survives_a_remote_parent(phoenix_server: PhoenixServer) -> None:
    """An app whose request span comes from another process (or an OpenTelemetry server
    span) sends tracekit's top span with a parent Phoenix never sees."""
    record = chat_records.remote_part()
    export(phoenix_server, [record], "remote")
    spans = phoenix_server.wait_for_spans(4, project="remote")
    assert all(s["attributes"]["session.id"] == "s-2" for s in spans)
    assert all(s["attributes"]["user.id"] == "u-1" for s in spans)
    (session,) = phoenix_server.get("/v1/projects/remote/sessions")["data"]
    assert session["session_id"] == "s-2"
