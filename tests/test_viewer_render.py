"""The per-viewer renderings of a span's normalized chat, from hand-built records:
OpenInference (Phoenix, Arize) and MLflow's chat view and previews."""

from __future__ import annotations

import json
from typing import Any

from tests import chat_records
from tests.chat_records import record

from tracekit.exporters import _mlflow_chat, _otlp
from tracekit.exporters.tracking import needs_trace_info, trace_info


def _anthropic_root() -> dict[str, Any]:
    trace = record()
    span = trace["spans"][2]
    span["parent_id"] = None
    span["attributes"]["gen_ai.provider.name"] = "anthropic"
    trace["spans"] = [span]
    trace["metadata"] = {}
    return trace


def test_a_tool_round_trip_in_openinference() -> None:
    trace = record()
    span = trace["spans"][2]
    span["chat"]["input_messages"] += [
        chat_records.CHAT["output_messages"][0] | {"finish_reason": None},
        {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "id": "call_1", "response": {"t": 21}}],
        },
        {
            "role": "user",
            "parts": [
                {"type": "text", "content": "And this?"},
                {"type": "uri", "modality": "image", "mime_type": None, "uri": "https://x/a.png"},
            ],
        },
    ]
    attributes = _otlp.span_attributes(span, trace, False)
    messages = {k: v for k, v in attributes.items() if k.startswith("llm.input_messages.")}
    assert messages == {
        "llm.input_messages.0.message.role": "system",
        "llm.input_messages.0.message.content": "Be brief.",
        "llm.input_messages.1.message.role": "user",
        "llm.input_messages.1.message.content": chat_records.QUESTION,
        "llm.input_messages.2.message.role": "assistant",
        "llm.input_messages.2.message.content": chat_records.ANSWER,
        "llm.input_messages.2.message.tool_calls.0.tool_call.id": "call_1",
        "llm.input_messages.2.message.tool_calls.0.tool_call.function.name": "get_weather",
        "llm.input_messages.2.message.tool_calls.0.tool_call.function.arguments": json.dumps(
            {"city": "Paris"}
        ),
        "llm.input_messages.3.message.role": "tool",
        "llm.input_messages.3.message.content": '{"t": 21}',
        "llm.input_messages.3.message.tool_call_id": "call_1",
        "llm.input_messages.4.message.role": "user",
        "llm.input_messages.4.message.contents.0.message_content.type": "text",
        "llm.input_messages.4.message.contents.0.message_content.text": "And this?",
        "llm.input_messages.4.message.contents.1.message_content.type": "image",
        "llm.input_messages.4.message.contents.1.message_content.image.image.url": (
            "https://x/a.png"
        ),
    }
    assert attributes["input.value"] == "And this?"  # the last question


def test_mlflow_reads_langchain_spans_in_the_openai_chat_shape() -> None:
    trace = record()
    attributes = _otlp.span_attributes(trace["spans"][1], trace, True)
    assert json.loads(attributes["mlflow.spanInputs"]) == {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": chat_records.QUESTION},
        ]
    }
    assert json.loads(attributes["mlflow.spanOutputs"]) == {
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": chat_records.ANSWER,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ]
    }
    assert json.loads(attributes["mlflow.message.format"]) == "langchain"
    assert json.loads(attributes["mlflow.chat.tools"]) == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city",
                "parameters": chat_records.TOOL_DEFINITIONS[0]["parameters"],
            },
        }
    ]
    # No OpenInference content for MLflow: it would be stored twice.
    assert not any(k.startswith(("llm.", "input.", "output.")) for k in attributes)


def test_provider_spans_keep_their_dialect_and_name_it() -> None:
    trace = record()
    openai = _otlp.span_attributes(trace["spans"][2], trace, True)
    assert json.loads(openai["mlflow.spanInputs"]) == trace["spans"][2]["inputs"]
    assert json.loads(openai["mlflow.message.format"]) == "openai"
    for provider, expected in [("anthropic", "anthropic"), ("gcp.gemini", "gemini")]:
        trace["spans"][2]["attributes"]["gen_ai.provider.name"] = provider
        attributes = _mlflow_chat.render(trace["spans"][2], provider)
        assert json.loads(attributes["mlflow.message.format"]) == expected
    del trace["spans"][2]["chat"]
    assert _mlflow_chat.render(trace["spans"][2], "openai") == {}


def test_a_chat_rooted_trace_previews_its_question_and_answer() -> None:
    trace = _anthropic_root()
    # The server would preview Anthropic's raw response; the question and answer go
    # with the trace info.
    assert needs_trace_info(trace)
    info = trace_info(trace, "1")
    assert info is not None
    assert info["trace"]["trace_info"]["request_preview"] == chat_records.QUESTION
    assert info["trace"]["trace_info"]["response_preview"] == chat_records.ANSWER
    # An OpenAI or LangChain root: the server builds the same previews itself.
    trace["spans"][0]["attributes"]["gen_ai.provider.name"] = "openai"
    assert not needs_trace_info(trace)
    # An agent's root keeps its arguments and its answer.
    agent = record()
    agent["metadata"] = {}
    assert not needs_trace_info(agent)
    info = trace_info(agent, "1")
    assert info is not None
    assert json.loads(info["trace"]["trace_info"]["request_preview"]) == {
        "question": chat_records.QUESTION
    }
