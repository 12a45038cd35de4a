"""Trace records as OTLP, encoded as JSON or protobuf.

`to_otlp(records)` maps `tracekit.trace/1` records to one
`ExportTraceServiceRequest` in the OTLP/JSON shape (hex ids, integers as
strings). `encode(request, protobuf=...)` turns it into request bytes.

Attributes are rendered per attribute family, each in its own module: the
OpenTelemetry GenAI conventions (`_genai`: `gen_ai.*`, the chat as
`gen_ai.input.messages` and friends), OpenInference for Phoenix and Arize
(`_openinference`: `llm.*`, `input.value`/`output.value`, `tool.name`), and with
`mlflow=True` what an MLflow server reads instead of OpenInference (`mlflow.*`
below, the chat view's keys in `_mlflow_chat`). Token counts go as summed
attributes only on the spans `counted_spans` picks, so a backend that sums its
spans counts each call once. The trace's session, user, metadata and tags go on
every span (OTLP), or on the root span for MLflow, which reads them there.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from tracekit.exporters import _genai, _mlflow_chat, _openinference, _protobuf
from tracekit.exporters.base import TraceRecord

OTLP_PATH = "/v1/traces"
SCOPE = {"name": "tracekit"}
KIND_INTERNAL = 1
KIND_CLIENT = 3
_CLIENT_TYPES = frozenset({"LLM", "CHAT_MODEL", "EMBEDDING", "RERANKER"})
_STATUS = {"UNSET": 0, "OK": 1, "ERROR": 2}
# The token usage keys MLflow knows; reasoning tokens are part of its output tokens.
_MLFLOW_USAGE = (
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=repr)


def any_value(value: Any) -> dict[str, Any]:
    """An OTLP AnyValue; maps and mixed lists become JSON strings."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        if -(2**63) <= value < 2**63:
            return {"intValue": str(value)}
        return {"stringValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, (list, tuple)) and value:
        # OpenTelemetry attribute arrays are homogeneous: one type, every int an int64.
        first = type(value[0])
        if (
            first in (str, bool, int, float)
            and all(type(v) is first for v in value)
            and (first is not int or all(-(2**63) <= v < 2**63 for v in value))
        ):
            return {"arrayValue": {"values": [any_value(v) for v in value]}}
    return {"stringValue": _json(value)}


def _attributes(items: Iterable[tuple[str, Any]]) -> list[dict[str, Any]]:
    return [{"key": key, "value": any_value(value)} for key, value in items if value is not None]


def counted_spans(record: Mapping[str, Any]) -> frozenset[str]:
    """The spans whose token counts a backend that sums spans should count: those with
    usage and no span with usage inside them (a LangChain chat model span wrapping the
    OpenAI span it caused is not counted; the OpenAI span is)."""
    spans = record.get("spans") or []
    parents = {s.get("span_id"): s.get("parent_id") for s in spans}
    wrappers: set[Any] = set()
    for span in spans:
        if span.get("token_usage"):
            parent = parents.get(span.get("span_id"))
            while parent in parents and parent not in wrappers:
                wrappers.add(parent)
                parent = parents[parent]
    return frozenset(
        s["span_id"] for s in spans if s.get("token_usage") and s["span_id"] not in wrappers
    )


def span_attributes(
    span: Mapping[str, Any],
    record: Mapping[str, Any],
    mlflow: bool,
    counted: frozenset[str] | None = None,
) -> dict[str, Any]:
    """Every attribute of one span, as plain values (before AnyValue encoding)."""
    if counted is None:
        counted = counted_spans(record)
    is_counted = span.get("span_id") in counted
    attributes: dict[str, Any] = dict(span.get("attributes") or {})
    span_type = span.get("span_type") or "UNKNOWN"
    usage = span.get("token_usage") or {}
    _genai.render_usage(attributes, usage, is_counted)
    _genai.render(span, attributes)
    attributes["tracekit.span_type"] = span_type
    if mlflow:  # MLflow reads its own keys; the content is not sent twice
        for name in _genai.CHAT_ATTRIBUTES:
            attributes.pop(name, None)
        attributes["openinference.span.kind"] = _openinference.KIND.get(span_type, span_type)
        attributes.update(_mlflow_attributes(span, record, attributes))
        return attributes
    for key, value in _openinference.render(span, attributes, is_counted).items():
        attributes.setdefault(key, value)
    attributes.update(_trace_attributes(record))
    return attributes


def _trace_attributes(record: Mapping[str, Any]) -> dict[str, Any]:
    """What the trace carries beyond its spans, on every span: backends group by it
    (sessions, users), and a span whose parent is in another process or another
    tracer (an OpenTelemetry server span) is where the trace starts for them."""
    metadata = record.get("metadata") or {}
    out = _openinference.trace_attributes(metadata, record.get("tags") or {})
    if "session.id" in out:
        out["gen_ai.conversation.id"] = out["session.id"]
    return out


def mlflow_usage(usage: Mapping[str, Any] | None) -> dict[str, Any]:
    """Token usage in the keys MLflow knows (it sums them up a trace and prices them)."""
    return {k: usage[k] for k in _MLFLOW_USAGE if k in usage} if usage else {}


def mlflow_cost(cost: Mapping[str, Any] | None) -> dict[str, Any]:
    """An estimated cost in the keys MLflow reads (`mlflow.llm.cost`, `mlflow.trace.cost`)."""
    keys = ("input_cost", "output_cost", "total_cost")
    return {k: cost[k] for k in keys if k in cost} if cost else {}


def _mlflow_value(value: Any) -> Any:
    """A span's inputs or outputs as MLflow's OTLP ingestion reads them back.

    The server JSON-encodes every attribute value it receives, and its reader
    undoes one level of double encoding only for strings, lists and objects:
    so numbers and booleans go as native values (a JSON string would come back
    as the string "42"), everything else as a JSON string. None is left out
    (absent is how MLflow stores "no inputs"; "null" would read back as a string).
    """
    if value is None:
        return None
    if isinstance(value, (bool, float)) or (isinstance(value, int) and -(2**63) <= value < 2**63):
        return value
    return _json(value)


def _mlflow_attributes(
    span: Mapping[str, Any], record: Mapping[str, Any], attributes: Mapping[str, Any]
) -> dict[str, Any]:
    out = {
        "mlflow.spanType": _json(span.get("span_type") or "UNKNOWN"),
        "mlflow.spanInputs": _mlflow_value(span.get("inputs")),
        "mlflow.spanOutputs": _mlflow_value(span.get("outputs")),
    }
    usage = mlflow_usage(span.get("token_usage"))
    if usage:
        out["mlflow.chat.tokenUsage"] = _json(usage)
    model = attributes.get("gen_ai.response.model") or attributes.get("gen_ai.request.model")
    if model:
        out["mlflow.llm.model"] = _json(model)
    provider = attributes.get("gen_ai.provider.name") or attributes.get("gen_ai.system")
    if provider:
        out["mlflow.llm.provider"] = _json(provider)
    cost = mlflow_cost(span.get("cost"))
    if cost:  # MLflow shows it and sums it up the trace (it prices nothing it is given)
        out["mlflow.llm.cost"] = _json(cost)
    # The chat as MLflow's UI reads it (message format, tools; LangChain's messages).
    out.update(_mlflow_chat.render(span, provider))
    if span.get("parent_id") is None:
        # MLflow builds the trace's info from its root span: name, tags, session, user.
        metadata = record.get("metadata") or {}
        out["mlflow.traceTag.mlflow.traceName"] = _json(record.get("name") or span.get("name"))
        for key, value in (record.get("tags") or {}).items():
            out["mlflow.traceTag." + key] = _json(value)
        if metadata.get("session_id") is not None:
            out["session.id"] = str(metadata["session_id"])
        if metadata.get("user_id") is not None:
            out["user.id"] = str(metadata["user_id"])
    return out


def _events(span: Mapping[str, Any]) -> list[dict[str, Any]]:
    events = []
    for event in span.get("events") or []:
        if not isinstance(event, Mapping):
            continue
        attributes = event.get("attributes") or {}
        events.append(
            {
                "timeUnixNano": str(event.get("timestamp_ns") or span.get("end_time_ns") or 0),
                "name": str(event.get("name", "event")),
                "attributes": _attributes(attributes.items()),
            }
        )
    return events


def otlp_span(
    span: Mapping[str, Any],
    record: Mapping[str, Any],
    mlflow: bool,
    counted: frozenset[str] | None = None,
) -> dict[str, Any]:
    """One span in OTLP/JSON."""
    status = span.get("status") or {}
    code = status.get("code", "UNSET") if isinstance(status, Mapping) else str(status)
    attributes = span_attributes(span, record, mlflow, counted)
    # MLflow users know their spans by their functions' names; other backends by the
    # conventions' (`execute_tool {tool}`, `invoke_agent {agent}`).
    name = str(span.get("name", "")) if mlflow else _genai.span_name(span, attributes)
    out: dict[str, Any] = {
        "traceId": record["trace_id"],
        "spanId": span["span_id"],
        "name": name,
        "kind": KIND_CLIENT if span.get("span_type") in _CLIENT_TYPES else KIND_INTERNAL,
        "startTimeUnixNano": str(span.get("start_time_ns") or 0),
        "endTimeUnixNano": str(span.get("end_time_ns") or span.get("start_time_ns") or 0),
        "attributes": _attributes(attributes.items()),
        "status": {"code": _STATUS.get(code, 0)},
    }
    if span.get("parent_id"):
        out["parentSpanId"] = span["parent_id"]
    if isinstance(status, Mapping) and status.get("message"):
        out["status"]["message"] = str(status["message"])
    events = _events(span)
    if events:
        out["events"] = events
    return out


def to_otlp(records: Sequence[TraceRecord], mlflow: bool = False) -> dict[str, Any]:
    """An ExportTraceServiceRequest (OTLP/JSON) holding every span of `records`.

    Records with the same resource share one `resourceSpans` entry.
    """
    groups: dict[str, tuple[Mapping[str, Any], list[dict[str, Any]]]] = {}
    for record in records:
        resource = record.get("resource") or {}
        key = _json(sorted(resource.items()))
        spans = groups.setdefault(key, (resource, []))[1]
        counted = counted_spans(record)
        spans.extend(otlp_span(span, record, mlflow, counted) for span in record.get("spans") or [])
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": _attributes(resource.items())},
                "scopeSpans": [{"scope": SCOPE, "spans": spans}],
            }
            for resource, spans in groups.values()
        ]
    }


def protobuf_available() -> bool:
    """Whether OTLP/protobuf can be sent: always (tracekit encodes it itself, see
    `tracekit.exporters._protobuf`; opentelemetry-proto is not needed)."""
    return True


def preload() -> None:
    """Import what `encode` needs (already imported with this module): nothing is
    imported later on the export worker."""


def encode(request: dict[str, Any], protobuf: bool) -> tuple[bytes, str]:
    """Request bytes and their content type."""
    if protobuf:
        return _protobuf.encode_request(request), "application/x-protobuf"
    body = json.dumps(request, ensure_ascii=False, separators=(",", ":"), default=repr)
    return body.encode("utf-8", "backslashreplace"), "application/json"


def chunks(records: Sequence[TraceRecord], max_spans: int) -> Iterator[Sequence[TraceRecord]]:
    """Split a batch into requests of at most `max_spans` spans (a trace is never split)."""
    start = spans = 0
    for i, record in enumerate(records):
        n = len(record.get("spans") or [])
        if spans and spans + n > max_spans:
            yield records[start:i]
            start, spans = i, 0
        spans += n
    if start < len(records):
        yield records[start:]
