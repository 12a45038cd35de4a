"""What a LangChain model run's span maps on the export worker: its `gen_ai.*` request
attributes, from shallow copies of LangChain's invocation parameters and the run's
`ls_*` metadata taken when the run starts, and its token usage, from the `LLMResult`
the run ended with (`langchain.TracekitCallbackHandler` records, this maps)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tracekit._guard import internal_error
from tracekit._span import Span
from tracekit.integrations import _usage
from tracekit.integrations._usage import field

# A model run's request as the export worker maps it (`_fill_request`): shallow copies
# of its invocation parameters and metadata, and the operation's name.
ModelRequest = tuple[dict[str, Any], dict[str, Any], str]


def _model_attributes(
    params: Mapping[str, Any], meta: Mapping[str, Any], operation: str
) -> dict[str, Any]:
    """A model run's `gen_ai.*` request attributes, from LangChain's invocation
    parameters and the run's `ls_*` metadata."""
    model = meta.get("ls_model_name") or field(params, "model") or field(params, "model_name")
    attributes: dict[str, Any] = {"gen_ai.operation.name": operation}
    if model:
        attributes["gen_ai.request.model"] = model
    if meta.get("ls_provider"):
        attributes["gen_ai.provider.name"] = meta["ls_provider"]
    for key, attribute in (
        ("ls_temperature", "gen_ai.request.temperature"),
        ("ls_max_tokens", "gen_ai.request.max_tokens"),
    ):
        if meta.get(key) is not None:
            attributes[attribute] = meta[key]
    if params:
        attributes["langchain.invocation_params"] = params
    return attributes


def model_request(kwargs: Mapping[str, Any], metadata: Any, operation: str) -> ModelRequest:
    """What a model run's start records later (`Span.defer`), on the export worker:
    the attributes, from shallow copies of the parameters and metadata (LangChain
    builds the parameters per call; the metadata may be the caller's own dict)."""
    params = kwargs.get("invocation_params")
    meta = metadata if type(metadata) is dict or isinstance(metadata, Mapping) else None
    return dict(params) if params else {}, dict(meta) if meta else {}, operation


def _fill_request(span: Span, params: dict[str, Any], meta: dict[str, Any], operation: str) -> None:
    span.set_attributes(_model_attributes(params, meta, operation))


class ModelMapping:
    """What a model run's span maps on the export worker (`Span.defer`): its request
    attributes (`model_request`), then its token usage once the run ended with an
    `LLMResult`. One object per run, where two `functools.partial`s, their argument
    tuples and a list held the same until the worker ran them."""

    __slots__ = ("meta", "operation", "params", "response", "span")

    def __init__(
        self, span: Span, params: dict[str, Any], meta: dict[str, Any], operation: str
    ) -> None:
        self.span = span
        self.params = params
        self.meta = meta
        self.operation = operation
        self.response: Any = None

    def __call__(self) -> None:
        span = self.span
        try:  # attributes that fail to map leave the usage to be mapped
            _fill_request(span, self.params, self.meta, self.operation)
        except Exception as exc:
            internal_error(f"deferred mapping of {span.name!r}", exc)
        if self.response is not None:
            fill_usage(span, self.response)


def fill_usage(span: Span, response: Any) -> None:
    """A model run's token usage, mapped on the export worker from its `LLMResult`."""
    usage = _message_usage(response)
    if usage:
        span.set_token_usage(usage)
        span.set_attributes(_usage.usage_attributes(usage))


def _message_usage(response: Any) -> dict[str, int] | None:
    """Usage of an LLMResult: the messages' usage_metadata (final, never summed per
    chunk by us), else the provider's `llm_output.token_usage`."""
    total: dict[str, int] = {}
    for generations in field(response, "generations") or []:
        # Several choices (n > 1) of one prompt repeat the call's usage: count it once.
        first = generations[0] if generations else None
        usage = _usage.langchain(field(field(first, "message"), "usage_metadata"))
        for key, n in (usage or {}).items():
            total[key] = total.get(key, 0) + n
    if total:
        return total
    llm_output = field(response, "llm_output") or {}
    return _usage.openai_chat(field(llm_output, "token_usage") or field(llm_output, "usage"))
