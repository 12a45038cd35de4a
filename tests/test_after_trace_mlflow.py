"""After the trace, against a real `mlflow server`: cost, reading back, feedback.

What tracekit writes is read back with MLflow's own client (`tests/mlflow_read.py`
in the MLflow venv), and what MLflow's own client writes is read with tracekit.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from tests.mlflow_server import MlflowServer, _clean_env, create_experiment, read_traces

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


def mlflow_client(server: MlflowServer, code: str) -> Any:
    """Run `code` with MLflow's own client in the MLflow venv; it prints one JSON value."""
    script = f"import json, mlflow\nmlflow.set_tracking_uri({server.url!r})\n" + textwrap.dedent(
        code
    )
    env = _clean_env(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="30")
    done = subprocess.run(
        [str(server.python), "-c", script], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_trace_logged_by_mlflow_is_read_by_tracekit(mlflow_server: MlflowServer) -> None:
    name = unique("by-mlflow")
    made = mlflow_client(
        mlflow_server,
        f"""
        mlflow.set_experiment({name!r})

        @mlflow.trace(span_type="AGENT")
        def agent(question):
            mlflow.update_current_trace(
                tags={{"env": "prod"}},
                metadata={{"mlflow.trace.session": "s-9", "mlflow.trace.user": "u-9"}},
            )
            with mlflow.start_span("retrieve", span_type="RETRIEVER") as span:
                span.set_inputs({{"q": question}})
                span.set_outputs(["doc"])
            return "answer"

        agent("why?")
        trace_id = mlflow.get_last_active_trace_id()
        mlflow.flush_trace_async_logging()
        experiment = mlflow.get_experiment_by_name({name!r}).experiment_id
        print(json.dumps([trace_id, experiment]))
        """,
    )
    mlflow_id, experiment_id = made
    tracekit.configure(tracking_uri=mlflow_server.url, experiment_id=experiment_id)

    trace = tracekit.get_trace(mlflow_id)
    assert trace is not None
    info = trace.info
    assert info.trace_id == mlflow_id.removeprefix("tr-")
    assert (info.name, info.state, info.experiment_id) == ("agent", "OK", experiment_id)
    assert info.tags["env"] == "prod"
    assert (info.session_id, info.user_id) == ("s-9", "u-9")
    assert isinstance(info.request_time, int)
    assert isinstance(info.execution_duration, int)
    root, retrieve = trace.data.spans
    assert (root.name, root.span_type, root.parent_id, root.status) == (
        "agent",
        "AGENT",
        None,
        "OK",
    )
    assert (root.inputs, root.outputs) == ({"question": "why?"}, "answer")
    assert (retrieve.name, retrieve.span_type, retrieve.parent_id) == (
        "retrieve",
        "RETRIEVER",
        root.span_id,
    )
    assert (retrieve.inputs, retrieve.outputs) == ({"q": "why?"}, ["doc"])
    assert tracekit.get_trace(mlflow_id.removeprefix("tr-")) is not None  # bare hex works too
    assert tracekit.get_trace("tr-" + "0" * 32) is None

    # Searching on the server: MLflow evaluates the filter, tracekit's names mapped.
    mine = priced_agent(1)
    found = [t.info.trace_id for t in tracekit.search_traces()]
    assert found == [mine, info.trace_id]  # newest first
    only = "tags.env = 'prod' AND metadata.session_id = 's-9' AND status = 'OK'"
    assert [t.info.trace_id for t in tracekit.search_traces(only)] == [info.trace_id]
    assert [t.info.trace_id for t in tracekit.search_traces("name = 'agent'")] == [
        mine,
        info.trace_id,
    ]
    assert tracekit.search_traces("tags.env = 'dev'") == []
    assert len(tracekit.search_traces(max_results=1)) == 1
    with pytest.raises(ValueError, match="refused the request"):
        tracekit.search_traces("trace.status < 3 AND tags.env LIKE 5")

    ours = tracekit.get_trace(mine)
    assert ours is not None
    assert ours.info.token_usage == USAGE
    assert ours.info.cost is None  # configured without prices this time
    assert [s.name for s in ours.data.spans] == ["agent", "chat my-endpoint"]
    assert ours.data.spans[1].token_usage == USAGE
