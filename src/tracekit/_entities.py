"""What `tracekit.get_trace()` and `tracekit.search_traces()` return.

The names follow MLflow's entities (`Trace`, `TraceInfo`, `TraceData`,
`Assessment` with `Feedback`/`Expectation` kinds, `AssessmentSource`), so code
written against MLflow's `get_trace(...).info.token_usage` reads the same. They
are built from a `tracekit.trace/1` record (the file store) or from an MLflow
tracking server's REST answers (`_mlflow_json`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

_STATES = {"OK": "OK", "ERROR": "ERROR", "UNSET": "OK", "IN_PROGRESS": "IN_PROGRESS"}


@dataclass
class AssessmentSource:
    """Who made an assessment: `source_type` is `HUMAN`, `LLM_JUDGE` or `CODE`."""

    source_type: str = "HUMAN"
    source_id: str = "default"

    def to_dict(self) -> dict[str, str]:
        return {"source_type": self.source_type, "source_id": self.source_id}


@dataclass
class Assessment:
    """A feedback (`kind="feedback"`: a rating, a score, a label) or an expectation
    (`kind="expectation"`: the ground truth) attached to a trace or one of its spans."""

    name: str
    value: Any
    kind: str = "feedback"
    trace_id: str = ""
    assessment_id: str | None = None
    span_id: str | None = None
    source: AssessmentSource = field(default_factory=AssessmentSource)
    rationale: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    error: dict[str, str] | None = None
    create_time_ms: int | None = None
    last_update_time_ms: int | None = None
    valid: bool = True

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Assessment:
        """From a line of a file store's `assessments.jsonl`."""
        source = record.get("source") or {}
        return cls(
            name=str(record.get("name", "")),
            value=record.get("value"),
            kind=str(record.get("kind", "feedback")),
            trace_id=str(record.get("trace_id", "")),
            assessment_id=record.get("assessment_id"),
            span_id=record.get("span_id"),
            source=AssessmentSource(
                str(source.get("source_type", "HUMAN")), str(source.get("source_id", "default"))
            ),
            rationale=record.get("rationale"),
            metadata=dict(record.get("metadata") or {}),
            error=record.get("error"),
            create_time_ms=record.get("create_time_ms"),
            last_update_time_ms=record.get("create_time_ms"),
        )


@dataclass
class Span:
    """One span of a trace read back (a plain record; `tracekit.Span` is the live one)."""

    span_id: str
    parent_id: str | None
    name: str
    span_type: str = "UNKNOWN"
    start_time_ns: int | None = None
    end_time_ns: int | None = None
    status: str = "UNSET"
    status_message: str = ""
    inputs: Any = None
    outputs: Any = None
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[Any] = field(default_factory=list)
    token_usage: dict[str, int] | None = None
    cost: dict[str, float] | None = None

    @classmethod
    def from_record(cls, span: dict[str, Any]) -> Span:
        status = span.get("status") or {}
        return cls(
            span_id=str(span.get("span_id", "")),
            parent_id=span.get("parent_id"),
            name=str(span.get("name", "")),
            span_type=str(span.get("span_type", "UNKNOWN")),
            start_time_ns=span.get("start_time_ns"),
            end_time_ns=span.get("end_time_ns"),
            status=str(status.get("code", "UNSET")) if isinstance(status, dict) else str(status),
            status_message=str(status.get("message") or "") if isinstance(status, dict) else "",
            inputs=span.get("inputs"),
            outputs=span.get("outputs"),
            attributes=dict(span.get("attributes") or {}),
            events=list(span.get("events") or []),
            token_usage=span.get("token_usage"),
            cost=span.get("cost"),
        )


@dataclass
class TraceInfo:
    """A trace's summary: ids, name, status, times, tags, metadata, usage, cost, assessments.

    `state` is MLflow's name for `status` (`OK`, `ERROR`, `IN_PROGRESS`);
    `request_time` is the start in milliseconds since the epoch and
    `execution_duration` the duration in milliseconds, as in MLflow.
    """

    trace_id: str
    name: str | None = None
    state: str = "OK"
    request_time: int | None = None
    execution_duration: int | None = None
    tags: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    token_usage: dict[str, int] | None = None
    cost: dict[str, float] | None = None
    assessments: list[Assessment] = field(default_factory=list)
    experiment_id: str | None = None
    request_preview: str | None = None
    response_preview: str | None = None

    @property
    def status(self) -> str:
        return self.state

    @property
    def trace_metadata(self) -> dict[str, Any]:
        return self.metadata

    @property
    def timestamp_ms(self) -> int | None:
        return self.request_time

    @property
    def execution_time_ms(self) -> int | None:
        return self.execution_duration

    @property
    def session_id(self) -> str | None:
        value = self.metadata.get("session_id", self.metadata.get("mlflow.trace.session"))
        return None if value is None else str(value)

    @property
    def user_id(self) -> str | None:
        value = self.metadata.get("user_id", self.metadata.get("mlflow.trace.user"))
        return None if value is None else str(value)


@dataclass
class TraceData:
    """A trace's spans, in the order they were recorded."""

    spans: list[Span] = field(default_factory=list)


@dataclass
class Trace:
    """A trace read back: `trace.info` (`TraceInfo`) and `trace.data.spans`."""

    info: TraceInfo
    data: TraceData

    @classmethod
    def from_record(
        cls, record: dict[str, Any], assessments: list[Assessment] | None = None
    ) -> Trace:
        """From a `tracekit.trace/1` record (the file store's format)."""
        start, end = record.get("start_time_ns"), record.get("end_time_ns")
        spans = record.get("spans") or []
        root = next((s for s in spans if s.get("parent_id") is None), None)
        info = TraceInfo(
            trace_id=str(record["trace_id"]),
            name=record.get("name"),
            state=_STATES.get(str(record.get("status")), "OK"),
            request_time=None if start is None else start // 1_000_000,
            execution_duration=None if start is None or end is None else (end - start) // 1_000_000,
            tags=dict(record.get("tags") or {}),
            metadata=dict(record.get("metadata") or {}),
            token_usage=record.get("token_usage"),
            cost=record.get("cost"),
            assessments=list(assessments or []),
            request_preview=_preview(root.get("inputs")) if root else None,
            response_preview=_preview(root.get("outputs")) if root else None,
        )
        return cls(info, TraceData([Span.from_record(s) for s in spans]))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of the whole trace."""
        import dataclasses

        return {"info": dataclasses.asdict(self.info), "data": dataclasses.asdict(self.data)}


def _preview(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, default=repr)
    return text[:1000]
