"""Hand-built trace records with the normalized `chat` key, for the renderer tests.

One trace: an agent (session and user set) calls a LangChain chat model, which calls
OpenAI (both autologged: both spans carry the same call's usage), then runs a tool
the model asked for.
"""

from __future__ import annotations

import copy
import json
from typing import Any

TRACE_ID = "7ace0000000000000000000000000015"  # unique among the tests sharing a server
ROOT, LANGCHAIN, OPENAI, TOOL = (
    "a000000000000001",
    "a000000000000002",
    "a000000000000003",
    "a000000000000004",
)
START = 1_795_344_799_100_000_000

QUESTION = "What is the weather in Paris?"
ANSWER = "Let me look that up."
TOOL_DEFINITIONS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
]
CHAT: dict[str, Any] = {
    "input_messages": [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": QUESTION}]},
    ],
    "output_messages": [
        {
            "role": "assistant",
            "parts": [
                {"type": "reasoning", "content": "The user wants the weather."},
                {"type": "text", "content": ANSWER},
                {
                    "type": "tool_call",
                    "id": "call_1",
                    "name": "get_weather",
                    "arguments": {"city": "Paris"},
                },
            ],
            "finish_reason": "tool_calls",
        }
    ],
    "tool_definitions": TOOL_DEFINITIONS,
}
USAGE = {
    "input_tokens": 30,
    "output_tokens": 12,
    "total_tokens": 42,
    "cache_read_input_tokens": 10,
    "reasoning_tokens": 4,
}


def _span(span_id: str, parent: str | None, name: str, span_type: str, i: int) -> dict[str, Any]:
    return {
        "span_id": span_id,
        "parent_id": parent,
        "name": name,
        "span_type": span_type,
        "start_time_ns": START + i * 1_000_000,
        "end_time_ns": START + (10 - i) * 1_000_000,
        "status": {"code": "OK", "message": ""},
        "inputs": None,
        "outputs": None,
        "attributes": {},
        "events": [],
    }


def record() -> dict[str, Any]:
    """A fresh copy of the trace record."""
    root = _span(ROOT, None, "weather_agent", "AGENT", 0)
    root["inputs"], root["outputs"] = {"question": QUESTION}, "It is sunny in Paris."
    langchain = _span(LANGCHAIN, ROOT, "ChatOpenAI", "CHAT_MODEL", 1)
    langchain["inputs"] = {
        "messages": [
            [
                {"content": "Be brief.", "additional_kwargs": {}, "type": "system"},
                {"content": QUESTION, "additional_kwargs": {}, "type": "human"},
            ]
        ]
    }
    langchain["outputs"] = {"generations": [[{"text": ANSWER, "type": "ChatGeneration"}]]}
    langchain["attributes"] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.provider.name": "openai",
        "langchain.invocation_params": {"model": "gpt-4o-mini", "stream": True},
        "tracekit.stream": True,
        "tracekit.time_to_first_chunk_s": 0.25,
    }
    langchain["token_usage"] = dict(USAGE)
    langchain["chat"] = copy.deepcopy(CHAT)
    openai = _span(OPENAI, LANGCHAIN, "chat gpt-4o-mini", "CHAT_MODEL", 2)
    openai["inputs"] = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": QUESTION},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather"}}],
        "stop": "END",
        "stream": True,
        "response_format": {"type": "json_object"},
    }
    openai["outputs"] = {"choices": [{"message": {"role": "assistant", "content": ANSWER}}]}
    openai["attributes"] = {
        "gen_ai.provider.name": "openai",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.response.finish_reasons": ["tool_calls"],
        "gen_ai.request.stop_sequences": "END",
        "gen_ai.tool.definitions": openai["inputs"]["tools"],
        "gen_ai.usage.input_tokens": 30,
        "gen_ai.usage.output_tokens": 12,
        "gen_ai.usage.cache_read.input_tokens": 10,
        "gen_ai.usage.reasoning.output_tokens": 4,
        "tracekit.stream": True,
        "tracekit.stream.chunks": 7,
        "tracekit.time_to_first_chunk_s": 0.2,
    }
    openai["token_usage"] = dict(USAGE)
    openai["chat"] = copy.deepcopy(CHAT)
    tool = _span(TOOL, ROOT, "get_weather", "TOOL", 3)
    tool["inputs"], tool["outputs"] = {"city": "Paris"}, "sunny"
    tool["attributes"] = {"gen_ai.tool.call.id": "call_1"}
    return {
        "schema": "tracekit.trace/1",
        "trace_id": TRACE_ID,
        "name": "weather_agent",
        "status": "OK",
        "start_time_ns": START,
        "end_time_ns": START + 10_000_000,
        "tags": {"env": "test"},
        "metadata": {"session_id": "s-1", "user_id": "u-1", "plan": "pro"},
        "token_usage": dict(USAGE),
        "resource": {"service.name": "weather-bot", "telemetry.sdk.name": "tracekit"},
        "spans": [root, langchain, openai, tool],
    }


def remote_part() -> dict[str, Any]:
    """Another trace (session s-2) continued under a remote (or OpenTelemetry) parent span."""
    text = json.dumps(record()).replace('"a00000000000000', '"b00000000000000')
    text = text.replace('"s-1"', '"s-2"')
    out: dict[str, Any] = json.loads(text.replace(TRACE_ID, "5" * 32))
    out["spans"][0]["parent_id"] = "feedfacefeedface"
    return out
