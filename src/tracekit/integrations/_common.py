"""Small mapping helpers shared by the Stainless-generated SDKs (OpenAI, Anthropic)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tracekit._span import Span
from tracekit.integrations import _usage
from tracekit.integrations._usage import field

# Never recorded: request options (headers may carry keys), not model inputs.
NOT_RECORDED = frozenset({"extra_headers", "extra_query", "timeout"})


def call_inputs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The call's keyword arguments as given, without unset values and options."""
    return {
        k: v
        for k, v in kwargs.items()
        if k not in NOT_RECORDED and type(v).__name__ not in ("NotGiven", "Omit")
    }


def client_of(instance: Any) -> Any:
    # `_client` links every Stainless resource to its client (whose `base_url` is
    # public); there is no public way from a resource to its client.
    return getattr(instance, "_client", None)


def server_attributes(client: Any) -> dict[str, Any]:
    """`server.address` and `server.port` of the client's base URL."""
    url = getattr(client, "base_url", None)
    host = getattr(url, "host", None)
    if not host:
        return {}
    attributes: dict[str, Any] = {"server.address": host}
    port = getattr(url, "port", None)
    if port:
        attributes["server.port"] = port
    return attributes


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
