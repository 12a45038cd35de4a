"""Hand-built trace records for the viewer's tests (`tracekit ui`).

They follow the file store's record (`tracekit.trace/1`) and the shared "chat"
shape (OpenTelemetry GenAI messages), which today's integrations are only
starting to write: the chat view is tested on these as well as on the demo.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

T0 = 1_795_000_000_000_000_000  # 2026-11-18 UTC
MS = 1_000_000
XSS = "<img src=x onerror=alert(1)> <script>alert(2)</script>"


def span(
    span_id: str,
    parent_id: str | None,
    name: str,
    span_type: str,
    start_ms: float,
    end_ms: float,
    **extra: Any,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "span_id": span_id,
        "parent_id": parent_id,
        "name": name,
        "span_type": span_type,
        "start_time_ns": T0 + int(start_ms * MS),
        "end_time_ns": T0 + int(end_ms * MS),
        "status": {"code": "OK", "message": ""},
        "inputs": None,
        "outputs": None,
        "attributes": {},
        "events": [],
    }
    record.update(extra)
    return record


def trace(
    trace_id: str,
    spans: list[dict[str, Any]],
    *,
    offset_s: float = 0,
    tags: dict[str, str] | None = None,
    metadata: dict[str, str] | None = None,
    token_usage: dict[str, int] | None = None,
    cost: dict[str, float] | None = None,
) -> dict[str, Any]:
    """A record whose root is spans[0]; `offset_s` shifts every time stamp."""
    shift = int(offset_s * 1e9)
    for s in spans:
        s["start_time_ns"] += shift
        s["end_time_ns"] += shift
        for event in s["events"]:
            event["timestamp_ns"] += shift
    root = spans[0]
    record: dict[str, Any] = {
        "schema": "tracekit.trace/1",
        "trace_id": trace_id,
        "name": root["name"],
        "status": root["status"]["code"],
        "start_time_ns": root["start_time_ns"],
        "end_time_ns": root["end_time_ns"],
        "tags": tags or {},
        "metadata": metadata or {},
        "resource": {"service.name": "support-bot"},
        "spans": spans,
    }
    if token_usage:
        record["token_usage"] = token_usage
    if cost:
        record["cost"] = cost
    return record


CHAT = {
    "system_instructions": [{"type": "text", "content": "You are a terse travel agent."}],
    "input_messages": [
        {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
        {
            "role": "assistant",
            "parts": [
                {
                    "type": "tool_call",
                    "id": "call_7",
                    "name": "get_weather",
                    "arguments": {"city": "Paris"},
                },
            ],
        },
        {
            "role": "tool",
            "parts": [
                {
                    "type": "tool_call_response",
                    "id": "call_7",
                    "response": {"temperature_c": 18, "sky": "cloudy"},
                },
            ],
        },
    ],
    "output_messages": [
        {
            "role": "assistant",
            "parts": [
                {"type": "reasoning", "content": "The tool said 18 C and cloudy."},
                {"type": "text", "content": "18 °C and cloudy in Paris."},
            ],
            "finish_reason": "stop",
        }
    ],
    "tool_definitions": [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Current weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ],
}

USAGE = {"input_tokens": 40, "output_tokens": 12, "total_tokens": 52}
COST = {"input_cost": 0.00004, "output_cost": 0.00006, "total_cost": 0.0001}


def chat_trace(trace_id: str = "c" * 32, offset_s: float = 10) -> dict[str, Any]:
    """An agent with a streamed chat span that carries "chat", usage and cost."""
    llm = span(
        "c000000000000002",
        "c000000000000001",
        "chat gpt-4o-mini",
        "CHAT_MODEL",
        5,
        905,
        attributes={
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.provider.name": "openai",
            "tracekit.stream": True,
            "tracekit.time_to_first_chunk_s": 0.3,
        },
        inputs={
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "Weather in Paris?"}],
        },
        outputs={"content": "18 °C and cloudy in Paris."},
        token_usage=USAGE,
        cost=COST,
        chat=CHAT,
    )
    root = span(
        "c000000000000001",
        None,
        "travel_agent",
        "AGENT",
        0,
        1000,
        inputs={"question": "Weather in Paris?"},
        outputs="18 °C and cloudy in Paris.",
    )
    return trace(
        trace_id,
        [root, llm],
        offset_s=offset_s,
        tags={"team": "travel"},
        metadata={"session_id": "trip-42", "user_id": "ada"},
        token_usage=USAGE,
        cost=COST,
    )


def error_trace(trace_id: str = "e" * 32, offset_s: float = 20) -> dict[str, Any]:
    """A failing tool: status ERROR and an exception event with a stack trace."""
    failed = span(
        "e000000000000002",
        "e000000000000001",
        "lookup_order",
        "TOOL",
        1,
        3,
        status={"code": "ERROR", "message": "KeyError: 'A-9'"},
        events=[
            {
                "name": "exception",
                "timestamp_ns": T0 + 3 * MS,
                "attributes": {
                    "exception.type": "KeyError",
                    "exception.message": "'A-9'",
                    "exception.stacktrace": 'Traceback (most recent call last):\n  File "app.py", '
                    "line 3, in lookup_order\nKeyError: 'A-9'\n",
                },
            }
        ],
    )
    root = span(
        "e000000000000001",
        None,
        "answer",
        "AGENT",
        0,
        5,
        status={"code": "ERROR", "message": "KeyError: 'A-9'"},
    )
    return trace(
        trace_id,
        [root, failed],
        offset_s=offset_s,
        tags={"env": "prod"},
        metadata={"session_id": "trip-42", "user_id": "ada"},
    )


def xss_trace(trace_id: str = "a" * 32, offset_s: float = 30) -> dict[str, Any]:
    """Markup everywhere a trace can put text."""
    llm = span(
        "a000000000000002",
        "a000000000000001",
        XSS,
        "CHAT_MODEL",
        1,
        4,
        inputs={"messages": [{"role": "user", "content": XSS}]},
        outputs=XSS,
        attributes={XSS: XSS},
        chat={
            "input_messages": [{"role": "user", "parts": [{"type": "text", "content": XSS}]}],
            "output_messages": [
                {"role": XSS, "parts": [{"type": "text", "content": XSS}], "finish_reason": XSS}
            ],
        },
    )
    root = span("a000000000000001", None, XSS, "AGENT", 0, 5, inputs={"q": XSS}, outputs=XSS)
    return trace(
        trace_id,
        [root, llm],
        offset_s=offset_s,
        tags={"xss": XSS},
        metadata={"session_id": XSS, "user_id": XSS},
    )


def append(store: Path, *records: dict[str, Any] | str, name: str = "traces.jsonl") -> None:
    """Append records (or raw lines) to a store file, as the file exporter would."""
    store.mkdir(parents=True, exist_ok=True)
    with (store / name).open("a", encoding="utf-8") as handle:
        for record in records:
            line = record if isinstance(record, str) else json.dumps(record, ensure_ascii=False)
            handle.write(line + "\n")
