"""Mapping helpers every provider shares: the request record, `gen_ai.*` request and
response attributes, errors, and `traceparent` header handling."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

from tracekit._propagation import TRACEPARENT
from tracekit._span import Span
from tracekit.integrations import _usage
from tracekit.integrations._usage import field


@dataclass
class Request:
    """What a mapper reads from a call before it is made."""

    name: str
    span_type: str
    inputs: Any
    attributes: dict[str, Any] = dataclass_field(default_factory=dict)
    stream: bool = False


def request_attributes(
    provider: str, operation: str, inputs: Mapping[str, Any], params: Mapping[str, str]
) -> dict[str, Any]:
    """The `gen_ai.*` request attributes common to the providers."""
    attributes: dict[str, Any] = {
        "gen_ai.provider.name": provider,
        "gen_ai.operation.name": operation,
    }
    if inputs.get("model") is not None:
        attributes["gen_ai.request.model"] = inputs["model"]
    for param, attribute in params.items():
        if param in inputs:
            attributes[attribute] = inputs[param]
    if inputs.get("tools"):
        attributes["gen_ai.tool.definitions"] = inputs["tools"]
    return attributes


def without_traceparent(headers: Mapping[Any, Any] | None) -> dict[Any, Any]:
    """A copy of `headers` without any spelling of `traceparent`."""
    return {
        k: v
        for k, v in (headers or {}).items()
        if not (isinstance(k, str) and k.lower() == TRACEPARENT)
    }


def record_error(span: Span, exc: BaseException) -> None:
    """`error.type` and, when the SDK's exception carries one, the HTTP status."""
    if isinstance(exc, GeneratorExit):
        return
    status = getattr(exc, "status_code", None)  # OpenAI, Anthropic
    if not isinstance(status, int):
        status = getattr(exc, "code", None)  # google-genai
    if isinstance(status, int) and not isinstance(status, bool):
        span.set_attribute("http.response.status_code", status)
    span.set_attribute("error.type", type(exc).__qualname__)


def record_response(
    span: Span, response: Any, usage: dict[str, int] | None, finish_reasons: list[Any]
) -> None:
    """Response id, model, finish reasons and usage (attributes and token_usage)."""
    attributes: dict[str, Any] = {}
    for key, source in (("gen_ai.response.id", "id"), ("gen_ai.response.model", "model")):
        value = field(response, source)
        if value is not None:
            attributes[key] = value
    if finish_reasons:
        attributes["gen_ai.response.finish_reasons"] = finish_reasons
    if usage:
        attributes.update(_usage.usage_attributes(usage))
        span.set_token_usage(usage)
    span.set_attributes(attributes)
