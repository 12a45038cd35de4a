"""MLflow tracking server REST JSON <-> tracekit's read-back entities.

Shapes as the server answers (checked against MLflow 3.x): `TraceInfoV3`
(`trace_id` "tr-<hex>", ISO `request_time`, `"0.275s"` durations,
`trace_metadata`, `tags`, `assessments`), spans as protobuf-JSON OTLP spans
(base64 ids, typed attribute values), and `Assessment` (`assessment_name`,
`feedback.value` or `expectation.value`/`serialized_value`, `source`,
`rationale`, `metadata`, `span_id`).
"""

from __future__ import annotations

import base64
import binascii
import calendar
import json
import time
from typing import Any

from tracekit._entities import Assessment, AssessmentSource, Span, TraceInfo

_STATUS = {"STATUS_CODE_OK": "OK", "STATUS_CODE_ERROR": "ERROR", "OK": "OK", "ERROR": "ERROR"}


def bare_id(trace_id: str) -> str:
    """tracekit's form of an MLflow trace id: `tr-<hex>` without its prefix."""
    return trace_id[3:] if trace_id.startswith("tr-") else trace_id


def mlflow_id(trace_id: str) -> str:
    """MLflow's form of a tracekit trace id (32 hex digits get `tr-`)."""
    return trace_id if trace_id.startswith("tr-") or len(trace_id) != 32 else "tr-" + trace_id


def _ms(iso: str | None) -> int | None:
    """`2026-12-06T07:54:42.136Z` in milliseconds since the epoch."""
    if not iso:
        return None
    main, _, fraction = iso.rstrip("Z").partition(".")
    try:
        seconds = calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None
    return seconds * 1000 + int((fraction + "000")[:3] or 0)


def _duration_ms(text: str | None) -> int | None:
    if not text or not text.endswith("s"):
        return None
    try:
        return round(float(text[:-1]) * 1000)
    except ValueError:
        return None


def _json_or(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def trace_info(info: dict[str, Any]) -> TraceInfo:
    metadata = dict(info.get("trace_metadata") or {})
    tags = dict(info.get("tags") or {})
    location = (info.get("trace_location") or {}).get("mlflow_experiment") or {}
    usage, cost = metadata.get("mlflow.trace.tokenUsage"), metadata.get("mlflow.trace.cost")
    return TraceInfo(
        trace_id=bare_id(str(info.get("trace_id", ""))),
        name=tags.get("mlflow.traceName"),
        state=str(info.get("state") or "OK"),
        request_time=_ms(info.get("request_time")),
        execution_duration=_duration_ms(info.get("execution_duration")),
        tags=tags,
        metadata=metadata,
        token_usage=_json_or(usage) if usage else None,
        cost=_json_or(cost) if cost else None,
        assessments=[assessment(a) for a in info.get("assessments") or []],
        experiment_id=location.get("experiment_id"),
        request_preview=info.get("request_preview"),
        response_preview=info.get("response_preview"),
    )


def _hex(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return base64.b64decode(value).hex()
    except (binascii.Error, ValueError):
        return value


def _any(value: dict[str, Any]) -> Any:
    """An OTLP AnyValue in protobuf JSON (snake_case or camelCase keys)."""
    for key in ("string_value", "stringValue"):
        if key in value:
            return _json_or(value[key])  # MLflow keeps attribute values JSON-encoded
    for key in ("int_value", "intValue"):
        if key in value:
            return int(value[key])
    for key in ("double_value", "doubleValue", "bool_value", "boolValue"):
        if key in value:
            return value[key]
    for key in ("array_value", "arrayValue"):
        if key in value:
            return [_any(v) for v in value[key].get("values", [])]
    for key in ("kvlist_value", "kvlistValue"):
        if key in value:
            return {kv["key"]: _any(kv.get("value", {})) for kv in value[key].get("values", [])}
    return None


def span(raw: dict[str, Any]) -> Span:
    attributes = {a["key"]: _any(a.get("value", {})) for a in raw.get("attributes", [])}
    status = raw.get("status") or {}
    start = raw.get("start_time_unix_nano", raw.get("startTimeUnixNano"))
    end = raw.get("end_time_unix_nano", raw.get("endTimeUnixNano"))
    return Span(
        span_id=_hex(raw.get("span_id") or raw.get("spanId")) or "",
        parent_id=_hex(raw.get("parent_span_id") or raw.get("parentSpanId")),
        name=str(raw.get("name", "")),
        span_type=str(attributes.pop("mlflow.spanType", "UNKNOWN")),
        start_time_ns=None if start is None else int(start),
        end_time_ns=None if end is None else int(end),
        status=_STATUS.get(str(status.get("code", "")), "UNSET"),
        status_message=str(status.get("message") or ""),
        inputs=attributes.pop("mlflow.spanInputs", None),
        outputs=attributes.pop("mlflow.spanOutputs", None),
        attributes=attributes,
        events=[
            {
                "name": e.get("name"),
                "time_ns": int(e.get("time_unix_nano", e.get("timeUnixNano", 0))),
                "attributes": {a["key"]: _any(a.get("value", {})) for a in e.get("attributes", [])},
            }
            for e in raw.get("events", [])
        ],
        token_usage=attributes.get("mlflow.chat.tokenUsage"),
        cost=attributes.get("mlflow.llm.cost"),
    )


def assessment(raw: dict[str, Any]) -> Assessment:
    source = raw.get("source") or {}
    if "expectation" in raw:
        kind, body = "expectation", raw.get("expectation") or {}
        serialized = body.get("serialized_value")
        value = _json_or(serialized.get("value")) if serialized else body.get("value")
    else:
        kind, body = "feedback", raw.get("feedback") or {}
        value = body.get("value")
    return Assessment(
        name=str(raw.get("assessment_name", "")),
        value=value,
        kind=kind,
        trace_id=bare_id(str(raw.get("trace_id", ""))),
        assessment_id=raw.get("assessment_id"),
        span_id=raw.get("span_id") or None,
        source=AssessmentSource(
            str(source.get("source_type", "HUMAN")), str(source.get("source_id", ""))
        ),
        rationale=raw.get("rationale"),
        metadata=dict(raw.get("metadata") or {}),
        error=body.get("error"),
        create_time_ms=_ms(raw.get("create_time")),
        last_update_time_ms=_ms(raw.get("last_update_time")),
        valid=bool(raw.get("valid", True)),
    )


def _timestamp(ms: int) -> str:
    seconds, rest = divmod(int(ms), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{rest:03d}Z"


def assessment_body(record: dict[str, Any]) -> dict[str, Any]:
    """The CreateAssessment body for a tracekit assessment record."""
    trace_id = mlflow_id(str(record["trace_id"]))
    body: dict[str, Any] = {
        "assessment_id": record["assessment_id"],
        "assessment_name": record["name"],
        "trace_id": trace_id,
        "source": record["source"],
        "create_time": _timestamp(record["create_time_ms"]),
        "last_update_time": _timestamp(record["create_time_ms"]),
    }
    value = record.get("value")
    if record.get("kind") == "expectation":
        if isinstance(value, (dict, list)):  # how MLflow's client sends structured expectations
            body["expectation"] = {
                "serialized_value": {
                    "serialization_format": "JSON_FORMAT",
                    "value": json.dumps(value),
                }
            }
        else:
            body["expectation"] = {"value": value}
    else:
        feedback: dict[str, Any] = {"value": value}
        if record.get("error"):
            feedback["error"] = record["error"]
        body["feedback"] = feedback
    for key in ("span_id", "rationale"):
        if record.get(key):
            body[key] = record[key]
    if record.get("metadata"):
        body["metadata"] = record["metadata"]
    return {"assessment": body}
