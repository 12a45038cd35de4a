"""The normalized message model: parts, messages, tool definitions, finish reasons.

Shapes follow the OpenTelemetry GenAI conventions' JSON schemas for input/output
messages and system instructions (`open-telemetry/semantic-conventions-genai`). The
mappers read serialized (JSON-safe) span data, so every helper here accepts any value
and returns None, or skips, where a value is not what it expects.

Content blocks are shared by several dialects (OpenAI chat and Responses, Anthropic,
LangChain's standard blocks all say `{"type": ..., ...}`): `block_parts` reads them all.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from tracekit._walk import marker

Part = dict[str, Any]
Message = dict[str, Any]
# `isinstance(value, MAPS)`: a record's dicts are told at once, without asking the ABC
# (the mappers run for every LLM span on the export worker).
MAPS = (dict, Mapping)

# Base64 payloads (images, audio, documents) keep this many characters in "content".
PREVIEW_CHARS = 64
# What the serializer leaves at the end of a string it cut (see _walk._Walk.text).
_CUT = re.compile(r"\.\.\. \[tracekit: truncated (\d+) chars\]$")
_DATA_URL = re.compile(r"^data:([^;,]*)(?:;[^,]*)?,", re.ASCII)
_MODALITIES = ("image", "audio", "video")


def get(value: Any, *keys: str) -> Any:
    """The first of `keys` set (not None) in a mapping; None for anything else.

    Several keys cover one field spelled two ways (`mime_type`/`mimeType`)."""
    if isinstance(value, MAPS):
        for key in keys:
            found = value.get(key)
            if found is not None:
                return found
    return None


def items(value: Any) -> list[Any]:
    """`value` if it is a list, else no items (serialized data can hold anything)."""
    return value if isinstance(value, list) else []


def text(content: Any) -> Part | None:
    return {"type": "text", "content": content} if isinstance(content, str) and content else None


def reasoning(content: Any) -> Part | None:
    if isinstance(content, str) and content:
        return {"type": "reasoning", "content": content}
    return None


def arguments(value: Any) -> Any:
    """Tool-call arguments: a JSON string parsed where it parses, else kept as given."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def tool_call(call_id: Any, name: Any, args: Any) -> Part:
    return {
        "type": "tool_call",
        "id": call_id if isinstance(call_id, str) else None,
        "name": name if isinstance(name, str) else "",
        "arguments": arguments(args),
    }


def tool_response(call_id: Any, response: Any) -> Part:
    return {
        "type": "tool_call_response",
        "id": call_id if isinstance(call_id, str) else None,
        "response": response,
    }


def modality(mime_type: Any, default: str = "image") -> str:
    if isinstance(mime_type, str):
        major = mime_type.split("/", 1)[0]
        return major if major in _MODALITIES else "document"
    return default


def blob(data: Any, mime_type: Any, kind: str | None = None) -> Part | None:
    """An inline base64 payload as a reference and a bounded preview.

    `content` keeps the first PREVIEW_CHARS base64 characters (marked when cut);
    `size_bytes` is the decoded size and `sha256` the digest of the decoded bytes
    (absent when the serializer had already cut the payload, or it is not base64)."""
    if not isinstance(data, str):
        return None
    mime = mime_type if isinstance(mime_type, str) and mime_type else None
    part: Part = {"type": "blob", "modality": kind or modality(mime), "mime_type": mime}
    whole = True
    cut = _CUT.search(data)
    if cut:
        data, whole = data[: cut.start()], False
    chars = len(data) + (int(cut.group(1)) if cut else 0)
    size = chars * 3 // 4 - (data.endswith("=") + data.endswith("==") if whole else 0)
    if len(data) <= PREVIEW_CHARS and whole:
        part["content"] = data
    else:
        part["content"] = data[:PREVIEW_CHARS] + "... " + marker(f"base64 preview of {size} bytes")
    part["size_bytes"] = size
    if whole:
        with contextlib.suppress(binascii.Error, ValueError):  # not base64 after all
            part["sha256"] = hashlib.sha256(base64.b64decode(data, validate=True)).hexdigest()
    return part


def url_part(url: Any, mime_type: Any = None, kind: str | None = None) -> Part | None:
    """A URL: `data:` URLs become blobs, others `uri` parts."""
    if not isinstance(url, str) or not url:
        return None
    data_url = _DATA_URL.match(url)
    if data_url:
        return blob(url[data_url.end() :], data_url.group(1) or mime_type, kind)
    mime = mime_type if isinstance(mime_type, str) and mime_type else None
    return {"type": "uri", "modality": kind or modality(mime), "mime_type": mime, "uri": url}


def file_part(file_id: Any, mime_type: Any = None, kind: str | None = None) -> Part | None:
    if not isinstance(file_id, str) or not file_id:
        return None
    mime = mime_type if isinstance(mime_type, str) and mime_type else None
    return {
        "type": "file",
        "modality": kind or modality(mime),
        "mime_type": mime,
        "file_id": file_id,
    }


def _source(source: Any, kind: str) -> Part | None:
    """Anthropic's (and LangChain's) `source`: base64, url, file or plain text."""
    form = get(source, "source_type", "type")  # a LangChain block's own `type` is "image"
    mime = get(source, "media_type", "mime_type")
    if form in ("base64", None) and get(source, "data") is not None:
        return blob(get(source, "data"), mime, kind)
    if form == "url":
        return url_part(get(source, "url"), mime, kind)
    if form in ("file", "id"):
        return file_part(get(source, "file_id", "id"), mime, kind)
    if form == "text":
        return text(get(source, "data", "text"))
    return None


def _media(block: Mapping[str, Any], kind: str) -> Part | None:
    """An image/audio/file/document block of any dialect."""
    mime = get(block, "mime_type", "media_type")
    if isinstance(block.get("source"), Mapping):
        return _source(block["source"], kind)
    for key in ("base64", "data"):
        if isinstance(block.get(key), str):
            return blob(block[key], mime, kind)
    if get(block, "source_type") is not None:  # LangChain v0 standard blocks
        return _source(block, kind)
    for key in ("url", "image_url", "file_url"):
        value = block.get(key)
        if isinstance(value, MAPS):
            return url_part(value.get("url"), mime, kind)
        if isinstance(value, str):
            return url_part(value, mime, kind)
    if get(block, "file_id", "id") is not None:
        return file_part(get(block, "file_id", "id"), mime, kind)
    return None


def _audio(block: Mapping[str, Any]) -> Part | None:
    audio = block.get("input_audio") if isinstance(block.get("input_audio"), Mapping) else block
    fmt = get(audio, "format")
    mime = get(audio, "mime_type") or (f"audio/{fmt}" if isinstance(fmt, str) else None)
    return blob(get(audio, "data"), mime, "audio") if get(audio, "data") is not None else None


def _file(block: Mapping[str, Any]) -> Part | None:
    inner = block.get("file") if isinstance(block.get("file"), Mapping) else block
    data = get(inner, "file_data")
    if isinstance(data, str):  # a data URL, or (some clients) bare base64
        return url_part(data) if data.startswith("data:") else blob(data, None, "document")
    if get(inner, "file_url") is not None:
        return url_part(get(inner, "file_url"))
    return file_part(get(inner, "file_id"), None, "document")


def tool_result(content: Any) -> Any:
    """What a tool returned, as given in a message: a string as it is, text blocks
    joined, other blocks as parts (an image a tool returned becomes a bounded blob)."""
    if not isinstance(content, list):
        return content
    if all(isinstance(get(b, "text"), str) for b in content):
        return "".join(get(b, "text") for b in content)
    parts = content_parts(content)
    return parts if parts else content


def block_parts(block: Any) -> list[Part]:
    """The parts of one content block (OpenAI chat/Responses, Anthropic, LangChain)."""
    if isinstance(block, str):
        return [p for p in (text(block),) if p]
    if not isinstance(block, MAPS):
        return []
    kind = block.get("type")
    part: Part | None = None
    if kind in ("text", "input_text", "output_text") or (kind is None and "text" in block):
        part = text(block.get("text"))
    elif kind in ("refusal",):
        part = text(block.get("refusal"))
    elif kind in ("image_url", "input_image", "image"):
        part = _media(block, "image")
    elif kind in ("input_audio", "audio"):
        part = _audio(block) or _media(block, "audio")
    elif kind in ("video",):
        part = _media(block, "video")
    elif kind in ("file", "input_file"):
        part = _file(block)
    elif kind == "document":
        part = _media(block, "document")
    elif kind == "thinking":
        part = reasoning(block.get("thinking"))
    elif kind == "redacted_thinking":
        part = {"type": "reasoning", "content": marker("redacted thinking")}
    elif kind == "reasoning":  # LangChain standard block; Responses reasoning item
        part = reasoning(block.get("reasoning")) or reasoning(_summary(block))
    elif kind == "tool_call" or (isinstance(kind, str) and kind.endswith("tool_use")):
        args = block.get("input", block.get("args"))
        part = tool_call(block.get("id"), block.get("name"), args)
    elif kind == "tool_result" or (isinstance(kind, str) and kind.endswith("_tool_result")):
        call_id = block.get("tool_use_id")
        part = tool_response(call_id, tool_result(block.get("content")))
    return [part] if part else []


def _summary(item: Mapping[str, Any]) -> str:
    """A Responses reasoning item's text: its summaries, or its reasoning content."""
    texts = [get(s, "text") for s in items(item.get("summary"))]
    texts += [get(c, "text") for c in items(item.get("content"))]
    return "\n\n".join(t for t in texts if isinstance(t, str) and t)


def content_parts(content: Any) -> list[Part]:
    """A message's `content`: a string, or a list of blocks."""
    if isinstance(content, list):
        return [part for block in content for part in block_parts(block)]
    return block_parts(content)


def message(role: str, parts: list[Part], name: Any = None) -> Message:
    out: Message = {"role": role, "parts": parts}
    if isinstance(name, str) and name:
        out["name"] = name
    return out


def non_empty(messages: list[Message]) -> list[Message]:
    """Messages with empty ones dropped."""
    return [m for m in messages if m["parts"]]


_FINISH = {
    "stop": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "completed": "stop",
    "length": "length",
    "max_tokens": "length",
    "max_output_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_calls": "tool_call",
    "function_call": "tool_call",
    "tool_use": "tool_call",
    "content_filter": "content_filter",
    "refusal": "content_filter",
    "safety": "content_filter",
    "recitation": "content_filter",
    "blocklist": "content_filter",
    "prohibited_content": "content_filter",
    "spii": "content_filter",
    "image_safety": "content_filter",
    "error": "error",
    "failed": "error",
    "malformed_function_call": "error",
}


def finish_reason(value: Any, default: str = "stop") -> str:
    """A provider's finish reason in the conventions' words (`stop`, `length`,
    `tool_call`, `content_filter`, `error`); others lowercased as given."""
    if not isinstance(value, str) or not value:
        return default
    lowered = value.lower()
    return _FINISH.get(lowered, lowered)


_CALLABLE = re.compile(r"^<(?:function|bound method|built-in function) ([\w.]+)")


def tool_definitions(tools: Any) -> list[dict[str, Any]]:
    """Tool definitions of any dialect as `{"type": "function", "name", "description",
    "parameters"}` (built-in tools keep their own type and name)."""
    out: list[dict[str, Any]] = []
    for tool in tools if isinstance(tools, list) else []:
        if isinstance(tool, str):  # a Python function given to Gemini, serialized as repr
            found = _CALLABLE.match(tool)
            if found:
                out.append({"type": "function", "name": found.group(1).rsplit(".", 1)[-1]})
            continue
        if not isinstance(tool, MAPS):
            continue
        declarations = get(tool, "function_declarations", "functionDeclarations")
        if isinstance(declarations, list):  # Gemini
            for d in declarations:
                schema = get(d, "parameters_json_schema", "parametersJsonSchema")
                if schema is None:
                    schema = gemini_schema(get(d, "parameters"))
                out.append(_function(get(d, "name"), get(d, "description"), schema))
            continue
        function = tool.get("function")
        if isinstance(function, MAPS):  # OpenAI chat (and LangChain's bound tools)
            out.append(
                _function(
                    function.get("name"), function.get("description"), get(function, "parameters")
                )
            )
        elif "input_schema" in tool:  # Anthropic client tools
            out.append(_function(tool.get("name"), tool.get("description"), tool["input_schema"]))
        elif tool.get("type") == "function":  # OpenAI Responses
            out.append(_function(tool.get("name"), tool.get("description"), tool.get("parameters")))
        else:  # a provider's built-in tool (web search, code execution...)
            set_keys = [k for k, v in tool.items() if v is not None]
            kind = tool.get("type") or (set_keys[0] if len(set_keys) == 1 else None)
            if isinstance(kind, str):
                name = tool.get("name")
                out.append({"type": kind, "name": name if isinstance(name, str) else kind})
    return out


def _function(name: Any, description: Any, parameters: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "function", "name": name if isinstance(name, str) else ""}
    if isinstance(description, str) and description:
        out["description"] = description
    if isinstance(parameters, MAPS):
        out["parameters"] = parameters
    return out


def gemini_schema(schema: Any) -> Any:
    """A Gemini `Schema` (serialized: snake_case, every unset field null, upper-case
    types) as the JSON Schema it stands for."""
    if isinstance(schema, list):
        return [gemini_schema(x) for x in schema]
    if not isinstance(schema, MAPS):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if value is None:
            continue
        if key in ("properties", "defs") and isinstance(value, MAPS):
            # property names are the user's: only their schemas are converted
            out["$defs" if key == "defs" else key] = {k: gemini_schema(v) for k, v in value.items()}
        elif key == "type" and isinstance(value, str):
            out[key] = value.lower()
        elif key == "ref":
            out["$ref"] = value
        else:
            head, *rest = key.split("_")
            out[head + "".join(w.title() for w in rest)] = gemini_schema(value)
    return out
