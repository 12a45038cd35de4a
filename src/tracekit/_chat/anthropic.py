"""Anthropic messages as tracekit records them: the call's keyword arguments as inputs
(`system` apart from `messages`), the Message (or a stream assembled into one) as
outputs. `cache_control` marks are dropped: they say how to bill, not what was said."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tracekit._chat._parts import (
    MAPS,
    Message,
    Part,
    content_parts,
    finish_reason,
    get,
    items,
    message,
    non_empty,
    tool_definitions,
)


def _messages(msg: Any) -> list[Message]:
    """One Anthropic message; its `tool_result` blocks become a `tool` message first
    (the conventions put tool responses in messages of their own)."""
    if not isinstance(msg, MAPS):
        return []
    role = "assistant" if msg.get("role") == "assistant" else "user"
    parts = content_parts(msg.get("content"))
    results = [p for p in parts if p["type"] == "tool_call_response"]
    if not results or role != "user":
        return [message(role, parts)]
    rest = [p for p in parts if p["type"] != "tool_call_response"]
    return [message("tool", results), message("user", rest)]


def chat(inputs: Mapping[str, Any], outputs: Any, status: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    system: list[Part] = content_parts(inputs.get("system"))
    if system:
        result["system_instructions"] = system
    result["input_messages"] = non_empty(
        [m for msg in items(inputs.get("messages")) for m in _messages(msg)]
    )
    if isinstance(outputs, MAPS) and ("content" in outputs or "stop_reason" in outputs):
        default = "error" if status == "ERROR" else "stop"
        result["output_messages"] = [
            {
                "role": "assistant",
                "parts": content_parts(outputs.get("content")),
                "finish_reason": finish_reason(get(outputs, "stop_reason"), default),
            }
        ]
    tools = tool_definitions(inputs.get("tools"))
    if tools:
        result["tool_definitions"] = tools
    return result
