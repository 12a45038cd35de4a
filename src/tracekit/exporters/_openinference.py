"""OpenInference attributes of one span record: what Arize Phoenix and Arize read.

Chat spans get `llm.input_messages.*` / `llm.output_messages.*` (flattened, as
OpenInference defines them), `llm.tools.*.tool.json_schema`, the token counts with
their details, and `input.value` / `output.value` as the question and the answer
text; tool spans `tool.name`; every span its kind and its inputs and outputs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tracekit.exporters import _messages

KIND = {"CHAT_MODEL": "LLM", "PARSER": "CHAIN", "UNKNOWN": "UNKNOWN"}
USAGE = {
    "input_tokens": "llm.token_count.prompt",
    "output_tokens": "llm.token_count.completion",
    "total_tokens": "llm.token_count.total",
    "cache_read_input_tokens": "llm.token_count.prompt_details.cache_read",
    "cache_creation_input_tokens": "llm.token_count.prompt_details.cache_write",
    "reasoning_tokens": "llm.token_count.completion_details.reasoning",
}
# gen_ai.provider.name -> OpenInference's llm.provider (Phoenix prices by it).
_PROVIDERS = {"gcp.gemini": "google", "gcp.vertex_ai": "google", "gcp.gen_ai": "google"}
_TEXT = "text/plain"
_JSON = "application/json"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=repr)


def _value(value: Any) -> tuple[str, str]:
    """A value and its mime type: a string is shown as text, not as a JSON string."""
    return (value, _TEXT) if isinstance(value, str) else (_json(value), _JSON)


def _flat_messages(prefix: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, message in enumerate(messages):
        at = f"{prefix}.{i}.message."
        out[at + "role"] = message["role"]
        content = message.get("content")
        if isinstance(content, str):
            out[at + "content"] = content
        elif isinstance(content, list):
            for j, block in enumerate(content):
                item = f"{at}contents.{j}.message_content."
                if block.get("type") == "image_url":
                    out[item + "type"] = "image"
                    out[item + "image.image.url"] = block["image_url"]["url"]
                else:
                    out[item + "type"] = "text"
                    out[item + "text"] = block.get("text", "")
        for j, call in enumerate(message.get("tool_calls") or []):
            item = f"{at}tool_calls.{j}.tool_call."
            if call.get("id"):
                out[item + "id"] = call["id"]
            out[item + "function.name"] = call["function"]["name"]
            out[item + "function.arguments"] = call["function"]["arguments"]
        if message.get("tool_call_id"):
            out[at + "tool_call_id"] = message["tool_call_id"]
        if message.get("name"):
            out[at + "name"] = message["name"]
    return out


def _chat(chat: _messages.Chat) -> dict[str, Any]:
    out = _flat_messages("llm.input_messages", _messages.openai_messages(chat))
    out.update(
        _flat_messages("llm.output_messages", _messages.openai_messages(chat, "output_messages"))
    )
    for i, tool in enumerate(_messages.openai_tools(chat)):
        out[f"llm.tools.{i}.tool.json_schema"] = _json(tool)
    return out


def render(span: Mapping[str, Any], attributes: Mapping[str, Any], counted: bool) -> dict[str, Any]:
    """The OpenInference attributes of a span (beside its `gen_ai.*` ones)."""
    span_type = str(span.get("span_type") or "UNKNOWN")
    out: dict[str, Any] = {"openinference.span.kind": KIND.get(span_type, span_type)}
    chat = _messages.chat_of(span)
    question = _messages.question(chat) if chat else None
    answer = _messages.answer(chat) if chat else None
    inputs, outputs = span.get("inputs"), span.get("outputs")
    if question is not None:
        out["input.value"], out["input.mime_type"] = question, _TEXT
    elif inputs is not None:
        out["input.value"], out["input.mime_type"] = _value(inputs)
    if answer is not None:
        out["output.value"], out["output.mime_type"] = answer, _TEXT
    elif outputs is not None:
        out["output.value"], out["output.mime_type"] = _value(outputs)
    if chat:
        out.update(_chat(chat))
    usage = span.get("token_usage") or {}
    if counted:
        out.update({name: usage[key] for key, name in USAGE.items() if key in usage})
    model = attributes.get("gen_ai.response.model") or attributes.get("gen_ai.request.model")
    if model and span_type in ("LLM", "CHAT_MODEL", "EMBEDDING"):
        out["llm.model_name"] = str(model)
        provider = attributes.get("gen_ai.provider.name")
        if isinstance(provider, str):
            out["llm.provider"] = _PROVIDERS.get(provider, provider)
    if span_type == "TOOL":
        out["tool.name"] = str(attributes.get("gen_ai.tool.name") or span.get("name", ""))
    return out


def trace_attributes(metadata: Mapping[str, Any], tags: Mapping[str, Any]) -> dict[str, Any]:
    """OpenInference's session, user, metadata and tags."""
    out: dict[str, Any] = {}
    if metadata.get("session_id") is not None:
        out["session.id"] = str(metadata["session_id"])
    if metadata.get("user_id") is not None:
        out["user.id"] = str(metadata["user_id"])
    if metadata:
        out["metadata"] = _json(metadata)  # OpenInference: a JSON object
    if tags:
        out["tag.tags"] = [f"{k}={v}" for k, v in tags.items()]
    return out
