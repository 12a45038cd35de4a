"""The OpenTelemetry GenAI conventions' attributes tracekit exports, checked against the
conventions' published JSON schemas (vendored in tests/schemas/genai, see SOURCE.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from tests import chat_records
from tests.chat_records import record
from tests.test_phoenix_render import check_snapshot

from tracekit.exporters import _otlp

SCHEMAS = Path(__file__).resolve().parent / "schemas" / "genai"
ATTRIBUTE_SCHEMAS = {
    "gen_ai.input.messages": "gen-ai-input-messages.json",
    "gen_ai.output.messages": "gen-ai-output-messages.json",
    "gen_ai.system_instructions": "gen-ai-system-instructions.json",
    "gen_ai.tool.definitions": "gen-ai-tool-definitions.json",
}
# The part types tracekit sends; newer upstream text requires any other to say "generic".
PART_TYPES = {"text", "tool_call", "tool_call_response", "reasoning", "blob", "uri", "file"}


def _validator(name: str) -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / name).read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def assert_valid(attributes: dict[str, Any]) -> int:
    """Validate every chat attribute present; return how many were checked."""
    checked = 0
    for key, schema in ATTRIBUTE_SCHEMAS.items():
        if key not in attributes:
            continue
        assert isinstance(attributes[key], str), f"{key} goes as a JSON string"
        value = json.loads(attributes[key])
        _validator(schema).validate(value)
        parts = value if key == "gen_ai.system_instructions" else []
        for message in value if key.endswith("messages") else []:
            parts.extend(message["parts"])
            assert all(v is not None for k, v in message.items()), message
        for part in parts:
            assert part["type"] in PART_TYPES, part
            for field in ("id", "mime_type", "name"):  # strings only in the current text
                assert part.get(field, "") is not None, part
        checked += 1
    return checked


def _everything_chat() -> dict[str, Any]:
    """A chat with every part type, null ids and mime types included."""
    return {
        "system_instructions": [{"type": "text", "content": "You are terse."}],
        "input_messages": [
            {
                "role": "user",
                "parts": [
                    {"type": "text", "content": "What is in this picture?"},
                    {
                        "type": "blob",
                        "modality": "image",
                        "mime_type": None,
                        "content": "iVBORw0KGgo=",
                    },
                    {
                        "type": "uri",
                        "modality": "image",
                        "mime_type": None,
                        "uri": "https://x/y.png",
                    },
                    {
                        "type": "file",
                        "modality": "document",
                        "mime_type": "application/pdf",
                        "file_id": "f-1",
                    },
                ],
            },
            {
                "role": "assistant",
                "parts": [{"type": "tool_call", "id": None, "name": "look", "arguments": None}],
            },
            {
                "role": "tool",
                "parts": [{"type": "tool_call_response", "id": None, "response": None}],
            },
        ],
        "output_messages": [
            {
                "role": "assistant",
                "parts": [
                    {"type": "reasoning", "content": "A cat, clearly."},
                    {"type": "text", "content": "A cat."},
                ],
                "finish_reason": "stop",
            }
        ],
        "tool_definitions": [{"type": "function", "name": "look"}],
    }


def test_every_chat_attribute_follows_the_schemas() -> None:
    trace = record()
    trace["spans"][2]["chat"] = _everything_chat()
    counted = _otlp.counted_spans(trace)
    attributes = _otlp.span_attributes(trace["spans"][2], trace, False, counted)
    assert assert_valid(attributes) == 4
    # A null the schemas do not allow is left out; a captured null argument is kept.
    messages = json.loads(attributes["gen_ai.input.messages"])
    assert messages[0]["parts"][1] == {
        "type": "blob",
        "modality": "image",
        "content": "iVBORw0KGgo=",
    }
    assert messages[1]["parts"] == [{"type": "tool_call", "name": "look", "arguments": None}]
    assert messages[2]["parts"] == [{"type": "tool_call_response", "response": None}]


@pytest.mark.parametrize("mlflow", [False, True])
def test_the_spec_attributes_of_a_streamed_openai_call(mlflow: bool) -> None:
    trace = record()
    attributes = _otlp.span_attributes(trace["spans"][2], trace, mlflow)
    # MLflow stores the chat once, as the span's inputs and outputs.
    assert assert_valid(attributes) == (0 if mlflow else 3)
    spec = {k: v for k, v in attributes.items() if k.startswith("gen_ai.")}
    chat = {
        "gen_ai.input.messages": json.dumps(chat_records.CHAT["input_messages"]),
        "gen_ai.output.messages": json.dumps(chat_records.CHAT["output_messages"]),
        "gen_ai.tool.definitions": json.dumps(chat_records.TOOL_DEFINITIONS),
    }
    assert spec == {
        "gen_ai.provider.name": "openai",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.response.finish_reasons": ["tool_calls"],
        "gen_ai.request.stop_sequences": ["END"],  # the SDK took a string
        "gen_ai.request.stream": True,
        "gen_ai.response.time_to_first_chunk": 0.2,
        "gen_ai.output.type": "json",
        "gen_ai.usage.input_tokens": 30,
        "gen_ai.usage.output_tokens": 12,
        "gen_ai.usage.cache_read.input_tokens": 10,
        "gen_ai.usage.reasoning.output_tokens": 4,
        **({} if mlflow else {"gen_ai.conversation.id": "s-1", **chat}),
    }
    assert "tracekit.stream" not in attributes
    assert "tracekit.time_to_first_chunk_s" not in attributes
    assert attributes["tracekit.stream.chunks"] == 7


def test_cache_writes_follow_the_current_text() -> None:
    trace = record()
    span = trace["spans"][2]
    span["token_usage"]["cache_creation_input_tokens"] = 5
    span["attributes"]["gen_ai.usage.cache_creation.input_tokens"] = 5
    attributes = _otlp.span_attributes(span, trace, False)
    assert attributes["gen_ai.usage.cache_write.input_tokens"] == 5
    assert attributes["llm.token_count.prompt_details.cache_write"] == 5
    assert "gen_ai.usage.cache_creation.input_tokens" not in attributes


def test_provider_shaped_tools_never_go_as_the_spec_attribute() -> None:
    trace = record()
    span = trace["spans"][2]
    del span["chat"]  # content capture off, or a call tracekit could not map
    attributes = _otlp.span_attributes(span, trace, False)
    assert "gen_ai.tool.definitions" not in attributes
    assert attributes["tracekit.request.tools"] == span["inputs"]["tools"]
    assert not any(k in attributes for k in ATTRIBUTE_SCHEMAS)


def test_tool_and_agent_spans_are_named_as_the_conventions_say() -> None:
    trace = record()
    request = _otlp.to_otlp([trace])
    (spans,) = [s["spans"] for r in request["resourceSpans"] for s in r["scopeSpans"]]
    assert [s["name"] for s in spans] == [
        "invoke_agent weather_agent",
        "ChatOpenAI",
        "chat gpt-4o-mini",
        "execute_tool get_weather",
    ]
    tool = {a["key"]: a["value"] for a in spans[3]["attributes"]}
    assert tool["gen_ai.operation.name"] == {"stringValue": "execute_tool"}
    assert tool["gen_ai.tool.name"] == {"stringValue": "get_weather"}
    assert tool["gen_ai.tool.call.id"] == {"stringValue": "call_1"}
    # MLflow shows the functions' names.
    mlflow = _otlp.to_otlp([trace], mlflow=True)
    names = [
        s["name"] for r in mlflow["resourceSpans"] for c in r["scopeSpans"] for s in c["spans"]
    ]
    assert names == ["weather_agent", "ChatOpenAI", "chat gpt-4o-mini", "get_weather"]


PROVIDER_RECORDS = sorted((Path(__file__).parent / "providers" / "snapshots").glob("*.json"))


@pytest.mark.parametrize("path", PROVIDER_RECORDS, ids=lambda p: p.stem)
def test_every_provider_shape_follows_the_schemas(path: Path) -> None:
    """The records the real SDKs produced (tests/providers), as OTLP: every chat
    attribute valid, and the whole request as its snapshot (tests/snapshots/otlp)."""
    records = json.loads(path.read_text())
    request = _otlp.to_otlp(records)
    spans = [s for r in request["resourceSpans"] for c in r["scopeSpans"] for s in c["spans"]]
    checked = 0
    for span in spans:
        attributes = {a["key"]: _plain(a["value"]) for a in span["attributes"]}
        checked += assert_valid(attributes)
    assert checked >= 2  # at least the input and output messages of one call
    check_snapshot(f"otlp/{path.stem}.json", request)


def _plain(value: dict[str, Any]) -> Any:
    (kind, inner), *_ = value.items()
    if kind == "arrayValue":
        return [_plain(v) for v in inner["values"]]
    return int(inner) if kind == "intValue" else inner
