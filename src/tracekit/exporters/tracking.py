"""The tracking-server exporter: an MLflow-compatible server over its REST API.

A stock `mlflow server` stores and shows tracekit traces, with no MLflow in
the application:

1. the experiment is found by id, or by name (created if missing), through
   `/api/2.0/mlflow/experiments/*`, once per exporter;
2. the spans of a batch go as OTLP to `POST /v1/traces` with the header
   `x-mlflow-experiment-id` (protobuf, or OTLP/JSON on request), carrying
   the `mlflow.*` attributes MLflow's UI reads;
3. the server builds each trace's info from its root span (name, state,
   timing, previews, tags, session, user, token usage), in the experiment of
   whoever stored spans of the trace first. One question per batch
   (BatchGetTraceInfos) finds the traces it holds elsewhere: an MLflow AI
   Gateway tracing the app's calls (their `traceparent`) may have stored its
   spans first, without an experiment. Those, and traces with more metadata
   than the spans carry, go to `POST /api/3.0/mlflow/traces` (StartTraceV3),
   which moves a trace and its spans to the configured experiment, after the
   spans as MLflow's own client does (`trace_info`);
4. a process whose part of the trace continues a remote caller's span (a
   service) has no root span: its trace tags go to SetTraceTag
   (`PATCH /api/2.0/mlflow/traces/tr-ID/tags`).

Both writes are keyed by the trace and span ids, so delivering a batch twice
(a retry after a timeout that did succeed, a replayed spool) stores it once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from tracekit.exporters import _mlflow_chat, _otlp
from tracekit.exporters._http import HttpClient, Response, result_of, result_of_error
from tracekit.exporters.base import SUCCESS, BaseExporter, ExportResult, TraceRecord

Headers = dict[str, str]
PREVIEW_CHARS = 1000
EXPERIMENT_HEADER = "x-mlflow-experiment-id"
DEFAULT_EXPERIMENT_ID = "0"  # MLflow's "Default" experiment
_STATE = {"OK": "OK", "ERROR": "ERROR", "UNSET": "OK"}


class ExperimentError(Exception):
    """The experiment could not be found or created; carries the failed result."""

    def __init__(self, result: ExportResult) -> None:
        super().__init__(result.message)
        self.result = result


class TrackingServerExporter(BaseExporter):
    """Sends trace records to an MLflow-compatible tracking server.

    Args:
        client: an `HttpClient` for the server's base URL (auth headers included).
        experiment_id: the experiment to log to; wins over `experiment_name`.
        experiment_name: found, or created if missing, on first export.
        protobuf: send spans as OTLP protobuf (the default) rather than OTLP/JSON.
        max_spans_per_request: spans per `/v1/traces` request (a trace is never split).
        trace_info: when to send StartTraceV3, which makes the configured
            experiment win whoever wrote the trace first, but freezes the
            trace's time range and token usage at this process's part (parts a
            service exports later are no longer added). `"auto"` (the default):
            for traces whose metadata the spans cannot carry (anything beyond
            session and user; the server builds the rest from the root span),
            and for traces the server holds in another experiment (asked once
            per batch: another writer, an MLflow AI Gateway tracing the app's
            call, stored its spans first). `"always"`: every trace, as MLflow's
            own client does. `"metadata"`: only for the metadata (no question
            asked; for Databricks, which allows ~60 requests a second).
    """

    def __init__(
        self,
        client: HttpClient,
        experiment_id: str | None = None,
        experiment_name: str | None = None,
        protobuf: bool | None = None,
        max_spans_per_request: int = 1000,
        auth_hint: str = "MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME/PASSWORD",
        trace_info: str = "auto",
    ) -> None:
        if trace_info not in _TRACE_INFO_MODES:
            raise ValueError(f"trace_info must be one of {_TRACE_INFO_MODES}, not {trace_info!r}")
        self.trace_info = trace_info
        self.client = client
        self.auth_hint = auth_hint
        self.experiment_name = experiment_name
        self._experiment_id = experiment_id
        self._configured_id = experiment_id
        self.protobuf = _otlp.protobuf_available() if protobuf is None else protobuf
        self.max_spans_per_request = max_spans_per_request

    @property
    def destination(self) -> str:
        return self.client.base_url

    def export(self, traces: Sequence[TraceRecord]) -> ExportResult:
        if not traces:
            return SUCCESS
        try:
            experiment_id = self.experiment_id()
        except ExperimentError as exc:
            return exc.result
        for chunk in _otlp.chunks(traces, self.max_spans_per_request):
            body, content_type = _otlp.encode(_otlp.to_otlp(chunk, mlflow=True), self.protobuf)
            result = self._call(
                "POST",
                _otlp.OTLP_PATH,
                body,
                {"Content-Type": content_type, EXPERIMENT_HEADER: experiment_id},
                "POST /v1/traces",
            )
            if not result.ok:
                return self._blame(result, experiment_id)
        misplaced = self._misplaced(traces, experiment_id) if self.trace_info == "auto" else None
        for record in traces:
            result = self._tag_remote_part(record)
            if not result.ok:
                return result
            if not self._wants_info(record, misplaced):
                continue  # the server built the same trace info from the root span
            info = trace_info(record, experiment_id)
            if info is None:  # a fragment from a forked child: its parent sends the info
                continue
            result = self._call(
                "POST", "/api/3.0/mlflow/traces", _json_bytes(info), _JSON, "StartTraceV3"
            )
            if not result.ok:
                return result
        return SUCCESS

    def _wants_info(self, record: TraceRecord, misplaced: set[str] | None) -> bool:
        if self.trace_info == "always" or needs_trace_info(record):
            return True
        if self.trace_info == "metadata":
            return False
        return misplaced is None or record["trace_id"] in misplaced

    def _misplaced(self, traces: Sequence[TraceRecord], experiment_id: str) -> set[str] | None:
        """The batch's traces that the server holds in another experiment, asked once per
        100 traces (BatchGetTraceInfos): another writer stored spans of them first, without
        an experiment (an MLflow AI Gateway tracing the app's calls). None when the server
        cannot say: then every trace gets its StartTraceV3."""
        ids = [f"tr-{r['trace_id']}" for r in traces if not remote_part(r)]
        out: set[str] = set()
        for start in range(0, len(ids), 100):
            body = _json_bytes({"trace_ids": ids[start : start + 100]})
            try:
                response = self.client.request("POST", _BATCH_GET_INFOS, body, _JSON)
                infos = json.loads(response.body).get("trace_infos") or [] if response.ok else None
            except Exception:  # no answer, or not JSON: StartTraceV3 for every trace
                return None
            if infos is None:  # an older server (404) or a refusal
                return None
            for info in infos:
                location = (info.get("trace_location") or {}).get("mlflow_experiment") or {}
                if str(location.get("experiment_id")) != experiment_id:
                    out.add(str(info.get("trace_id", "")).removeprefix("tr-"))
        return out

    def _tag_remote_part(self, record: TraceRecord) -> ExportResult:
        """Trace tags set in a process whose part of the trace continues a remote
        caller's (a service behind `continue_trace` or the middleware): MLflow reads
        trace tags only from the root span, which is in the caller's process, so
        they are set on the trace with SetTraceTag (idempotent), after its spans."""
        tags = record.get("tags")
        if not tags or not remote_part(record):
            return SUCCESS
        path = f"/api/2.0/mlflow/traces/tr-{record['trace_id']}/tags"
        for key, value in tags.items():
            body = _json_bytes({"key": str(key), "value": _string(value)})
            result = self._call("PATCH", path, body, _JSON, "SetTraceTag")
            if not result.ok:
                return result
        return SUCCESS

    def _blame(self, result: ExportResult, experiment_id: str) -> ExportResult:
        """A 400/404 for spans sent to a configured experiment id: the batch's fault
        (a poison record, split off by the delivery) or the id's (a configuration
        error that keeps the traces)? The server says, asked about the id."""
        if result.status not in (400, 404) or experiment_id != self._configured_id:
            return result
        try:
            response = self.client.request(
                "GET", "/api/2.0/mlflow/experiments/get?experiment_id=" + quote(experiment_id)
            )
        except Exception:  # no answer now: the batch is retried later anyway
            return replace(result, retryable=True)
        if response.status not in (400, 404):
            return result
        detail = response.body[:200].decode("utf-8", "replace").strip()
        return replace(
            result,
            configuration=True,
            message=f"experiment id {experiment_id!r} is not usable on {self.destination} "
            f"(HTTP {response.status} {detail}): set TRACEKIT_EXPERIMENT_ID (or "
            "MLFLOW_EXPERIMENT_ID, or configure(experiment_id=)) to an existing experiment's id",
        )

    def experiment_id(self) -> str:
        """The experiment's id, found or created on first use (raises ExperimentError)."""
        if self._experiment_id is None:
            self._experiment_id = (
                self._find_or_create(self.experiment_name)
                if self.experiment_name
                else DEFAULT_EXPERIMENT_ID
            )
        return self._experiment_id

    def _find_or_create(self, name: str) -> str:
        for _ in range(2):  # a concurrent creator may win the race once
            response = self._request(
                "GET", "/api/2.0/mlflow/experiments/get-by-name?experiment_name=" + quote(name)
            )
            if response.ok:
                experiment = _field(response, "experiment", "find experiment")
                if not isinstance(experiment, dict) or "experiment_id" not in experiment:
                    raise ExperimentError(_garbage(response, "find experiment"))
                if experiment.get("lifecycle_stage") == "deleted":
                    raise ExperimentError(
                        ExportResult(
                            ok=False,
                            message=f"experiment {name!r} is deleted on {self.destination}; "
                            "restore it or set TRACEKIT_EXPERIMENT_NAME to another name",
                        )
                    )
                return str(experiment["experiment_id"])
            if response.status != 404:
                raise ExperimentError(self._name_result(response, f"find experiment {name!r}"))
            created = self._request(
                "POST", "/api/2.0/mlflow/experiments/create", _json_bytes({"name": name}), _JSON
            )
            if created.ok:
                return str(_field(created, "experiment_id", "create experiment"))
            if b"RESOURCE_ALREADY_EXISTS" not in created.body:
                raise ExperimentError(self._name_result(created, f"create experiment {name!r}"))
        raise ExperimentError(ExportResult(ok=False, message=f"experiment {name!r} not found"))

    def _request(
        self, method: str, path: str, body: bytes | None = None, headers: Headers | None = None
    ) -> Response:
        try:
            return self.client.request(method, path, body, headers)
        except Exception as exc:  # OSError, HTTPException, TLS errors
            result = result_of_error(exc, f"{method} {path.split('?')[0]}")
            raise ExperimentError(self._hinted(result)) from exc

    def _call(
        self, method: str, path: str, body: bytes, headers: dict[str, str], what: str
    ) -> ExportResult:
        try:
            response = self.client.request(method, path, body, headers)
        except Exception as exc:
            return self._hinted(result_of_error(exc, what))
        return self._result(response, what)

    def _hinted(self, result: ExportResult) -> ExportResult:
        if result.configuration:  # a credential that is not a valid header: say which
            return replace(result, message=f"{result.message} (check {self.auth_hint})")
        return result

    def _result(self, response: Response, what: str) -> ExportResult:
        result = result_of(response, what)
        if response.status in (401, 403):
            return replace(result, message=f"{result.message} (check {self.auth_hint})")
        return result

    def _name_result(self, response: Response, what: str) -> ExportResult:
        """A refused experiment name is a configuration error: the traces are kept."""
        result = self._result(response, what)
        if response.status in (400, 422):
            return replace(
                result,
                configuration=True,
                message=f"{result.message}: set TRACEKIT_EXPERIMENT_NAME (or "
                "MLFLOW_EXPERIMENT_NAME, or configure(experiment_name=)) to a name the server "
                "accepts",
            )
        return result

    def shutdown(self, timeout: float | None = None) -> None:
        self.client.close()


_JSON = {"Content-Type": "application/json"}
_BATCH_GET_INFOS = "/api/3.0/mlflow/traces/batchGetInfos"
_TRACE_INFO_MODES = ("auto", "always", "metadata")


def _garbage(response: Response, what: str) -> ExportResult:
    """A 200 whose body is not what an MLflow server sends (a captive portal, a proxy's
    page, another service on that port): a destination error, retried later."""
    detail = response.body[:200].decode("utf-8", "replace").strip()
    return ExportResult(
        ok=False,
        retryable=True,
        message=f"{what}: HTTP {response.status} with a body that is not an MLflow server's "
        f"answer ({detail!r}); is the tracking URI an MLflow server?",
        status=response.status,
    )


def _field(response: Response, key: str, what: str) -> Any:
    """`key` of the JSON object in a successful response (ExperimentError if there is none)."""
    try:
        value = json.loads(response.body)[key]
    except (ValueError, KeyError, TypeError, IndexError):
        raise ExperimentError(_garbage(response, what)) from None
    return value


def _json_bytes(value: Any) -> bytes:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=repr)
    return text.encode("utf-8", "backslashreplace")


def _preview(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 3] + "..."


def _timestamp(ns: int) -> str:
    seconds, rest = divmod(int(ns), 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{rest // 1_000_000:03d}Z"


def _string(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=repr)


_SPAN_CARRIED_METADATA = frozenset({"session_id", "user_id"})


def needs_trace_info(record: Mapping[str, Any]) -> bool:
    """Whether a record has what only StartTraceV3 can store: metadata beyond session and
    user, or request/response previews (the question, the answer) other than those the
    server builds from the root span."""
    return any(key not in _SPAN_CARRIED_METADATA for key in record.get("metadata") or {}) or (
        _mlflow_chat.previews_differ(record)
    )


def remote_part(record: Mapping[str, Any]) -> bool:
    """Whether a record is the part of a trace that continues another process's
    span: its local root has a parent that is not among its spans."""
    spans = record.get("spans") or []
    ids = {s.get("span_id") for s in spans}
    return (
        bool(spans)
        and all(s.get("parent_id") is not None for s in spans)
        and any(s.get("parent_id") not in ids for s in spans)
    )


def trace_info(record: Mapping[str, Any], experiment_id: str) -> dict[str, Any] | None:
    """The StartTraceV3 body for a record, or None for a fragment without its root."""
    spans = record.get("spans") or []
    root = next((s for s in spans if s.get("parent_id") is None), None)
    if root is None:
        return None
    start = int(record.get("start_time_ns") or root.get("start_time_ns") or 0)
    end = int(record.get("end_time_ns") or root.get("end_time_ns") or start)
    metadata = {str(k): _string(v) for k, v in (record.get("metadata") or {}).items()}
    if "session_id" in metadata:
        metadata["mlflow.trace.session"] = metadata["session_id"]
    if "user_id" in metadata:
        metadata["mlflow.trace.user"] = metadata["user_id"]
    # No `mlflow.trace.tokenUsage` nor `mlflow.trace.cost`: the server sums them from the
    # spans of every writer (a service's part of the trace, a gateway's), and a value sent
    # here would replace that sum with this process's part alone.
    metadata["mlflow.trace_schema.version"] = "3"
    service = (record.get("resource") or {}).get("service.name")
    if service:
        metadata["tracekit.service_name"] = str(service)
    tags = {str(k): _string(v) for k, v in (record.get("tags") or {}).items()}
    tags["mlflow.traceName"] = str(record.get("name") or root.get("name") or "")
    info: dict[str, Any] = {
        "trace_id": "tr-" + str(record["trace_id"]),
        "trace_location": {
            "type": "MLFLOW_EXPERIMENT",
            "mlflow_experiment": {"experiment_id": experiment_id},
        },
        "request_time": _timestamp(start),
        # Whole milliseconds between the millisecond ticks, as the server computes it
        # from spans (start_ms + duration_ms is the last span's end_ms).
        "execution_duration": f"{max(0, end // 1_000_000 - start // 1_000_000) / 1000:.3f}s",
        "state": _STATE.get(str(record.get("status")), "OK"),
        "trace_metadata": metadata,
        "tags": tags,
    }
    request, response = _mlflow_chat.previews(record)  # the question and the answer
    if request is not None or root.get("inputs") is not None:
        info["request_preview"] = _preview(request if request is not None else root["inputs"])
    if response is not None or root.get("outputs") is not None:
        info["response_preview"] = _preview(response if response is not None else root["outputs"])
    return {"trace": {"trace_info": info}}
