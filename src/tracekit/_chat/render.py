"""Plain-text rendering of the spans' normalized chats (`tracekit show ID --messages`).

One block per span that has a "chat", in start order: system instructions, the input
messages, the output messages with their finish reason, and the tools offered. Each
part on its own line(s) under its role; tool calls with their arguments, tool results
with the call id they answer, reasoning marked, media as a short reference.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

_WIDTH = 11  # "assistant" plus two spaces


def _compact(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def part_text(part: Mapping[str, Any]) -> str:
    """One part as a line (or lines) of text."""
    kind = part.get("type")
    if kind == "text":
        return str(part.get("content", ""))
    if kind == "reasoning":
        return "(reasoning) " + str(part.get("content", ""))
    if kind == "tool_call":
        call = f"→ {part.get('name')}({_compact(part.get('arguments'))})"
        return call + (f"  [{part['id']}]" if part.get("id") else "")
    if kind == "tool_call_response":
        prefix = f"← [{part['id']}] " if part.get("id") else "← "
        return prefix + _compact(part.get("response"))
    mime = part.get("mime_type") or ""
    media = " ".join(str(x) for x in (part.get("modality"), mime) if x)
    if kind == "blob":
        size = part.get("size_bytes")
        return f"[{media}{f', {size} bytes' if size is not None else ''}]"
    if kind == "uri":
        return f"[{media}] {part.get('uri')}"
    if kind == "file":
        return f"[{media}] file {part.get('file_id')}"
    return _compact(part)


def _lines(label: str, text: str) -> list[str]:
    pad = " " * _WIDTH
    rows = text.splitlines() or [""]
    return ["    " + (label.ljust(_WIDTH) if i == 0 else pad) + row for i, row in enumerate(rows)]


def _message(role: str, parts: Any, extra: str = "") -> list[str]:
    lines: list[str] = []
    for i, part in enumerate(parts if isinstance(parts, list) else []):
        if isinstance(part, Mapping):
            lines += _lines(role if i == 0 else "", part_text(part))
    if not lines:
        lines = _lines(role, "(empty)")
    if extra:
        lines[-1] += f"  (finish: {extra})"
    return lines


def render_chat(span: Mapping[str, Any]) -> list[str]:
    """The lines of one span's chat (none when the span has no chat)."""
    chat = span.get("chat")
    if not isinstance(chat, Mapping):
        return []
    lines = [f"  ── {span.get('name', '?')}  (span {span.get('span_id')})"]
    system = chat.get("system_instructions")
    if system:
        lines += _message("system", system)
    for message in chat.get("input_messages") or []:
        role = str(message.get("role", "?")) + (
            f" {message['name']}" if message.get("name") else ""
        )
        lines += _message(role, message.get("parts"))
    for message in chat.get("output_messages") or []:
        reason = message.get("finish_reason")
        lines += _message(str(message.get("role", "assistant")), message.get("parts"), reason or "")
    tools = [
        str(t.get("name")) for t in chat.get("tool_definitions") or [] if isinstance(t, Mapping)
    ]
    if tools:
        lines += _lines("tools", ", ".join(tools))
    return lines


def render_messages(record: Mapping[str, Any]) -> list[str]:
    """The chats of every span of a trace record, in start order."""
    spans = [s for s in record.get("spans") or [] if isinstance(s, Mapping) and s.get("chat")]
    spans.sort(key=lambda s: s.get("start_time_ns") or 0)
    lines: list[str] = []
    for span in spans:
        lines += ["", *render_chat(span)]
    return lines
