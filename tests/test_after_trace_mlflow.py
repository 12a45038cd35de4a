"""After the trace, against a real `mlflow server`: cost, reading back, feedback.

What tracekit writes is read back with MLflow's own client (`tests/mlflow_read.py`
in the MLflow venv), and what MLflow's own client writes is read with tracekit.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from tests.mlflow_server import MlflowServer, create_experiment, read_traces

import tracekit
from tracekit import _state

pytestmark = pytest.mark.timeout(600)  # the first use of `mlflow_server` may build its venv

PRICES = {"my-endpoint": {"input_mtok": 2.0, "output_mtok": 10.0}}
USAGE = {"input_tokens": 1000, "output_tokens": 200, "total_tokens": 1200}
ONE_CALL = {"input_cost": 0.002, "output_cost": 0.002, "total_cost": 0.004}


@pytest.fixture(autouse=True)
def _fresh_tracing() -> Iterator[None]:
    _state.reset()
    yield
    _state.reset()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def priced_agent(calls: int, **metadata: str) -> str:
    """A trace of `calls` LLM spans on a user-priced endpoint; returns its id."""
    with tracekit.start_span("agent", span_type="AGENT"):
        if metadata:
            tracekit.update_current_trace(metadata=metadata)
        for _ in range(calls):
            with tracekit.start_span("chat my-endpoint", span_type="CHAT_MODEL") as span:
                span.set_attributes(
                    {"gen_ai.request.model": "my-endpoint", "gen_ai.provider.name": "openai"}
                )
                span.token_usage = {
                    "input_tokens": 1000,
                    "output_tokens": 200,
                    "total_tokens": 1200,
                }
    trace_id = tracekit.get_last_trace_id()
    assert trace_id is not None
    return trace_id


def test_cost_is_shown_by_mlflow(mlflow_server: MlflowServer) -> None:
    """Span cost as `mlflow.llm.cost`, the trace's as `mlflow.trace.cost` (MLflow's
    `TraceInfo.cost`), whether the server sums the spans or StartTraceV3 states it."""
    experiment_id = create_experiment(mlflow_server.url, unique("cost"))
    tracekit.configure(tracking_uri=mlflow_server.url, experiment_id=experiment_id, prices=PRICES)
    from_spans = priced_agent(2)
    from_info = priced_agent(3, team="search")  # metadata only StartTraceV3 stores
    assert tracekit.flush(30)

    stored = {
        t["trace_id"]: t
        for t in read_traces(mlflow_server.python, mlflow_server.url, experiment_id)
    }
    for trace_id, calls in ((from_spans, 2), (from_info, 3)):
        trace = stored["tr-" + trace_id]
        llm = [s for s in trace["spans"] if s["span_type"] == "CHAT_MODEL"]
        assert [s["attributes"]["mlflow.llm.cost"] for s in llm] == [ONE_CALL] * calls
        total = json.loads(trace["metadata"]["mlflow.trace.cost"])
        assert total == pytest.approx({k: v * calls for k, v in ONE_CALL.items()})
