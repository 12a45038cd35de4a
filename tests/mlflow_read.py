"""Print traces stored in an MLflow tracking server as JSON (run by the MLflow venv's python).

Usage::

    python mlflow_read.py TRACKING_URI trace TRACE_ID
    python mlflow_read.py TRACKING_URI search EXPERIMENT_ID

``trace`` prints one trace object, ``search`` a list of them, oldest first. Only the JSON goes
to stdout (anything MLflow prints is sent to stderr). On an MLflow error it prints
``{"error": ..., "error_code": ...}`` and exits with status 3. Not a test module: tracekit's
own environment does not have mlflow; see ``tests/mlflow_server.py``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

USAGE = "usage: mlflow_read.py TRACKING_URI (trace TRACE_ID | search EXPERIMENT_ID)"


def _enum_value(value: Any) -> Any:
    return getattr(value, "value", value)


def span_dict(span: Any) -> dict[str, Any]:
    """One ``mlflow.entities.Span`` as a plain dict."""
    status = span.status
    return {
        "span_id": span.span_id,
        "parent_id": span.parent_id,
        "name": span.name,
        "span_type": span.span_type,
        "status": _enum_value(status.status_code),
        "status_message": status.description,
        "inputs": span.inputs,
        "outputs": span.outputs,
        "attributes": dict(span.attributes),
        "start_time_ns": span.start_time_ns,
        "end_time_ns": span.end_time_ns,
        "events": [
            {"name": e.name, "timestamp_ns": e.timestamp, "attributes": dict(e.attributes or {})}
            for e in span.events
        ],
    }


def trace_dict(trace: Any) -> dict[str, Any]:
    """One ``mlflow.entities.Trace`` as a plain dict (times in ms, as MLflow keeps them)."""
    info = trace.info
    return {
        "trace_id": info.trace_id,
        "experiment_id": info.experiment_id,
        "state": _enum_value(info.state),
        "request_time": info.request_time,
        "execution_duration": info.execution_duration,
        "tags": dict(info.tags),
        "metadata": dict(info.trace_metadata),
        "token_usage": info.token_usage,
        "request_preview": info.request_preview,
        "response_preview": info.response_preview,
        "spans": [span_dict(s) for s in trace.data.spans],
    }


def read(tracking_uri: str, command: str, arg: str) -> Any:
    """Run ``command`` (``trace`` or ``search``) against the tracking server."""
    import mlflow  # imported here so that anything it prints goes to stderr

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    if command == "trace":
        return trace_dict(client.get_trace(arg, display=False))
    traces: list[Any] = []
    page_token: str | None = None
    while True:
        page = client.search_traces(locations=[arg], max_results=100, page_token=page_token)
        traces.extend(page)
        page_token = page.token
        if not page_token:
            break
    traces.sort(key=lambda t: (t.info.request_time, t.info.trace_id))
    return [trace_dict(t) for t in traces]


def main(argv: list[str]) -> int:
    """Entry point; returns the exit status."""
    if len(argv) != 3 or argv[1] not in ("trace", "search"):
        print(USAGE, file=sys.stderr)
        return 2
    stdout, sys.stdout = sys.stdout, sys.stderr
    try:
        result, status = read(*argv), 0
    except Exception as e:  # MlflowException and friends: report them as JSON
        result = {"error": f"{type(e).__name__}: {e}", "error_code": getattr(e, "error_code", None)}
        status = 3
    finally:
        sys.stdout = stdout
    json.dump(result, sys.stdout, default=str)
    sys.stdout.write("\n")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
