"""Reading traces back from the configured destination: `get_trace`, `search_traces`.

The first destination that can be read answers: a file store (read and
filtered here), or an MLflow tracking server or Databricks workspace (through
their REST API: `GET /api/3.0/mlflow/traces/get` and `POST
/api/3.0/mlflow/traces/search`, so traces stored there by anyone are
readable). OTLP backends, the console and memory cannot be read back, and
say so. Traces still queued in this process are flushed first, so the trace
just made is there.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tracekit import _filter, _mlflow_json, _state, _store
from tracekit._config import DEFAULT_STORE
from tracekit._entities import Assessment, Trace, TraceData

ASSESSMENTS_FILE = "assessments.jsonl"  # beside the traces; not `*.jsonl` trace lines
_FLUSH_S = 5.0


class UnreadableDestinationError(RuntimeError):
    """The configured destination cannot be read back (OTLP, console, memory)."""


def _uris() -> tuple[str, ...]:
    config = _state.config()
    return config.tracking_uris or (DEFAULT_STORE,)


def destination() -> tuple[str, Any]:
    """("file", Path) or ("remote", _Remote) for the first readable destination."""
    from tracekit.exporters import remote, store_directory

    unreadable = []
    for uri in _uris():
        directory = store_directory(uri)
        if directory is not None:
            return "file", directory
        scheme = remote.scheme_of(uri)
        if scheme in ("http", "https", "databricks"):
            return "remote", _remote(uri)
        unreadable.append(uri)
    raise UnreadableDestinationError(
        f"tracekit cannot read traces back from {', '.join(unreadable)}: an OTLP backend, the "
        "console or memory keeps no traces tracekit can query. Read them in the backend's own "
        "UI, or add a file store or an MLflow tracking server to TRACEKIT_TRACKING_URI "
        "(e.g. 'otlp,./traces')."
    )


_remotes: dict[tuple[str, Any], _Remote] = {}
_lock = threading.Lock()


def _remote(uri: str) -> _Remote:
    config = _state.config()
    key = (uri, (config.experiment_id, config.experiment_name, config.export_timeout))
    with _lock:
        if key not in _remotes:
            from tracekit.exporters import remote

            exporter, _, _ = remote.direct(uri, config)
            _remotes[key] = _Remote(exporter)
        return _remotes[key]


class _Remote:
    """An MLflow-compatible server read through the trace exporter's client."""

    def __init__(self, exporter: Any) -> None:
        self.exporter = exporter

    def _call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if body is not None else None
        try:
            response = self.exporter.client.request(method, path, data, headers)
        except Exception as exc:
            raise ConnectionError(f"{method} {path.split('?')[0]}: {exc}") from exc
        if response.status == 404:
            return 404, None
        if not response.ok:
            text = response.body.decode("utf-8", "replace")[:500]
            if response.status == 400:
                raise ValueError(f"{self.exporter.destination} refused the request: {text}")
            raise ConnectionError(
                f"{method} {path.split('?')[0]} answered {response.status}: {text}"
            )
        return response.status, json.loads(response.body or b"{}")

    def get(self, trace_id: str) -> Trace | None:
        path = "/api/3.0/mlflow/traces/get?trace_id=" + quote(_mlflow_json.mlflow_id(trace_id))
        status, body = self._call("GET", path)
        if status == 404 or not body or "trace" not in body:
            return None
        raw = body["trace"]
        info = _mlflow_json.trace_info(raw.get("trace_info") or {})
        return Trace(info, TraceData([_mlflow_json.span(s) for s in raw.get("spans") or []]))

    def search(
        self, filter_string: str | None, max_results: int, order_by: list[str] | None
    ) -> list[Trace]:
        from tracekit.exporters.tracking import ExperimentError

        clauses = _filter.parse(filter_string)
        try:
            experiment_id = self.exporter.experiment_id()
        except ExperimentError as exc:
            raise ConnectionError(exc.result.message) from exc
        found: list[Trace] = []
        token: str | None = None
        while len(found) < max_results:
            body: dict[str, Any] = {
                "locations": [
                    {
                        "type": "MLFLOW_EXPERIMENT",
                        "mlflow_experiment": {"experiment_id": experiment_id},
                    }
                ],
                "max_results": min(500, max_results - len(found)),
                "order_by": list(order_by or ["timestamp_ms DESC"]),
            }
            if clauses:
                body["filter"] = _filter.to_mlflow(clauses)
            if token:
                body["page_token"] = token
            _, answer = self._call("POST", "/api/3.0/mlflow/traces/search", body)
            answer = answer or {}
            for raw in answer.get("traces") or []:
                info = _mlflow_json.trace_info(raw)
                found.append(Trace(info, TraceData([])))
            token = answer.get("next_page_token")
            if not token:
                break
        return found[:max_results]


# -- the file store ----------------------------------------------------------------------


def assessment_records(directory: Path) -> dict[str, list[dict[str, Any]]]:
    """Every assessment line of a file store, by trace id, oldest first."""
    found: dict[str, list[dict[str, Any]]] = {}
    try:
        handle = (directory / ASSESSMENTS_FILE).open("r", encoding="utf-8", errors="replace")
    except OSError:
        return found
    with handle:
        for line in handle:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a torn line
            if isinstance(record, dict) and isinstance(record.get("trace_id"), str):
                found.setdefault(record["trace_id"], []).append(record)
    return found


def assessments_in(directory: Path) -> dict[str, list[Assessment]]:
    """Every assessment logged to a file store, by trace id, oldest first."""
    return {
        trace_id: [Assessment.from_record(r) for r in records]
        for trace_id, records in assessment_records(directory).items()
    }


def _file_traces(directory: Path) -> list[Trace]:
    assessments = assessments_in(directory)
    return [Trace.from_record(r, assessments.get(r["trace_id"])) for r in _store.load(directory)]


def _file_get(directory: Path, trace_id: str) -> Trace | None:
    wanted = trace_id.strip().lower().removeprefix("tr-")
    if not wanted:
        return None
    records = [r for r in _store.load(directory) if str(r["trace_id"]).startswith(wanted)]
    exact = [r for r in records if r["trace_id"] == wanted]
    if len(exact) == 1 or len(records) == 1:
        record = (exact or records)[0]
        return Trace.from_record(record, assessments_in(directory).get(record["trace_id"]))
    if records:
        raise ValueError(f"{trace_id!r} matches {len(records)} traces; give more digits")
    return None


def _sort_key(field: str) -> Any:
    def key(trace: Trace) -> tuple[bool, Any]:
        value = {
            "status": trace.info.state,
            "name": trace.info.name,
            "timestamp_ms": trace.info.request_time,
            "execution_time_ms": trace.info.execution_duration,
            "trace_id": trace.info.trace_id,
        }[field]
        return (value is None, value if value is not None else 0)

    return key


# -- the public functions ----------------------------------------------------------------


def get_trace(trace_id: str) -> Trace | None:
    """The trace with this id from the configured destination, or None if it has none.

    Reads a file store (where a unique prefix of the id is enough), an MLflow
    tracking server or a Databricks workspace (an id in MLflow's `tr-<hex>`
    form works too, so traces logged by MLflow itself are readable). Traces
    still queued in this process are flushed first.

    Raises:
        UnreadableDestinationError: the destination is OTLP, the console or memory.
        ValueError: a prefix that matches several traces in a file store.
        ConnectionError: the server could not be reached or answered an error.

    Example:
        trace = tracekit.get_trace(tracekit.get_last_trace_id())
        trace.info.token_usage["input_tokens"], trace.info.cost, trace.data.spans
    """
    _state.flush(_FLUSH_S)
    kind, where = destination()
    if kind == "file":
        return _file_get(where, trace_id)
    trace: Trace | None = where.get(trace_id)
    return trace


def search_traces(
    filter_string: str | None = None, max_results: int = 100, order_by: list[str] | None = None
) -> list[Trace]:
    """Traces in the configured destination that pass `filter_string`, newest first.

    `filter_string` uses MLflow's grammar (clauses joined by AND), e.g.
    `"status = 'ERROR' AND tags.env = 'prod'"`, `"name LIKE 'answer%'"`,
    `"timestamp_ms > 1765000000000 AND execution_time_ms >= 500"`,
    `"metadata.session_id = 's-1'"` (also `metadata.user_id`, or MLflow's
    `` metadata.`mlflow.trace.session` ``). `order_by` is a list such as
    `["execution_time_ms DESC"]`. A file store is filtered here; a tracking
    server or Databricks evaluates the filter itself (and returns trace infos
    without spans: `get_trace` fetches a trace's spans).

    Raises:
        UnreadableDestinationError: the destination is OTLP, the console or memory.
        tracekit._filter.FilterError (a ValueError): a filter that does not parse.
    """
    if not isinstance(max_results, int) or isinstance(max_results, bool) or max_results < 1:
        raise ValueError(f"max_results must be a positive integer, not {max_results!r}")
    clauses = _filter.parse(filter_string)
    keys = _filter.order_key(order_by)
    _state.flush(_FLUSH_S)
    kind, where = destination()
    if kind == "remote":
        return where.search(filter_string, max_results, order_by)  # type: ignore[no-any-return]
    traces = [t for t in _file_traces(where) if _filter.matches(clauses, t.info)]
    for field, descending in reversed(keys or [("timestamp_ms", True)]):
        traces.sort(key=_sort_key(field), reverse=descending)
    return traces[:max_results]


def get_current_trace_id() -> str | None:
    """The id of the trace the current span belongs to, or None outside a trace.

    Return it with a response (e.g. in a header) so that the client can send
    feedback on it later (`tracekit.log_feedback(trace_id=...)`).
    """
    from tracekit._context import current_span

    span = current_span.get()
    if span is None or not span.is_recording:
        return None
    return str(span.trace_id)
