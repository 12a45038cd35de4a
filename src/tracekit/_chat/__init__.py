"""One normalized chat per LLM span, computed on the export worker.

`chat_of(record)` reads a serialized span record (JSON-safe `inputs`, `outputs`,
`attributes`) and returns its `"chat"`: system instructions, input and output messages
made of typed parts, and tool definitions, in the shapes of the OpenTelemetry GenAI
conventions' JSON schemas. The file store keeps it; the CLI and every exporter render
it. One thin mapper per SDK dialect; the part model lives in `_parts`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tracekit._chat import anthropic, gemini, langchain, openai
from tracekit._chat._parts import MAPS
from tracekit._guard import internal_error

# The span types whose calls are chats (MLflow's names; LLM covers text completions).
CHAT_SPAN_TYPES = frozenset({"LLM", "CHAT_MODEL"})


def add_chats(spans: list[dict[str, Any]]) -> None:
    """Give each chat span record its `"chat"` (on the export worker, after the span
    processors, so that the chat is read from what they left: redacted content stays
    redacted)."""
    for span in spans:
        if span.get("span_type") in CHAT_SPAN_TYPES:
            chat = chat_of(span)
            if chat:
                span["chat"] = chat
            else:
                span.pop("chat", None)


def chat_of(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The `"chat"` of a serialized span record, or None when it is not a chat tracekit
    can read. Never raises (raises under tracekit's tests, like every guarded site)."""
    try:
        return _chat(record)
    except Exception as exc:
        internal_error("chat mapping", exc)
        return None


def _chat(record: Mapping[str, Any]) -> dict[str, Any] | None:
    if record.get("span_type") not in CHAT_SPAN_TYPES:
        return None
    inputs = record.get("inputs")
    outputs = record.get("outputs")
    attributes = record.get("attributes")
    attributes = attributes if isinstance(attributes, MAPS) else {}
    if not isinstance(inputs, MAPS):
        return None
    status = record.get("status")
    code = str(status.get("code")) if isinstance(status, MAPS) else str(status)
    chat = _dialect(inputs, outputs, attributes, code)
    if chat is None:
        return None
    if "output_messages" not in chat and isinstance(outputs, str) and outputs:
        # A manual span (`start_span(..., span_type="CHAT_MODEL")`) that set the answer.
        text = {"type": "text", "content": outputs}
        chat["output_messages"] = [{"role": "assistant", "parts": [text], "finish_reason": "stop"}]
    chat = {k: v for k, v in chat.items() if v}
    return chat if chat.get("input_messages") or chat.get("output_messages") else None


def _dialect(
    inputs: Mapping[str, Any], outputs: Any, attributes: Mapping[str, Any], status: str
) -> dict[str, Any] | None:
    # Told apart by shape: provider names overlap (LangChain's `ls_provider` says
    # "openai"; "gcp.vertex_ai" serves both Gemini and Anthropic models).
    if "contents" in inputs:
        return gemini.chat(inputs, outputs, status)
    if langchain.looks_like(inputs, outputs):
        return langchain.chat(inputs, outputs, attributes)
    if "messages" not in inputs and ("input" in inputs or "instructions" in inputs):
        return openai.responses(inputs, outputs, status)
    if "messages" in inputs:
        provider = attributes.get("gen_ai.provider.name")
        if (
            provider in ("anthropic", "aws.bedrock")
            or "system" in inputs
            or _anthropic_reply(outputs)
        ):
            return anthropic.chat(inputs, outputs, status)
        return openai.chat(inputs, outputs, status)
    if "prompt" in inputs:
        return openai.chat(inputs, outputs, status)
    return None


def _anthropic_reply(outputs: Any) -> bool:
    return isinstance(outputs, MAPS) and (
        outputs.get("type") == "message" or "stop_reason" in outputs
    )
