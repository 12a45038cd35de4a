"""Gemini (google-genai) as tracekit records it: `model`, `contents` and `config` as
inputs (the SDK's pydantic types serialized with snake_case names; plain dicts may use
the wire's camelCase, so both are read), the response's candidates as outputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tracekit._chat._parts import (
    MAPS,
    Message,
    Part,
    blob,
    file_part,
    finish_reason,
    get,
    items,
    message,
    non_empty,
    reasoning,
    text,
    tool_call,
    tool_definitions,
    tool_response,
    url_part,
)

_ROLES = {"model": "assistant", "user": "user", "function": "tool", "tool": "tool"}


def part(value: Any) -> Part | None:
    """One Gemini `Part` (or a bare string)."""
    if isinstance(value, str):
        return text(value)
    if not isinstance(value, MAPS):
        return None
    if isinstance(value.get("text"), str):
        return reasoning(value["text"]) if value.get("thought") else text(value["text"])
    inline = get(value, "inline_data", "inlineData")
    if inline is not None:
        return blob(get(inline, "data"), get(inline, "mime_type", "mimeType"))
    data = get(value, "file_data", "fileData")
    if data is not None:
        uri = get(data, "file_uri", "fileUri")
        mime = get(data, "mime_type", "mimeType")
        if isinstance(uri, str) and uri.startswith("files/"):  # uploaded with the Files API
            return file_part(uri, mime)
        return url_part(uri, mime)
    call = get(value, "function_call", "functionCall")
    if call is not None:
        return tool_call(get(call, "id"), get(call, "name"), get(call, "args"))
    response = get(value, "function_response", "functionResponse")
    if response is not None:
        return tool_response(get(response, "id"), get(response, "response"))
    code = get(value, "executable_code", "executableCode")
    if code is not None:  # the model's own code execution tool
        args = {"language": get(code, "language"), "code": get(code, "code")}
        return tool_call(None, "code_execution", args)
    outcome = get(value, "code_execution_result", "codeExecutionResult")
    if outcome is not None:
        response_value = {"outcome": get(outcome, "outcome"), "output": get(outcome, "output")}
        return tool_response(None, response_value)
    if isinstance(value.get("uri"), str):  # an uploaded `File` given as a part
        return file_part(value.get("name"), value.get("mime_type")) or url_part(value["uri"])
    return None


def _parts(values: Any) -> list[Part]:
    if not isinstance(values, list):
        values = [values]
    return [p for p in (part(v) for v in values) if p]


def _is_content(value: Any) -> bool:
    return isinstance(value, MAPS) and ("parts" in value or "role" in value)


def content(value: Any) -> Message:
    role = get(value, "role")
    parts = _parts(items(get(value, "parts")))
    if role == "user" and parts and all(p["type"] == "tool_call_response" for p in parts):
        role = "tool"
    return message(_ROLES.get(role, "user") if isinstance(role, str) else "user", parts)


def contents(value: Any) -> list[Message]:
    """`contents`: Contents are messages; bare strings and Parts join a user message
    (what the SDK sends for them)."""
    if not isinstance(value, list):
        value = [value]
    messages: list[Message] = []
    loose: list[Part] = []
    for item in value:
        if _is_content(item):
            if loose:
                messages.append(message("user", loose))
                loose = []
            messages.append(content(item))
        else:
            loose += _parts(item)
    if loose:
        messages.append(message("user", loose))
    return non_empty(messages)


def chat(inputs: Mapping[str, Any], outputs: Any, status: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    config = inputs.get("config")
    system = get(config, "system_instruction", "systemInstruction")
    if system is not None:
        parts = [p for m in contents(system) for p in m["parts"]]
        if parts:
            result["system_instructions"] = parts
    result["input_messages"] = contents(inputs.get("contents"))
    default = "error" if status == "ERROR" else "stop"
    out = []
    for candidate in items(get(outputs, "candidates")):
        parts = _parts(items(get(get(candidate, "content"), "parts")))
        reason = finish_reason(get(candidate, "finish_reason", "finishReason"), default)
        out.append({"role": "assistant", "parts": parts, "finish_reason": reason})
    if out:
        result["output_messages"] = out
    tools = tool_definitions(get(config, "tools"))
    if tools:
        result["tool_definitions"] = tools
    return result
