"""Gemini mapper (google-genai): generate_content, streams, embeddings, count_tokens.

`client.models` and `client.aio.models` (chats go through them). With automatic
function calling the public `generate_content` span holds one child span per
model call and a `TOOL` span per Python function the SDK runs; without it,
one call gives one span.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Mapping
from typing import Any

from tracekit._context import current_span
from tracekit._propagation import TRACEPARENT, header
from tracekit._span import Span, SpanType
from tracekit.integrations import _usage
from tracekit.integrations._common import (
    Request,
    record_response,
    request_attributes,
    without_traceparent,
)
from tracekit.integrations._engine import Endpoint, Integration, StreamSeam
from tracekit.integrations._registry import spec
from tracekit.integrations._request_seam import RequestSeam
from tracekit.integrations._usage import field, fields

_MODELS = "google.genai.models"
_CLIENT = "google.genai._api_client"
_EXTRA = "google.genai._extra_utils"
_AFC = "tracekit.gemini.automatic_function_calling"

_CONFIG_PARAMS = {
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "max_output_tokens": "gen_ai.request.max_tokens",
    "stop_sequences": "gen_ai.request.stop_sequences",
    "seed": "gen_ai.request.seed",
    "candidate_count": "gen_ai.request.choice.count",
}


def _client_info(instance: Any) -> tuple[str, dict[str, Any]]:
    # The module's `_api_client` is its only link to the client's settings.
    api = getattr(instance, "_api_client", None)
    provider = "gcp.vertex_ai" if getattr(api, "vertexai", False) else "gcp.gemini"
    options = getattr(api, "_http_options", None)
    base_url = field(options, "base_url")
    if isinstance(base_url, str) and "://" in base_url:
        return provider, dict(_server(base_url))
    return provider, {}


@functools.lru_cache(maxsize=64)
def _server(base_url: str) -> tuple[tuple[str, Any], ...]:
    """`server.address` and `server.port` of a base URL (parsed once per URL)."""
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    if not parts.hostname:
        return ()
    if parts.port:
        return (("server.address", parts.hostname), ("server.port", parts.port))
    return (("server.address", parts.hostname),)


def _model_name(model: Any) -> str | None:
    if not isinstance(model, str):
        return None
    return model.rsplit("/", 1)[-1]  # "models/gemini-2.5-flash" -> "gemini-2.5-flash"


def _without_http_options(config: Any) -> Any:
    """Per-call `http_options` may carry API keys and headers: never recorded."""
    if isinstance(config, Mapping):
        return {k: v for k, v in config.items() if k != "http_options"}
    return config.model_copy(update={"http_options": None})


def _inject(instance: Any, kwargs: dict[str, Any], value: str, outer: str | None) -> None:
    """`traceparent` in the call's `config.http_options.headers` (the SDK merges them over
    the client's), unless the caller set one there or on the client."""
    config = kwargs.get("config")
    options = field(config, "http_options")
    headers = field(options, "headers")
    existing = header(headers)
    if existing is not None and existing != outer:
        return  # the caller's own
    client_options = getattr(getattr(instance, "_api_client", None), "_http_options", None)
    if existing is None and header(field(client_options, "headers")):
        return
    merged = without_traceparent(headers)
    merged[TRACEPARENT] = value
    if options is None:
        if config is None or isinstance(config, Mapping):
            options = {"headers": merged}
        else:
            from google.genai import types

            options = types.HttpOptions(headers=merged)
    elif isinstance(options, Mapping):
        options = {**options, "headers": merged}
    else:
        options = options.model_copy(update={"headers": merged})
    if config is None:
        kwargs["config"] = {"http_options": options}
    elif isinstance(config, Mapping):
        kwargs["config"] = {**config, "http_options": options}
    else:
        kwargs["config"] = config.model_copy(update={"http_options": options})


# The request builder of every google-genai call (a private method; see `_remember`).
_SEAM = RequestSeam("gemini", _CLIENT, "BaseApiClient._build_request")


def _remember(instance: Any, kwargs: dict[str, Any], value: str, outer: str | None) -> None:
    """The request the SDK builds while this call's span is current carries `value`
    (`RequestSeam`); a stream's, built when the stream is read, too: the traced stream
    enters the value around its reads (`StreamSeam.reads`). Putting it into
    `config.http_options` instead would make the SDK convert a whole
    `GenerateContentConfig`: +370 µs on a call without a config (measured with the
    recorded cassettes), +45 µs with one, and a stream re-reads its config for every
    chunk (+0.5 ms on a 12-chunk stream). Where the builder is missing or was not
    patched (another google-genai version), and under an unsampled remote caller,
    the config route is taken instead."""
    if not _SEAM.remember(value):
        _inject(instance, kwargs, value, outer)


def _afc_enabled(config: Any) -> bool:
    """Whether the SDK will run Python tools itself (automatic function calling)."""
    tools = field(config, "tools") or []
    if not any(callable(tool) for tool in tools):
        return False
    afc = field(config, "automatic_function_calling")
    return not field(afc, "disable")


def _request(operation: str, span_type: str, outer: bool = True) -> Any:
    def request(instance: Any, kwargs: Mapping[str, Any]) -> Request:
        inputs = dict(kwargs)
        if field(inputs.get("config"), "http_options") is not None:
            inputs["config"] = _without_http_options(inputs["config"])
        provider, attributes = _client_info(instance)
        model = _model_name(inputs.get("model"))
        config = inputs.get("config")
        params = {k: field(config, k) for k in _CONFIG_PARAMS if field(config, k) is not None}
        attributes.update(
            request_attributes(provider, operation, {"model": model, **params}, _CONFIG_PARAMS)
        )
        tools = field(config, "tools")
        if tools:
            attributes["gen_ai.tool.definitions"] = tools
        if outer and operation == "generate_content" and _afc_enabled(config):
            attributes[_AFC] = True
        name = f"{operation} {model}" if model else operation
        return Request(name, span_type, inputs, attributes)

    return request


def _head(operation: str, span_type: str, outer: bool = True) -> Any:
    """What the caller records at once (the rest is `_request`'s, on the export worker):
    the span's name, and whether the SDK will run Python tools inside this call, which
    the tool and model calls it makes meanwhile read from the current span."""

    def head(instance: Any, kwargs: Mapping[str, Any]) -> Request:
        model = _model_name(kwargs.get("model"))
        name = f"{operation} {model}" if model else operation
        attributes = {}
        if outer and operation == "generate_content" and _afc_enabled(kwargs.get("config")):
            attributes[_AFC] = True
        return Request(name, span_type, None, attributes)

    return head


def _mapped(operation: str, span_type: str, outer: bool = True) -> dict[str, Any]:
    return {
        "request": _request(operation, span_type, outer),
        "head": _head(operation, span_type, outer),
    }


def _finish_reasons(response: Any) -> list[Any]:
    reasons = []
    for candidate in field(response, "candidates") or []:
        reason = field(candidate, "finish_reason")
        if reason is not None:
            reasons.append(getattr(reason, "value", reason))
    return reasons


_RESPONSE_FIELDS = (
    "candidates",
    "prompt_feedback",
    "usage_metadata",
    "model_version",
    "response_id",
    "automatic_function_calling_history",
)


def _generate_response(span: Span, response: Any) -> None:
    # References to the response's fields, not its HTTP envelope (sdk_http_response).
    span.set_outputs({k: field(response, k) for k in _RESPONSE_FIELDS if field(response, k)})
    # With automatic function calling the model calls are child spans that carry
    # their own usage; the response here repeats only the last one's.
    afc = bool(span.attributes and span.attributes.get(_AFC))
    usage = None if afc else _usage.gemini(field(response, "usage_metadata"))
    record_response(span, _ids(response), usage, _finish_reasons(response))


def _ids(response: Any) -> dict[str, Any]:
    return {"id": field(response, "response_id"), "model": field(response, "model_version")}


def _embed_response(span: Span, response: Any) -> None:
    embeddings = field(response, "embeddings") or []
    values = field(embeddings[0], "values") if embeddings else None
    span.set_outputs(
        {"count": len(embeddings), "dimensions": len(values) if values is not None else None}
    )


def _count_response(span: Span, response: Any) -> None:
    # Counting consumes no tokens: outputs only, never token usage.
    span.set_outputs(
        {
            "total_tokens": field(response, "total_tokens"),
            "cached_content_token_count": field(response, "cached_content_token_count"),
        }
    )


class StreamAccumulator:
    """Gemini stream chunks: text and function calls appended, usage taken from the
    last chunk that has it (it is cumulative: never summed)."""

    fold_now = True  # each chunk (~25 pydantic objects) folded as it arrives, not kept

    def __init__(self, request: Request) -> None:
        self.parts: list[dict[str, Any]] = []
        self.usage: Any = None
        self.finish_reasons: list[Any] = []
        self.ids: dict[str, Any] = {}

    def add(self, chunk: Any) -> None:
        if type(chunk) is _response_type():
            self._add_response(chunk)
            return
        # Anything else (a dict): one look at each object (`fields`), not one per name.
        values = fields(chunk)
        for key, source in (("id", "response_id"), ("model", "model_version")):
            value = values.get(source)
            if value is not None:
                self.ids[key] = value
        usage = values.get("usage_metadata")
        if usage is not None:
            self.usage = usage
        candidates = values.get("candidates") or []
        reasons = []
        for candidate in candidates:
            reason = field(candidate, "finish_reason")
            if reason is not None:
                reasons.append(getattr(reason, "value", reason))
        if reasons:
            self.finish_reasons = reasons
        content = field(candidates[0], "content") if candidates else None
        for part in field(content, "parts") or []:
            self._part(part)

    def _add_response(self, chunk: Any) -> None:
        """`add` for google-genai's own `GenerateContentResponse`, by attribute: it runs
        on the caller's thread per chunk, and the generic reads (`field`, `fields`) of
        the same values measured ~8 µs a chunk against ~2 here. Its models forbid extra
        fields, so the attributes are all there is."""
        if chunk.response_id is not None:
            self.ids["id"] = chunk.response_id
        if chunk.model_version is not None:
            self.ids["model"] = chunk.model_version
        if chunk.usage_metadata is not None:
            self.usage = chunk.usage_metadata
        candidates = chunk.candidates
        if not candidates:
            return
        reasons = [
            getattr(c.finish_reason, "value", c.finish_reason)
            for c in candidates
            if c.finish_reason is not None
        ]
        if reasons:
            self.finish_reasons = reasons
        content = candidates[0].content
        for part in (content.parts if content is not None else None) or ():
            text = part.text
            if text is not None and not part.thought and self.parts:
                last = self.parts[-1]
                if "text" in last and "thought" not in last:  # the common chunk
                    last["text"] += text
                    continue
            self._part(part)

    def _part(self, part: Any) -> None:
        values = fields(part)
        text = values.get("text")
        thought = bool(values.get("thought"))
        last = self.parts[-1] if self.parts else None
        if text is not None:
            if last is not None and "text" in last and last.get("thought", False) == thought:
                last["text"] += text
            else:
                self.parts.append({"text": text, **({"thought": True} if thought else {})})
            return
        dumped = part.model_dump(exclude_none=True) if hasattr(part, "model_dump") else part
        self.parts.append(dumped)

    def finish(self, span: Span) -> None:
        outputs: dict[str, Any] = {
            "candidates": [
                {
                    "content": {"role": "model", "parts": self.parts},
                    "finish_reason": self.finish_reasons[0] if self.finish_reasons else None,
                }
            ],
            "response_id": self.ids.get("id"),
            "model_version": self.ids.get("model"),
        }
        if self.usage is not None:
            outputs["usage_metadata"] = self.usage
        span.set_outputs(outputs)
        record_response(span, self.ids, _usage.gemini(self.usage), self.finish_reasons)


_RESPONSE: Any = None


def _response_type() -> Any:
    """google-genai's `GenerateContentResponse` (looked up once it is imported)."""
    global _RESPONSE
    if _RESPONSE is None:
        types = sys.modules.get("google.genai.types")
        _RESPONSE = getattr(types, "GenerateContentResponse", None)
    return _RESPONSE


def _in_afc_call() -> bool:
    """True inside a traced `generate_content` that runs Python tools itself."""
    span = current_span.get()
    return bool(span is not None and span.attributes and span.attributes.get(_AFC))


def _tool_request(instance: Any, kwargs: Mapping[str, Any]) -> Request:
    function = kwargs.get("function_to_invoke")
    name = getattr(function, "__name__", None) or "tool"
    attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name}
    return Request(name, SpanType.TOOL, kwargs.get("args"), attributes)


def _tool_response(span: Span, result: Any) -> None:
    span.set_outputs(result)


def _is_stream(result: Any) -> bool:
    return hasattr(result, "__next__") or hasattr(result, "__anext__")


def _endpoints() -> list[Endpoint]:
    generate = _mapped("generate_content", SpanType.CHAT_MODEL)
    model_call = _mapped("generate_content", SpanType.CHAT_MODEL, outer=False)
    chunks = StreamSeam(is_stream=_is_stream, accumulator=StreamAccumulator, reads=_SEAM)
    endpoints = []
    for cls, is_async in (("Models", False), ("AsyncModels", True)):
        endpoints += [
            Endpoint.call(
                _MODELS,
                f"{cls}.generate_content",
                is_async=is_async,
                **generate,
                response=_generate_response,
            ),
            Endpoint.call(
                _MODELS,
                f"{cls}.generate_content_stream",
                is_async=is_async,
                **generate,
                stream=chunks,
            ),
            # The model calls inside automatic function calling (and only those).
            Endpoint.call(
                _MODELS,
                f"{cls}._generate_content",
                is_async=is_async,
                **model_call,
                response=_generate_response,
                when=_in_afc_call,
            ),
            Endpoint.call(
                _MODELS,
                f"{cls}.embed_content",
                is_async=is_async,
                **_mapped("embeddings", SpanType.EMBEDDING),
                response=_embed_response,
            ),
            Endpoint.call(
                _MODELS,
                f"{cls}.count_tokens",
                is_async=is_async,
                **_mapped("count_tokens", SpanType.UNKNOWN),
                response=_count_response,
            ),
        ]
    # Every model request carries the caller's trace context (not the local tool calls),
    # on the HTTP request the SDK builds: during the call, or for streams when they are
    # read (the SDK builds their request later, when the span is no longer current).
    endpoints = [dataclasses.replace(e, inject=_remember) for e in endpoints]
    endpoints.append(_SEAM.endpoint())
    tool = ("args", "function_to_invoke")
    for function, is_async in (
        ("invoke_function_from_dict_args", False),
        ("invoke_function_from_dict_args_async", True),
    ):
        endpoints.append(
            Endpoint.call(
                _EXTRA,
                function,
                is_async=is_async,
                request=_tool_request,
                response=_tool_response,
                positional=tool,
                when=_in_afc_call,
            )
        )
    return endpoints


integration = Integration(spec("gemini"), _endpoints())
