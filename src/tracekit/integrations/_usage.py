"""Token usage normalization (DESIGN.md's table), shared by the provider mappers.

Provider objects may be pydantic models or plain dicts (OpenAI-compatible
servers add fields of their own); `field()` reads either. A key is present in
the result only when the provider sent it: zeros are never invented.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping
from typing import Any


def field(obj: Any, name: str) -> Any:
    """`obj.name` or `obj[name]`, None when absent.

    Runs per stream chunk, so it avoids the slow paths: a missing attribute on a
    pydantic model raises inside pydantic's `__getattr__` (microseconds), and an
    ABC `isinstance` check costs more than the lookup itself.
    """
    if type(obj) is dict:
        return obj.get(name)
    if obj is None:
        return None
    values = getattr(obj, "__dict__", None)
    if values is not None:
        found = values.get(name, _MISSING)
        if found is not _MISSING:
            return found
    if _is_model(type(obj)):
        extra = obj.__pydantic_extra__  # fields an OpenAI-compatible server added
        return extra.get(name) if extra else None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


_MISSING: Any = object()
_NO_FIELDS: Mapping[str, Any] = {}
# id(type) -> (a weak reference to it, whether it is a pydantic (v2) model): classes made
# at run time are neither kept alive nor mistaken for another that later gets their id.
_MODELS: dict[int, tuple[weakref.ref[type], bool]] = {}


def _is_model(cls: type) -> bool:
    """Whether `cls` is a pydantic model, remembered per type (a class attribute
    lookup through pydantic's metaclass costs more than the field read)."""
    known = _MODELS.get(id(cls))
    if known is not None and known[0]() is cls:
        return known[1]
    model = hasattr(cls, "__pydantic_fields__")
    if len(_MODELS) >= 1_000:  # classes made at run time: start again
        _MODELS.clear()
    _MODELS[id(cls)] = (weakref.ref(cls), model)  # every class takes weak references
    return model


def fields(obj: Any) -> Mapping[str, Any]:
    """Every field of `obj` at once, to read several: `fields(x).get(name)` is
    `field(x, name)`, with one look at the object instead of one per name (a stream's
    chunks are read this way, each on the export worker)."""
    if type(obj) is dict:
        return obj
    if obj is None:
        return _NO_FIELDS
    if _is_model(type(obj)):
        values = getattr(obj, "__dict__", None)
        if type(values) is dict:
            extra = obj.__pydantic_extra__  # fields an OpenAI-compatible server added
            return {**values, **extra} if extra else values
    return _Fields(obj)


class _Fields(Mapping[str, Any]):
    """`field()` per name, for objects that are neither dicts nor pydantic models."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def get(self, key: str, default: Any = None) -> Any:
        value = field(self.obj, key)
        return default if value is None else value

    def __getitem__(self, key: str) -> Any:
        return field(self.obj, key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _int(value: Any) -> int | None:
    return value if type(value) is int or _is_int(value) else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _openai(usage: Any, prefix_in: str, prefix_out: str) -> dict[str, int] | None:
    if usage is None:
        return None
    values = fields(usage)
    names = _OPENAI_NAMES.get((prefix_in, prefix_out)) or _openai_names(prefix_in, prefix_out)
    out: dict[str, int] = {}
    for key, source in names[0]:
        value = _int(values.get(source))
        if value is not None:
            out[key] = value
    cached = _int(field(values.get(names[1]), "cached_tokens"))
    if cached is not None:
        out["cache_read_input_tokens"] = cached
    reasoning = _int(field(values.get(names[2]), "reasoning_tokens"))
    if reasoning is not None:
        out["reasoning_tokens"] = reasoning
    return _with_total(out)


_Names = tuple[tuple[tuple[str, str], ...], str, str]
_OPENAI_NAMES: dict[tuple[str, str], _Names] = {}


def _openai_names(prefix_in: str, prefix_out: str) -> _Names:
    """The field names of an OpenAI usage dialect, spelled once (not per response)."""
    names = _OPENAI_NAMES[prefix_in, prefix_out] = (
        (
            ("input_tokens", f"{prefix_in}_tokens"),
            ("output_tokens", f"{prefix_out}_tokens"),
            ("total_tokens", "total_tokens"),
        ),
        f"{prefix_in}_tokens_details",
        f"{prefix_out}_tokens_details",
    )
    return names


def openai_chat(usage: Any) -> dict[str, int] | None:
    """Chat completions and legacy completions (`prompt_tokens`/`completion_tokens`)."""
    return _openai(usage, "prompt", "completion")


def openai_responses(usage: Any) -> dict[str, int] | None:
    """The Responses API (`input_tokens`/`output_tokens`)."""
    return _openai(usage, "input", "output")


def openai_embeddings(usage: Any) -> dict[str, int] | None:
    """Embeddings: input only; output is 0 by definition."""
    if usage is None:
        return None
    prompt = _int(field(usage, "prompt_tokens"))
    if prompt is None:
        return None
    total = _int(field(usage, "total_tokens"))
    return {"input_tokens": prompt, "output_tokens": 0, "total_tokens": total or prompt}


def anthropic(usage: Any) -> dict[str, int] | None:
    """Anthropic: input includes cache reads and cache writes; both cache fields kept."""
    if usage is None:
        return None
    base = _int(field(usage, "input_tokens"))
    output = _int(field(usage, "output_tokens"))
    read = _int(field(usage, "cache_read_input_tokens"))
    created = _int(field(usage, "cache_creation_input_tokens"))
    out: dict[str, int] = {}
    if base is not None:
        out["input_tokens"] = base + (read or 0) + (created or 0)
    if output is not None:
        out["output_tokens"] = output
    if read is not None:
        out["cache_read_input_tokens"] = read
    if created is not None:
        out["cache_creation_input_tokens"] = created
    return _with_total(out)


def gemini(usage: Any) -> dict[str, int] | None:
    """Gemini `usage_metadata`: input counts tool-use prompts, output counts thoughts."""
    if usage is None:
        return None
    prompt = _int(field(usage, "prompt_token_count"))
    tool_prompt = _int(field(usage, "tool_use_prompt_token_count"))
    candidates = _int(field(usage, "candidates_token_count"))
    thoughts = _int(field(usage, "thoughts_token_count"))
    total = _int(field(usage, "total_token_count"))
    cached = _int(field(usage, "cached_content_token_count"))
    out: dict[str, int] = {}
    if prompt is not None or tool_prompt is not None:
        out["input_tokens"] = (prompt or 0) + (tool_prompt or 0)
    if candidates is not None or thoughts is not None:
        out["output_tokens"] = (candidates or 0) + (thoughts or 0)
    if total is not None:
        out["total_tokens"] = total
    if cached is not None:
        out["cache_read_input_tokens"] = cached
    if thoughts is not None:
        out["reasoning_tokens"] = thoughts
    return _with_total(out)


def langchain(usage: Any) -> dict[str, int] | None:
    """LangChain's `usage_metadata` (already normalized by LangChain: input counts
    cache reads and writes, output counts reasoning)."""
    if not usage:
        return None
    out: dict[str, int] = {}
    for key in ("input_tokens", "output_tokens", "total_tokens"):
        value = _int(field(usage, key))
        if value is not None:
            out[key] = value
    details_in = field(usage, "input_token_details")
    details_out = field(usage, "output_token_details")
    for key, source, details in (
        ("cache_read_input_tokens", "cache_read", details_in),
        ("cache_creation_input_tokens", "cache_creation", details_in),
        ("reasoning_tokens", "reasoning", details_out),
    ):
        value = _int(field(details, source))
        if value is not None:
            out[key] = value
    return _with_total(out)


def _with_total(out: dict[str, int]) -> dict[str, int] | None:
    if not out:
        return None
    if "total_tokens" not in out and "input_tokens" in out and "output_tokens" in out:
        out["total_tokens"] = out["input_tokens"] + out["output_tokens"]
    return out


def usage_attributes(usage: Mapping[str, int]) -> dict[str, int]:
    """The OpenTelemetry `gen_ai.usage.*` attributes for normalized usage."""
    attributes = {}
    if "input_tokens" in usage:
        attributes["gen_ai.usage.input_tokens"] = usage["input_tokens"]
    if "output_tokens" in usage:
        attributes["gen_ai.usage.output_tokens"] = usage["output_tokens"]
    if "cache_read_input_tokens" in usage:
        attributes["gen_ai.usage.cache_read.input_tokens"] = usage["cache_read_input_tokens"]
    if "cache_creation_input_tokens" in usage:
        attributes["gen_ai.usage.cache_creation.input_tokens"] = usage[
            "cache_creation_input_tokens"
        ]
    if "reasoning_tokens" in usage:
        attributes["gen_ai.usage.reasoning.output_tokens"] = usage["reasoning_tokens"]
    return attributes
