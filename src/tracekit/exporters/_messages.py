"""Reading a span record's normalized `chat` (see docs/file-store.md) for the renderers.

The export worker stores one normalized shape per LLM span (the OpenTelemetry GenAI
conventions' messages: `role` + `parts`); each destination renders it its own way.
These helpers are what more than one renderer needs: the plain question and answer
text, and the chat in the OpenAI message shape (which OpenInference and MLflow's chat
view both read). Every helper accepts any value and returns an empty result where the
record is not what it expects: a record may come from an older tracekit or a spool.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

Chat = Mapping[str, Any]


def chat_of(span: Mapping[str, Any]) -> Chat | None:
    """The span's normalized chat, or None."""
    chat = span.get("chat")
    return chat if isinstance(chat, Mapping) else None


def _messages(chat: Chat, key: str) -> list[Mapping[str, Any]]:
    messages = chat.get(key)
    if not isinstance(messages, list):
        return []
    return [m for m in messages if isinstance(m, Mapping)]


def input_messages(chat: Chat) -> list[Mapping[str, Any]]:
    return _messages(chat, "input_messages")


def output_messages(chat: Chat) -> list[Mapping[str, Any]]:
    return _messages(chat, "output_messages")


def parts(message: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = message.get("parts")
    return [p for p in found if isinstance(p, Mapping)] if isinstance(found, list) else []


def text(message: Mapping[str, Any]) -> str:
    """The text parts of a message, joined by blank lines ("" when there are none)."""
    return "\n\n".join(
        p["content"]
        for p in parts(message)
        if p.get("type") == "text" and isinstance(p.get("content"), str)
    )


def question(chat: Chat) -> str | None:
    """The text of the last user message: what the user asked."""
    for message in reversed(input_messages(chat)):
        if message.get("role") == "user":
            return text(message) or None
    return None


def answer(chat: Chat) -> str | None:
    """The text of the first output message: what the model answered."""
    for message in output_messages(chat):
        return text(message) or None
    return None


def json_text(value: Any) -> str:
    """A string as it is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=repr)


def _content_block(part: Mapping[str, Any]) -> dict[str, Any] | None:
    """One non-tool part as an OpenAI content block (None: not shown as content)."""
    kind = part.get("type")
    if kind == "text" and isinstance(part.get("content"), str):
        return {"type": "text", "text": part["content"]}
    if kind == "uri" and isinstance(part.get("uri"), str) and part.get("modality") == "image":
        return {"type": "image_url", "image_url": {"url": part["uri"]}}
    if kind in ("blob", "uri", "file"):
        # A reference the viewer cannot open (a bounded base64 preview, a file id):
        # say what it was rather than show half a payload.
        what = part.get("mime_type") or part.get("modality") or kind
        where = part.get("uri") or part.get("file_id") or ""
        return {"type": "text", "text": f"[{what}{' ' + where if where else ''}]"}
    return None


def openai_message(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A normalized message as OpenAI chat messages (a tool message per tool response).

    Text-only content becomes one string; reasoning parts are left out (neither
    OpenInference nor MLflow's chat view has a place for them in a message)."""
    role = message.get("role") if isinstance(message.get("role"), str) else "user"
    out: list[dict[str, Any]] = []
    blocks: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for part in parts(message):
        kind = part.get("type")
        if kind == "tool_call":
            call: dict[str, Any] = {
                "type": "function",
                "function": {
                    "name": str(part.get("name") or ""),
                    "arguments": json_text(part.get("arguments", {})),
                },
            }
            if part.get("id"):
                call["id"] = part["id"]
            calls.append(call)
        elif kind == "tool_call_response":
            tool: dict[str, Any] = {"role": "tool", "content": json_text(part.get("response"))}
            if part.get("id"):
                tool["tool_call_id"] = part["id"]
            out.append(tool)
        elif (block := _content_block(part)) is not None:
            blocks.append(block)
    if blocks or calls or not out:
        main: dict[str, Any] = {"role": role}
        if all(b["type"] == "text" for b in blocks):
            main["content"] = "\n\n".join(b["text"] for b in blocks) if blocks else None
        else:
            main["content"] = blocks
        if main["content"] is None and not calls:
            main["content"] = ""
        if calls:
            main["tool_calls"] = calls
        if isinstance(message.get("name"), str):
            main["name"] = message["name"]
        out.insert(0, main)
    return out


def openai_messages(chat: Chat, key: str = "input_messages") -> list[dict[str, Any]]:
    """The chat's input (with system instructions first) or output messages, OpenAI-style."""
    out: list[dict[str, Any]] = []
    if key == "input_messages":
        system = chat.get("system_instructions")
        if isinstance(system, list):
            instructions = text({"parts": system})
            if instructions:
                out.append({"role": "system", "content": instructions})
    for message in _messages(chat, key):
        out.extend(openai_message(message))
    return out


def openai_tools(chat: Chat) -> list[dict[str, Any]]:
    """The chat's tool definitions in OpenAI's function-tool shape."""
    tools = chat.get("tool_definitions")
    out = []
    for tool in tools if isinstance(tools, list) else []:
        if not isinstance(tool, Mapping) or not isinstance(tool.get("name"), str):
            continue
        function: dict[str, Any] = {"name": tool["name"]}
        for key in ("description", "parameters"):
            if tool.get(key) is not None:
                function[key] = tool[key]
        out.append({"type": "function", "function": function})
    return out
