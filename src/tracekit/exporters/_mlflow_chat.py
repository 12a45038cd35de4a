"""What MLflow's trace UI reads to show an LLM span as a chat.

MLflow's own autologging (3.17) records a provider call's request and response as
they are and names their dialect in `mlflow.message.format` (`openai`, `anthropic`,
`gemini`); its UI parses them by that name. It records a LangChain chat model's
messages in the OpenAI chat shape (`{"messages": [...]}` in, `{"choices": [...]}`
out) with the format `langchain`, and every call's tools as `mlflow.chat.tools` in
OpenAI's function-tool shape. The server builds a trace's request and response
previews from its root span's inputs and outputs, picking the last user message and
the first choice's message from exactly those shapes. tracekit does the same, from
the span's normalized chat.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tracekit.exporters import _messages

# gen_ai.provider.name -> mlflow.message.format, for spans that keep the SDK's dialect.
_FORMATS = {
    "openai": "openai",
    "azure.ai.openai": "openai",
    "anthropic": "anthropic",
    "gcp.gemini": "gemini",
    "gcp.vertex_ai": "gemini",
    "gcp.gen_ai": "gemini",
}


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=repr)


def is_langchain(span: Mapping[str, Any]) -> bool:
    """A LangChain model span: its inputs are LangChain's message dumps."""
    return "langchain.invocation_params" in (span.get("attributes") or {}) or (
        isinstance(span.get("inputs"), Mapping)
        and isinstance(span["inputs"].get("messages"), list)
        and any(isinstance(m, list) for m in span["inputs"]["messages"])
    )


def chat_inputs(chat: _messages.Chat) -> dict[str, Any]:
    return {"messages": _messages.openai_messages(chat)}


def chat_outputs(chat: _messages.Chat) -> dict[str, Any]:
    choices: list[dict[str, Any]] = []
    for message in _messages.output_messages(chat):
        converted = _messages.openai_message(message)
        if converted:
            choice = {"index": len(choices), "message": converted[0]}
            choices.append({**choice, "finish_reason": message.get("finish_reason")})
    return {"choices": choices}


def render(span: Mapping[str, Any], provider: Any) -> dict[str, Any]:
    """`mlflow.message.format`, `mlflow.chat.tools` and, for LangChain spans, the chat
    as the span's inputs and outputs (JSON strings; empty when the span has no chat)."""
    chat = _messages.chat_of(span)
    if not chat:
        return {}
    out: dict[str, Any] = {}
    tools = _messages.openai_tools(chat)
    if tools:
        out["mlflow.chat.tools"] = _json(tools)
    if is_langchain(span):
        out["mlflow.message.format"] = _json("langchain")
        if chat.get("input_messages"):
            out["mlflow.spanInputs"] = _json(chat_inputs(chat))
        if chat.get("output_messages"):
            out["mlflow.spanOutputs"] = _json(chat_outputs(chat))
    elif isinstance(provider, str) and provider in _FORMATS:
        out["mlflow.message.format"] = _json(_FORMATS[provider])
    return out


def _root(record: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return next((s for s in record.get("spans") or [] if s.get("parent_id") is None), None)


def _server_reads_root(root: Mapping[str, Any]) -> bool:
    """Whether the server's own preview of the root span is already the chat's text: it
    finds messages (`role` and `content`) in OpenAI's shapes only, a `messages` or an
    `input` list, which LangChain's rendered spans and most OpenAI calls have."""
    if is_langchain(root):
        return True
    inputs = root.get("inputs")
    if (root.get("attributes") or {}).get("gen_ai.provider.name") != "openai" or not isinstance(
        inputs, Mapping
    ):
        return False
    listed = inputs.get("messages") or inputs.get("input")
    return isinstance(listed, list) and any(
        isinstance(m, Mapping) and "role" in m and "content" in m for m in listed
    )


def previews_differ(record: Mapping[str, Any]) -> bool:
    """Whether the previews the server builds from the root span are not `previews()`."""
    root = _root(record)
    return root is not None and not _server_reads_root(root) and previews(record) != (None, None)


def previews(record: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The trace's request and response previews when its root span is a chat: the
    question the user asked and the model's answer (None: use the root's inputs and
    outputs, as the server does; an agent's root holds its function's arguments)."""
    root = _root(record)
    chat = _messages.chat_of(root) if root is not None else None
    if chat is None:
        return None, None
    return _messages.question(chat), _messages.answer(chat)
