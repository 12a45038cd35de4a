"""The OpenTelemetry GenAI conventions' attributes (`gen_ai.*`) of one span record.

Follows the current text of `open-telemetry/semantic-conventions-genai` (see
docs/opentelemetry.md): the chat as `gen_ai.input.messages`, `gen_ai.output.messages`,
`gen_ai.system_instructions` and `gen_ai.tool.definitions` (JSON strings that follow the
conventions' JSON schemas), `gen_ai.request.stream` and
`gen_ai.response.time_to_first_chunk` (the record keeps tracekit's own names, which the
integrations set), `gen_ai.request.stop_sequences` as an array, `gen_ai.output.type`
for JSON output, and the operation of tool and agent spans.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, MutableMapping
from typing import Any

from tracekit.exporters._messages import chat_of

# Token usage keys of the record -> the conventions' attributes. Cache writes follow
# the repository's current text (`cache_write`; the released registry said `cache_creation`).
USAGE = {
    "input_tokens": "gen_ai.usage.input_tokens",
    "output_tokens": "gen_ai.usage.output_tokens",
    "cache_read_input_tokens": "gen_ai.usage.cache_read.input_tokens",
    "cache_creation_input_tokens": "gen_ai.usage.cache_write.input_tokens",
    "reasoning_tokens": "gen_ai.usage.reasoning.output_tokens",
}
_LEGACY_CACHE_WRITE = "gen_ai.usage.cache_creation.input_tokens"
# A span whose call is counted by a span inside it keeps its counts here, where no
# backend sums them (see docs/opentelemetry.md, "Token counts").
UNCOUNTED_PREFIX = "tracekit.usage."
# The record's attribute names -> the conventions' (renamed on the wire).
RENAMED = {
    "tracekit.stream": "gen_ai.request.stream",
    "tracekit.time_to_first_chunk_s": "gen_ai.response.time_to_first_chunk",
}
CHAT = {
    "system_instructions": "gen_ai.system_instructions",
    "input_messages": "gen_ai.input.messages",
    "output_messages": "gen_ai.output.messages",
    "tool_definitions": "gen_ai.tool.definitions",
}
CHAT_ATTRIBUTES = frozenset(CHAT.values())
# Where a part may hold a meaningful null (a tool called with null arguments).
_NULLABLE = frozenset({"arguments", "response"})
_OPERATIONS = {"TOOL": "execute_tool", "AGENT": "invoke_agent"}


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=repr)


def _without_nulls(value: Any, depth: int = 0) -> Any:
    """Messages, parts and tool definitions without null optional fields: the schemas
    type `id`, `mime_type` and `name` as strings, so an unknown one is left out."""
    if isinstance(value, list) and depth < 3:
        return [_without_nulls(v, depth + 1) for v in value]
    if isinstance(value, Mapping):
        return {
            k: _without_nulls(v, depth + 1) if k == "parts" else v
            for k, v in value.items()
            if v is not None or k in _NULLABLE
        }
    return value


def render_usage(
    attributes: MutableMapping[str, Any], usage: Mapping[str, Any], counted: bool
) -> None:
    """`gen_ai.usage.*` from the span's token usage for a counted span, `tracekit.usage.*`
    for a span whose call a span inside it counts. The integrations also put
    `gen_ai.usage.*` in the record's attributes; the token usage is what decides."""
    if usage:
        for key in [k for k in attributes if k.startswith("gen_ai.usage.")]:
            del attributes[key]
    elif _LEGACY_CACHE_WRITE in attributes:
        attributes.setdefault(USAGE["cache_creation_input_tokens"], attributes[_LEGACY_CACHE_WRITE])
        del attributes[_LEGACY_CACHE_WRITE]
    if counted:
        attributes.update({name: usage[key] for key, name in USAGE.items() if key in usage})
    else:
        attributes.update({UNCOUNTED_PREFIX + key: value for key, value in usage.items()})


def _output_type(inputs: Any) -> str | None:
    """`json` when the request asked for JSON output (OpenAI chat `response_format`,
    Responses `text.format`, Gemini `response_mime_type`)."""
    if not isinstance(inputs, Mapping):
        return None
    formats = [inputs.get("response_format")]
    text = inputs.get("text")
    if isinstance(text, Mapping):
        formats.append(text.get("format"))
    for found in formats:
        kind = found.get("type") if isinstance(found, Mapping) else None
        if kind in ("json_object", "json_schema"):
            return "json"
    config = inputs.get("config") or inputs.get("generation_config")
    if isinstance(config, Mapping):
        mime = config.get("response_mime_type") or config.get("responseMimeType")
        if mime == "application/json":
            return "json"
    return None


def render(span: Mapping[str, Any], attributes: MutableMapping[str, Any]) -> None:
    """Turn the span's attributes (a copy of the record's) into the conventions' own."""
    for old, new in RENAMED.items():
        if old in attributes:
            attributes.setdefault(new, attributes.pop(old))
    stop = attributes.get("gen_ai.request.stop_sequences")
    if isinstance(stop, str):
        attributes["gen_ai.request.stop_sequences"] = [stop]
    if "gen_ai.output.type" not in attributes and (kind := _output_type(span.get("inputs"))):
        attributes["gen_ai.output.type"] = kind
    chat = chat_of(span)
    tools = attributes.pop("gen_ai.tool.definitions", None)
    if tools is not None and not (chat and chat.get("tool_definitions")):
        # The provider's own shape, which the conventions' schema does not accept.
        attributes["tracekit.request.tools"] = tools
    for key, name in CHAT.items():
        value = chat.get(key) if chat else None
        if value:
            attributes[name] = _json(_without_nulls(value))
    operation = _OPERATIONS.get(str(span.get("span_type")))
    if operation is not None:
        attributes.setdefault("gen_ai.operation.name", operation)
        if operation == "execute_tool":
            attributes.setdefault("gen_ai.tool.name", str(span.get("name", "")))
        else:
            attributes.setdefault("gen_ai.agent.name", str(span.get("name", "")))


def span_name(span: Mapping[str, Any], attributes: Mapping[str, Any]) -> str:
    """The conventions' name for tool and agent spans (`execute_tool {tool}`,
    `invoke_agent {agent}`); other spans keep theirs."""
    name = str(span.get("name", ""))
    operation = _OPERATIONS.get(str(span.get("span_type")))
    if operation is None or attributes.get("gen_ai.operation.name") != operation:
        return name
    target = attributes.get(
        "gen_ai.tool.name" if operation == "execute_tool" else "gen_ai.agent.name"
    )
    if not target or name.startswith(operation + " "):
        return name
    return f"{operation} {target}"
