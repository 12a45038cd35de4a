"""LangChain chat models and LLMs as tracekit records them: `{"messages": [[message...]]}`
(BaseMessage dumps: `type` human/ai/system/tool/function/chat) or `{"prompts": [...]}` as
inputs, the LLMResult `{"generations": [[generation...]]}` as outputs, the model's bound
tools in the `langchain.invocation_params` attribute."""

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
    reasoning,
    text,
    tool_call,
    tool_definitions,
    tool_response,
    tool_result,
)

_ROLES = {
    "human": "user",
    "HumanMessageChunk": "user",
    "ai": "assistant",
    "AIMessageChunk": "assistant",
    "system": "system",
    "SystemMessageChunk": "system",
    "tool": "tool",
    "ToolMessageChunk": "tool",
    "function": "tool",
    "FunctionMessageChunk": "tool",
}
_CHAT_ROLES = {"developer": "system", "model": "assistant", "human": "user", "ai": "assistant"}


def _role(msg: Mapping[str, Any]) -> str:
    kind = msg.get("type")
    if kind in ("chat", "ChatMessageChunk"):
        role = msg.get("role")
        return _CHAT_ROLES.get(role, role) if isinstance(role, str) else "user"
    return _ROLES.get(kind, "user") if isinstance(kind, str) else "user"


def _tool_calls(msg: Mapping[str, Any]) -> list[Part]:
    calls = items(msg.get("tool_calls"))
    if calls:
        return [tool_call(get(c, "id"), get(c, "name"), get(c, "args")) for c in calls]
    # A streamed AIMessageChunk that was never non_empty keeps its calls' pieces.
    chunks = items(msg.get("tool_call_chunks"))
    return [tool_call(get(c, "id"), get(c, "name"), get(c, "args")) for c in chunks]


def _message(msg: Any) -> Message | None:
    if isinstance(msg, str):
        return message("user", [p for p in (text(msg),) if p])
    if not isinstance(msg, MAPS):
        return None
    role = _role(msg)
    if role == "tool":
        response = tool_result(msg.get("content"))
        call_id = msg.get("tool_call_id")
        return message("tool", [tool_response(call_id, response)], msg.get("name"))
    parts: list[Part] = []
    extra = msg.get("additional_kwargs")
    for key in ("reasoning_content", "reasoning"):  # DeepSeek/vLLM through LangChain
        part = reasoning(get(extra, key)) if isinstance(get(extra, key), str) else None
        if part:
            parts.append(part)
    content = content_parts(msg.get("content"))
    known = {p.get("id") for p in content if p["type"] == "tool_call"}
    parts += content
    parts += [p for p in _tool_calls(msg) if p["id"] is None or p["id"] not in known]
    return message(role, parts, msg.get("name"))


def _generation(generation: Any) -> dict[str, Any] | None:
    if not isinstance(generation, MAPS):
        return None
    msg = generation.get("message")
    if isinstance(msg, MAPS):
        mapped = _message({**msg, "type": "ai"})
        parts = mapped["parts"] if mapped else []
        metadata = msg.get("response_metadata")
    else:
        parts = [p for p in (text(generation.get("text")),) if p]
        metadata = None
    info = generation.get("generation_info")
    reason = get(info, "finish_reason", "stop_reason") or get(
        metadata, "finish_reason", "stop_reason"
    )
    if reason is None and any(p["type"] == "tool_call" for p in parts):
        reason = "tool_calls"
    return {"role": "assistant", "parts": parts, "finish_reason": finish_reason(reason)}


def chat(inputs: Mapping[str, Any], outputs: Any, attributes: Mapping[str, Any]) -> dict[str, Any]:
    batches = inputs.get("messages")
    if isinstance(batches, list) and batches and isinstance(batches[0], list):
        batch = batches[0]  # one run per prompt: LangChain starts a run for each
    else:
        batch = batches if isinstance(batches, list) else []
    prompts = inputs.get("prompts")
    if isinstance(prompts, list):
        batch = [p for p in prompts if isinstance(p, str)]
    messages = [_message(m) for m in batch]
    result: dict[str, Any] = {"input_messages": non_empty([m for m in messages if m])}
    generations = get(outputs, "generations")
    if isinstance(generations, list) and generations and isinstance(generations[0], list):
        out = [g for g in (_generation(x) for x in generations[0]) if g]
        if out:
            result["output_messages"] = out
    params = attributes.get("langchain.invocation_params")
    tools = tool_definitions(get(params, "tools") or get(params, "functions"))
    if tools:
        result["tool_definitions"] = tools
    return result


def looks_like(inputs: Mapping[str, Any], outputs: Any) -> bool:
    """Whether a span's data is LangChain's (its providers' names say `openai` too)."""
    batches = inputs.get("messages")
    if isinstance(batches, list) and batches and isinstance(batches[0], list):
        return True
    return isinstance(get(outputs, "generations"), list) or isinstance(inputs.get("prompts"), list)
