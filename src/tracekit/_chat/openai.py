"""OpenAI chat completions (and legacy completions) and Responses, as tracekit records
them: the call's keyword arguments as inputs, the response (or a stream assembled into
the same shape, see integrations/openai.py) as outputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tracekit._chat._parts import (
    MAPS,
    Message,
    Part,
    blob,
    block_parts,
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

_ROLES = {"developer": "system", "function": "tool"}
# What a chat message may carry besides its text content.
_BEYOND_TEXT = ("reasoning_content", "reasoning", "refusal", "audio", "tool_calls", "function_call")


def _tool_calls(msg: Mapping[str, Any]) -> list[Part]:
    parts = []
    for call in items(msg.get("tool_calls")):
        function = get(call, "function") or get(call, "custom") or {}
        args = get(function, "arguments", "input")
        parts.append(tool_call(get(call, "id"), get(function, "name"), args))
    legacy = msg.get("function_call")
    if isinstance(legacy, MAPS):
        parts.append(tool_call(None, legacy.get("name"), legacy.get("arguments")))
    return parts


def _chat_message(msg: Any) -> Message | None:
    if not isinstance(msg, MAPS):
        return None
    role = msg.get("role")
    role = _ROLES.get(role, role) if isinstance(role, str) else "user"
    if role == "tool":
        call_id = msg.get("tool_call_id")
        content = msg.get("content")
        response = tool_result(content)
        return message("tool", [tool_response(call_id, response)], msg.get("name"))
    content = msg.get("content")
    if type(content) is str and all(msg.get(key) is None for key in _BEYOND_TEXT):
        # The common message, text alone: what the general path below makes of it.
        alone: list[Part] = [{"type": "text", "content": content}] if content else []
        return message(role, alone, msg.get("name"))
    parts: list[Part] = []
    for key in ("reasoning_content", "reasoning"):  # compatible servers (DeepSeek, vLLM)
        part = reasoning(msg.get(key))
        if part:
            parts.append(part)
    parts += content_parts(content)
    refusal = text(msg.get("refusal"))
    if refusal:
        parts.append(refusal)
    audio = msg.get("audio")
    if isinstance(audio, MAPS):  # an audio answer: its transcript (the audio is huge)
        transcript = text(audio.get("transcript"))
        if transcript:
            parts.append(transcript)
    parts += _tool_calls(msg)
    return message(role, parts, msg.get("name"))


def chat(inputs: Mapping[str, Any], outputs: Any, status: str) -> dict[str, Any]:
    messages = [_chat_message(m) for m in items(inputs.get("messages"))]
    result: dict[str, Any] = {"input_messages": non_empty([m for m in messages if m])}
    if isinstance(inputs.get("prompt"), (str, list)):  # legacy completions
        prompt = inputs["prompt"]
        prompts = [prompt] if isinstance(prompt, str) else prompt
        result["input_messages"] = non_empty(
            [message("user", [p for p in (text(x),) if p]) for x in prompts]
        )
    out = []
    for choice in items(get(outputs, "choices")):
        msg = get(choice, "message")
        if isinstance(msg, MAPS):
            mapped = _chat_message({**msg, "role": "assistant"})
            parts = mapped["parts"] if mapped else []
        else:
            parts = [p for p in (text(get(choice, "text")),) if p]
        reason = finish_reason(get(choice, "finish_reason"), _unfinished(status))
        out.append({"role": "assistant", "parts": parts, "finish_reason": reason})
    if out:
        result["output_messages"] = out
    tools = tool_definitions(inputs.get("tools") or inputs.get("functions"))
    if inputs.get("functions") and not inputs.get("tools"):  # legacy `functions=`
        tools = tool_definitions([{"function": f} for f in inputs["functions"]])
    if tools:
        result["tool_definitions"] = tools
    return result


def _unfinished(status: str) -> str:
    """The finish reason of an answer the provider did not finish (a broken stream)."""
    return "error" if status == "ERROR" else "stop"


# -- Responses ---------------------------------------------------------------------------


def _item_parts(item: Mapping[str, Any]) -> tuple[str, list[Part]]:
    """The role and parts of one Responses input or output item."""
    kind = item.get("type")
    if kind == "function_call" or kind == "custom_tool_call":
        args = item.get("arguments", item.get("input"))
        return "assistant", [tool_call(item.get("call_id"), item.get("name"), args)]
    if kind in ("function_call_output", "custom_tool_call_output"):
        return "tool", [tool_response(item.get("call_id"), tool_result(item.get("output")))]
    if kind == "reasoning":
        return "assistant", block_parts(item)
    if isinstance(kind, str) and kind.endswith("_call"):  # built-in tools (web search...)
        skip = ("type", "id", "status", "result")
        details = {k: v for k, v in item.items() if k not in skip and v is not None}
        parts = [tool_call(item.get("id"), kind.removesuffix("_call"), details)]
        image = blob(item.get("result"), "image/png") if kind == "image_generation_call" else None
        return "assistant", parts + ([image] if image else [])
    if kind == "message" or "role" in item:
        role = item.get("role")
        role = _ROLES.get(role, role) if isinstance(role, str) else "user"
        return role, content_parts(item.get("content"))
    if kind in ("input_text", "input_image", "input_file", "input_audio"):
        return "user", block_parts(item)
    return "user", []


def _items(value: Any) -> list[Message]:
    """Responses items as messages: consecutive items of one role share a message."""
    if isinstance(value, str):
        return non_empty([message("user", [p for p in (text(value),) if p])])
    messages: list[Message] = []
    for item in items(value):
        if isinstance(item, str):
            role, parts = "user", [p for p in (text(item),) if p]
        elif isinstance(item, MAPS):
            role, parts = _item_parts(item)
        else:
            continue
        is_message = isinstance(item, MAPS) and (item.get("type") == "message" or "role" in item)
        if messages and messages[-1]["role"] == role and role != "tool" and not is_message:
            messages[-1]["parts"] += parts
        else:
            messages.append(message(role, parts))
    return non_empty(messages)


def _responses_finish(outputs: Mapping[str, Any], output: list[Message], status: str) -> str:
    if any(p["type"] == "tool_call" for m in output for p in m["parts"]):
        return "tool_call"
    state = outputs.get("status")
    if state == "incomplete":
        return finish_reason(get(outputs.get("incomplete_details"), "reason"), "length")
    return finish_reason(state, _unfinished(status))


def responses(inputs: Mapping[str, Any], outputs: Any, status: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    instructions = inputs.get("instructions")
    system = _items(instructions) if isinstance(instructions, list) else []
    if isinstance(instructions, str):
        system = [message("system", [p for p in (text(instructions),) if p])]
    if system:
        result["system_instructions"] = [p for m in system for p in m["parts"]]
    result["input_messages"] = _items(inputs.get("input"))
    if isinstance(outputs, MAPS):
        if isinstance(outputs.get("output"), list):
            parts = [p for m in _items(outputs["output"]) for p in m["parts"]]
        else:  # a stream ended before `response.completed`: the text that arrived
            parts = [p for p in (text(outputs.get("output_text")),) if p]
        out = [{"role": "assistant", "parts": parts}]
        out[0]["finish_reason"] = _responses_finish(outputs, [message("assistant", parts)], status)
        result["output_messages"] = out
    tools = tool_definitions(inputs.get("tools"))
    if tools:
        result["tool_definitions"] = tools
    return result
