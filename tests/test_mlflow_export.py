"""The tracking-server exporter against a real `mlflow server`, read back with MLflow's client.

Traces are made by real traced code (and, for the provider tests, real SDKs replaying
recorded traffic), exported by the configured pipeline or by `TrackingServerExporter`
itself, and read back through `tests/mlflow_read.py` with MLflow's own `MlflowClient`:
the assertions are on what MLflow says it stored. Reads cost a subprocess each, so tests
put their traces in one experiment and read it once.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from tests.child import run_python
from tests.fault_proxy import FaultProxy
from tests.mlflow_server import MlflowServer, create_experiment, read_trace, read_traces
from tests.replay import Cassette, load_or_skip, replay_server
from tests.trace_checks import by_name

import tracekit
from tracekit import _state
from tracekit.exporters._http import HttpClient
from tracekit.exporters.memory import InMemoryExporter
from tracekit.exporters.tracking import TrackingServerExporter, trace_info

# The first use of `mlflow_server` may build the MLflow virtualenv.
pytestmark = [pytest.mark.timeout(600), pytest.mark.usefixtures("fresh_tracing")]

START_TRACE = "/api/3.0/mlflow/traces"
BATCH_GET_INFOS = "/api/3.0/mlflow/traces/batchGetInfos"
OTLP = "/v1/traces"


# -- helpers ---------------------------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def rest(url: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One JSON request to the server (not through tracekit)."""
    import http.client

    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if raw else None
    finally:
        conn.close()


def experiment_by_name(url: str, name: str) -> dict[str, Any]:
    status, body = rest(
        url, "GET", "/api/2.0/mlflow/experiments/get-by-name?experiment_name=" + quote(name)
    )
    assert status == 200, body
    experiment: dict[str, Any] = body["experiment"]
    return experiment


def experiments_named(url: str, name: str) -> list[dict[str, Any]]:
    status, body = rest(
        url,
        "POST",
        "/api/2.0/mlflow/experiments/search",
        {"filter": f"name = '{name}'", "max_results": 100, "view_type": "ALL"},
    )
    assert status == 200, body
    found: list[dict[str, Any]] = (body or {}).get("experiments", [])
    return found


def assert_not_spooled(root: Path) -> None:
    """A batch the server refused would have been spooled quietly: make sure none was."""
    spool = root / ".tracekit" / "spool"
    pending = sorted(p.name for p in spool.rglob("*.jsonl*")) if spool.exists() else []
    assert pending == [], f"batches were spooled instead of delivered: {pending}"


def flush() -> None:
    assert tracekit.flush(30), "the pipeline did not flush in time"


def record_spans(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in record["spans"]}


def record(trace_id: str, n_spans: int = 3, **extra: Any) -> dict[str, Any]:
    """A `tracekit.trace/1` record: a CHAIN root and TOOL children."""
    t0 = 1_790_000_000_123_456_789
    spans = [
        {
            "span_id": f"{1:016x}",
            "parent_id": None,
            "name": "root",
            "span_type": "CHAIN",
            "start_time_ns": t0,
            "end_time_ns": t0 + 250_000_000,
            "status": {"code": "OK", "message": ""},
            "inputs": {"question": "q?"},
            "outputs": "answer",
            "attributes": {},
            "events": [],
        }
    ]
    for i in range(2, n_spans + 1):
        spans.append(
            {
                "span_id": f"{i:016x}",
                "parent_id": f"{1:016x}",
                "name": f"step {i}",
                "span_type": "TOOL",
                "start_time_ns": t0 + i * 1000,
                "end_time_ns": t0 + i * 1000 + 500,
                "status": {"code": "OK", "message": ""},
                "inputs": {"i": i},
                "outputs": i * 10,
                "attributes": {},
                "events": [],
            }
        )
    out = {
        "schema": "tracekit.trace/1",
        "trace_id": trace_id,
        "name": "root",
        "status": "OK",
        "start_time_ns": t0,
        "end_time_ns": t0 + 250_000_000,
        "tags": {},
        "metadata": {},
        "resource": {"service.name": "tests", "telemetry.sdk.name": "tracekit"},
        "spans": spans,
    }
    out.update(extra)
    return out


# -- 1. a traced app, stored exactly ---------------------------------------------------


@tracekit.trace(span_type="TOOL")
def lookup_order(order_id: str) -> dict[str, Any]:
    return {"order_id": order_id, "status": "shipped", "items": 2}


@tracekit.trace(span_type="AGENT")
def support_agent(question: str) -> str:
    tracekit.update_current_trace(
        tags={"env": "dev", "release": 7},
        session_id="s-1",
        user_id="u-1",
        metadata={"ticket": "T-42", "channel": "chat"},
    )
    order = lookup_order("A-17")
    with tracekit.start_span(
        "chat gpt-4o-mini",
        span_type="CHAT_MODEL",
        inputs={"messages": [{"role": "user", "content": question}], "model": "gpt-4o-mini"},
        attributes={
            "gen_ai.provider.name": "openai",
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
            "gen_ai.response.finish_reasons": ["stop"],
        },
    ) as span:
        time.sleep(0.05)  # a duration MLflow's millisecond clock can see
        answer = f"Your order {order['order_id']} has {order['status']}."
        span.set_outputs({"role": "assistant", "content": answer})
        span.set_token_usage(
            {
                "input_tokens": 120,
                "output_tokens": 30,
                "total_tokens": 150,
                "cache_read_input_tokens": 100,
            }
        )
    return answer


def test_traced_app_is_stored_exactly(
    mlflow_server: MlflowServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    name = unique("app")
    memory = InMemoryExporter()
    tracekit.configure(tracking_uri=proxy.url, experiment_name=name, exporter=memory)
    assert support_agent("Where is my order?") == "Your order A-17 has shipped."
    trace_id = tracekit.get_last_trace_id()
    flush()
    assert_not_spooled(tmp_path)
    (ours,) = memory.traces
    assert trace_id is not None
    assert ours["trace_id"] == trace_id

    # One lookup of the experiment (created), one OTLP batch, one question (is a trace in
    # another experiment?), one StartTraceV3 (for the metadata the spans cannot carry).
    assert proxy.requests == [
        ("GET", "/api/2.0/mlflow/experiments/get-by-name", "pass"),
        ("POST", "/api/2.0/mlflow/experiments/create", "pass"),
        ("POST", OTLP, "pass"),
        ("POST", BATCH_GET_INFOS, "pass"),
        ("POST", START_TRACE, "pass"),
    ]
    experiment_id = experiment_by_name(mlflow_server.url, name)["experiment_id"]

    trace = read_trace(mlflow_server.python, mlflow_server.url, "tr-" + trace_id)
    assert trace["trace_id"] == "tr-" + trace_id
    assert trace["experiment_id"] == experiment_id
    assert trace["state"] == "OK"

    # The span tree, ids included, exactly as recorded.
    ours_by_name = record_spans(ours)
    spans = by_name(trace)
    assert set(spans) == {"support_agent", "lookup_order", "chat gpt-4o-mini"}
    root_id = ours_by_name["support_agent"]["span_id"]
    assert [(s["name"], s["span_id"], s["parent_id"]) for s in trace["spans"]] == [
        (s["name"], s["span_id"], s["parent_id"]) for s in ours["spans"]
    ]
    assert spans["support_agent"]["parent_id"] is None
    assert spans["lookup_order"]["parent_id"] == root_id
    assert spans["chat gpt-4o-mini"]["parent_id"] == root_id
    assert {n: s["span_type"] for n, s in spans.items()} == {
        "support_agent": "AGENT",
        "lookup_order": "TOOL",
        "chat gpt-4o-mini": "CHAT_MODEL",
    }
    assert {n: s["status"] for n, s in spans.items()} == dict.fromkeys(spans, "OK")
    for span_name, span in spans.items():
        mine = ours_by_name[span_name]
        assert span["start_time_ns"] == mine["start_time_ns"], span_name
        assert span["end_time_ns"] == mine["end_time_ns"], span_name
        assert span["inputs"] == mine["inputs"], span_name
        assert span["outputs"] == mine["outputs"], span_name
        assert span["events"] == []

    # Inputs and outputs as the app passed them.
    assert spans["support_agent"]["inputs"] == {"question": "Where is my order?"}
    assert spans["support_agent"]["outputs"] == "Your order A-17 has shipped."
    assert spans["lookup_order"]["inputs"] == {"order_id": "A-17"}
    assert spans["lookup_order"]["outputs"] == {"order_id": "A-17", "status": "shipped", "items": 2}
    chat = spans["chat gpt-4o-mini"]
    assert chat["inputs"]["messages"] == [{"role": "user", "content": "Where is my order?"}]
    assert chat["outputs"] == {"role": "assistant", "content": "Your order A-17 has shipped."}

    # What MLflow's UI reads on the LLM span, beside the gen_ai.* conventions.
    attributes = chat["attributes"]
    assert attributes["mlflow.chat.tokenUsage"] == {
        "input_tokens": 120,
        "output_tokens": 30,
        "total_tokens": 150,
        "cache_read_input_tokens": 100,
    }
    assert attributes["mlflow.llm.model"] == "gpt-4o-mini-2024-07-18"
    assert attributes["mlflow.llm.provider"] == "openai"
    assert attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert attributes["gen_ai.usage.input_tokens"] == 120
    assert attributes["gen_ai.usage.output_tokens"] == 30
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 100
    assert "mlflow.chat.tokenUsage" not in spans["lookup_order"]["attributes"]
    assert "mlflow.llm.model" not in spans["lookup_order"]["attributes"]

    # Trace-level token usage, tags, metadata and previews.
    assert trace["token_usage"] == {
        "input_tokens": 120,
        "output_tokens": 30,
        "total_tokens": 150,
        "cache_read_input_tokens": 100,
    }
    assert trace["tags"]["env"] == "dev"
    assert trace["tags"]["release"] == "7"
    assert trace["tags"]["mlflow.traceName"] == "support_agent"
    metadata = trace["metadata"]
    assert metadata["mlflow.trace.session"] == "s-1"
    assert metadata["mlflow.trace.user"] == "u-1"
    assert metadata["session_id"] == "s-1"
    assert metadata["user_id"] == "u-1"
    assert metadata["ticket"] == "T-42"
    assert metadata["channel"] == "chat"
    assert json.loads(metadata["mlflow.trace.tokenUsage"]) == ours["token_usage"]
    assert json.loads(trace["request_preview"]) == {"question": "Where is my order?"}
    assert trace["response_preview"] == "Your order A-17 has shipped."

    # Timing: MLflow keeps milliseconds.
    assert trace["request_time"] == ours["start_time_ns"] // 1_000_000
    duration_ms = (ours["end_time_ns"] - ours["start_time_ns"]) / 1e6
    assert duration_ms >= 50
    assert abs(trace["execution_duration"] - duration_ms) <= 1


# -- 2. the experiment: by id, by name, from the environment ---------------------------


@tracekit.trace(span_type="CHAIN")
def double(x: int) -> int:
    return 2 * x


def test_experiment_by_id_and_the_default(
    mlflow_server: MlflowServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    experiment_id = create_experiment(mlflow_server.url, unique("by-id"))
    tracekit.configure(tracking_uri=proxy.url, experiment_id=experiment_id)
    assert double(21) == 42
    by_id = tracekit.get_last_trace_id()
    flush()
    # An id is used as given: no experiment lookup at all.
    assert proxy.count("/api/2.0/mlflow/experiments") == 0
    assert proxy.count(OTLP) == 1
    # One question: is the trace in another experiment (a tracing gateway stored spans of
    # it first)? No: the server built the trace info from the root span.
    paths = [path for _, path, _ in proxy.requests]
    assert (paths.count(BATCH_GET_INFOS), paths.count(START_TRACE)) == (1, 0)

    _state.reset()
    tracekit.configure(tracking_uri=proxy.url)  # neither: MLflow's "Default" experiment
    assert double(1) == 2
    default = tracekit.get_last_trace_id()
    flush()
    assert proxy.count("/api/2.0/mlflow/experiments") == 0
    assert_not_spooled(tmp_path)

    stored = read_trace(mlflow_server.python, mlflow_server.url, f"tr-{by_id}")
    assert stored["experiment_id"] == experiment_id
    assert stored["spans"][0]["outputs"] == 42  # a number stays a number
    assert stored["spans"][0]["inputs"] == {"x": 21}
    in_default = read_trace(mlflow_server.python, mlflow_server.url, f"tr-{default}")
    assert in_default["experiment_id"] == "0"


def test_experiment_by_name_is_created_once_and_reused(
    mlflow_server: MlflowServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    name = unique("by-name")
    tracekit.configure(tracking_uri=proxy.url, experiment_name=name)
    double(1)
    first = tracekit.get_last_trace_id()
    double(2)  # the same exporter: the id is resolved once
    flush()
    assert proxy.count("/api/2.0/mlflow/experiments/get-by-name") == 1
    assert proxy.count("/api/2.0/mlflow/experiments/create") == 1

    _state.reset()  # a new pipeline and exporter, as in another process
    tracekit.configure(tracking_uri=proxy.url, experiment_name=name)
    double(3)
    second = tracekit.get_last_trace_id()
    flush()
    assert proxy.count("/api/2.0/mlflow/experiments/get-by-name") == 2
    assert proxy.count("/api/2.0/mlflow/experiments/create") == 1  # found, not created again
    assert_not_spooled(tmp_path)

    experiment = experiment_by_name(mlflow_server.url, name)
    assert [e["experiment_id"] for e in experiments_named(mlflow_server.url, name)] == [
        experiment["experiment_id"]
    ]
    traces = read_traces(mlflow_server.python, mlflow_server.url, experiment["experiment_id"])
    assert len(traces) == 3
    ids = {t["trace_id"] for t in traces}
    assert {f"tr-{first}", f"tr-{second}"} <= ids
    assert sorted(t["spans"][0]["outputs"] for t in traces) == [2, 4, 6]


def test_concurrent_exporters_creating_one_name_agree(mlflow_server: MlflowServer) -> None:
    name = unique("race")
    exporters = [
        TrackingServerExporter(HttpClient(mlflow_server.url), experiment_name=name)
        for _ in range(6)
    ]
    barrier = threading.Barrier(len(exporters))
    found: list[str] = []
    errors: list[BaseException] = []

    def resolve(exporter: TrackingServerExporter) -> None:
        barrier.wait()
        try:
            found.append(exporter.experiment_id())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=resolve, args=(e,)) for e in exporters]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for e in exporters:
        e.shutdown()
    assert errors == []
    assert len(found) == len(exporters)
    assert len(set(found)) == 1
    assert [e["experiment_id"] for e in experiments_named(mlflow_server.url, name)] == found[:1]


def test_deleted_experiment_is_reported_not_used(mlflow_server: MlflowServer) -> None:
    name = unique("deleted")
    experiment_id = create_experiment(mlflow_server.url, name)
    status, _ = rest(
        mlflow_server.url,
        "POST",
        "/api/2.0/mlflow/experiments/delete",
        {"experiment_id": experiment_id},
    )
    assert status == 200
    exporter = TrackingServerExporter(HttpClient(mlflow_server.url), experiment_name=name)
    result = exporter.export([record(uuid.uuid4().hex)])
    exporter.shutdown()
    assert not result.ok
    assert not result.retryable
    assert "deleted" in result.message
    assert "TRACEKIT_EXPERIMENT_NAME" in result.message

    # An id that names no experiment: the server's own words, and no retrying.
    exporter = TrackingServerExporter(HttpClient(mlflow_server.url), experiment_id="987654321")
    result = exporter.export([record(uuid.uuid4().hex)])
    exporter.shutdown()
    assert (result.ok, result.retryable, result.status) == (False, False, 404)
    assert "No Experiment with id=987654321" in result.message


APP = textwrap.dedent(
    """
    import tracekit

    @tracekit.trace(span_type="AGENT")
    def app(n):
        tracekit.update_current_trace(tags={"run": "env"})
        return n + 1

    app(41)
    print(tracekit.get_last_trace_id())
    # No flush: the exit hook delivers what is queued.
    """
)


def run_app(tmp_path: Path, **env: str) -> str:
    """Run APP in a fresh interpreter whose environment holds only `env` (and PATH)."""
    clean = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "TRACEKIT_TESTING": "1"}
    done = run_python(APP, env={**clean, **env}, cwd=tmp_path)
    assert "tracekit:" not in done.stderr, done.stderr  # no warning: delivered, not spooled
    assert_not_spooled(tmp_path)
    return done.stdout.strip()


def test_experiment_from_the_environment(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    name = unique("env-name")
    first = run_app(
        tmp_path, TRACEKIT_TRACKING_URI=mlflow_server.url, TRACEKIT_EXPERIMENT_NAME=name
    )
    second = run_app(  # another process, the same name: the same experiment
        tmp_path, TRACEKIT_TRACKING_URI=mlflow_server.url, TRACEKIT_EXPERIMENT_NAME=name
    )
    experiment = experiment_by_name(mlflow_server.url, name)
    assert len(experiments_named(mlflow_server.url, name)) == 1
    traces = read_traces(mlflow_server.python, mlflow_server.url, experiment["experiment_id"])
    assert sorted(t["trace_id"] for t in traces) == sorted([f"tr-{first}", f"tr-{second}"])
    for trace in traces:
        assert trace["state"] == "OK"
        assert trace["tags"]["run"] == "env"
        (span,) = trace["spans"]
        assert (span["name"], span["span_type"], span["outputs"]) == ("app", "AGENT", 42)

    # MLflow's own variables, when tracekit's are not set.
    experiment_id = create_experiment(mlflow_server.url, unique("mlflow-env"))
    third = run_app(
        tmp_path, MLFLOW_TRACKING_URI=mlflow_server.url, MLFLOW_EXPERIMENT_ID=experiment_id
    )
    stored = read_trace(mlflow_server.python, mlflow_server.url, f"tr-{third}")
    assert stored["experiment_id"] == experiment_id
    assert stored["spans"][0]["inputs"] == {"n": 41}


# -- 3. errors -------------------------------------------------------------------------


@tracekit.trace(span_type="TOOL")
def failing_tool(order_id: str) -> None:
    raise ValueError(f"no order {order_id}")


@tracekit.trace(span_type="AGENT")
def failing_agent() -> None:
    try:
        failing_tool("Z-9")
    except ValueError as exc:
        raise RuntimeError("the agent gave up") from exc


def test_error_spans_keep_state_message_and_exception_event(
    mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    experiment_id = create_experiment(mlflow_server.url, unique("errors"))
    tracekit.configure(tracking_uri=mlflow_server.url, experiment_id=experiment_id)
    with pytest.raises(RuntimeError, match="the agent gave up"):
        failing_agent()
    trace_id = tracekit.get_last_trace_id()
    flush()
    assert_not_spooled(tmp_path)

    trace = read_trace(mlflow_server.python, mlflow_server.url, f"tr-{trace_id}")
    assert trace["state"] == "ERROR"
    spans = by_name(trace)
    expected = {
        "failing_agent": ("RuntimeError", "the agent gave up"),
        "failing_tool": ("ValueError", "no order Z-9"),
    }
    for span_name, (kind, message) in expected.items():
        span = spans[span_name]
        assert span["status"] == "ERROR", span_name
        assert span["status_message"] == f"{kind}: {message}"
        (event,) = span["events"]
        assert event["name"] == "exception"
        assert event["attributes"]["exception.type"] == kind
        assert event["attributes"]["exception.message"] == message
        assert f"{kind}: {message}" in event["attributes"]["exception.stacktrace"]
        assert span["start_time_ns"] <= event["timestamp_ns"] <= span["end_time_ns"]
        assert span["outputs"] is None  # nothing returned: absent, not the string "null"
    assert spans["failing_tool"]["parent_id"] == spans["failing_agent"]["span_id"]
    assert trace["response_preview"] in (None, "")


# -- 4. recorded provider traffic through the real SDKs --------------------------------


def _stored_llm_spans(
    mlflow_server: MlflowServer, experiment_id: str, memory: InMemoryExporter, count: int
) -> list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """(stored trace, its one span, our record) for each of `count` single-span traces."""
    ours = {r["trace_id"]: r for r in memory.traces}
    assert len(ours) == count
    traces = read_traces(mlflow_server.python, mlflow_server.url, experiment_id)
    assert len(traces) == count
    out = []
    for trace in sorted(traces, key=lambda t: ours[t["trace_id"][3:]]["start_time_ns"]):
        record = ours[trace["trace_id"].removeprefix("tr-")]
        (span,) = trace["spans"]
        (mine,) = record["spans"]
        assert span["inputs"] == mine["inputs"]
        assert span["outputs"] == mine["outputs"]
        assert span["span_type"] == mine["span_type"] == "CHAT_MODEL"
        assert span["status"] == "OK"
        out.append((trace, span, record))
    return out


def test_openai_cassettes_through_the_sdk(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    openai = pytest.importorskip("openai")
    import tracekit.openai
    from tracekit.integrations.openai import integration

    plain = load_or_skip("openai/chat_completions_nonstream_basic.yaml")
    stream = load_or_skip("openai/chat_completions_stream_include_usage.yaml")
    experiment_id = create_experiment(mlflow_server.url, unique("openai"))
    memory = InMemoryExporter()
    tracekit.configure(tracking_uri=mlflow_server.url, experiment_id=experiment_id, exporter=memory)
    tracekit.openai.autolog()
    try:
        for cassette in (plain, stream):
            with (
                replay_server(cassette) as server,
                openai.OpenAI(
                    api_key="sk-test", base_url=server.base_url + "/v1", max_retries=0
                ) as client,
            ):
                result = client.chat.completions.create(**cassette.request_json(0))
                if isinstance(result, openai.Stream):
                    text = "".join(c.choices[0].delta.content or "" for c in result if c.choices)
                else:
                    text = result.choices[0].message.content
                assert server.unmatched == []
            assert text in ("This is a test.", '"This is a test."')
    finally:
        integration.revert()
    flush()
    assert_not_spooled(tmp_path)

    (t1, s1, r1), (t2, s2, r2) = _stored_llm_spans(mlflow_server, experiment_id, memory, 2)
    # MLflow's keys (reasoning tokens are counted in output tokens, and are ours only).
    usage = {
        "input_tokens": 12,
        "output_tokens": 5,
        "total_tokens": 17,
        "cache_read_input_tokens": 0,
    }
    for trace, span, ours in ((t1, s1, r1), (t2, s2, r2)):
        assert span["attributes"]["mlflow.chat.tokenUsage"] == usage
        assert ours["token_usage"] == {**usage, "reasoning_tokens": 0}
        assert trace["token_usage"] == usage
        assert span["attributes"]["mlflow.llm.provider"] == "openai"
    assert s1["name"] == "chat gpt-4o-mini"
    assert s1["attributes"]["mlflow.llm.model"] == "gpt-4o-mini-2024-07-18"
    assert s1["outputs"]["choices"][0]["message"]["content"] == "This is a test."
    assert s1["inputs"] == plain.request_json(0)
    assert s2["name"] == "chat gpt-4"
    assert s2["attributes"]["mlflow.llm.model"] == "gpt-4-0613"
    assert s2["attributes"]["gen_ai.request.stream"] is True  # the conventions' name on the wire
    assert s2["inputs"] == stream.request_json(0)
    assert s2["outputs"]["choices"][0]["message"]["content"] == '"This is a test."'
    assert s2["outputs"]["choices"][0]["finish_reason"] == "stop"
    assert "sk-test" not in json.dumps([t1, t2])  # the SDK's key never reaches the record


def test_anthropic_cache_tokens_reach_mlflow(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    anthropic = pytest.importorskip("anthropic")
    import tracekit.anthropic
    from tracekit.integrations.anthropic import integration

    cassette: Cassette = load_or_skip(
        "anthropic/messages_prompt_caching_nonstream_write_then_read_gzip.yaml"
    )
    experiment_id = create_experiment(mlflow_server.url, unique("anthropic"))
    memory = InMemoryExporter()
    tracekit.configure(tracking_uri=mlflow_server.url, experiment_id=experiment_id, exporter=memory)
    tracekit.anthropic.autolog()
    try:
        with (
            replay_server(cassette) as server,
            anthropic.Anthropic(api_key="test", base_url=server.base_url, max_retries=0) as client,
        ):
            for i in range(len(cassette)):
                client.messages.create(**cassette.request_json(i))
            assert server.unmatched == []
            assert server.all_played()
    finally:
        integration.revert()
    flush()
    assert_not_spooled(tmp_path)

    (write_trace, write, _), (read_trace_, read, _) = _stored_llm_spans(
        mlflow_server, experiment_id, memory, 2
    )
    written = {
        "input_tokens": 1167,
        "output_tokens": 187,
        "total_tokens": 1354,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 1163,
    }
    cached = {
        "input_tokens": 1167,
        "output_tokens": 202,
        "total_tokens": 1369,
        "cache_read_input_tokens": 1163,
        "cache_creation_input_tokens": 0,
    }
    assert write["attributes"]["mlflow.chat.tokenUsage"] == written
    assert read["attributes"]["mlflow.chat.tokenUsage"] == cached
    assert write_trace["token_usage"] == written
    assert read_trace_["token_usage"] == cached
    for span, i in ((write, 0), (read, 1)):
        assert span["attributes"]["mlflow.llm.provider"] == "anthropic"
        recorded = cassette.response_json(i)
        assert span["attributes"]["mlflow.llm.model"] == recorded["model"]
        assert span["outputs"]["content"][0]["text"] == recorded["content"][0]["text"]


# -- 5. both encodings -----------------------------------------------------------------


def rich_record(trace_id: str) -> dict[str, Any]:
    """Values of every kind an exporter must map: unicode, numbers, nesting, big ints."""
    out = record(trace_id, n_spans=3, tags={"env": "ü-test"}, metadata={"session_id": "s-9"})
    root, llm, tool = out["spans"]
    root["inputs"] = {"text": "héllo ✓ 日本", "nested": {"a": [1, 2.5, None, True]}}
    root["outputs"] = ["x", {"y": 1}]
    llm.update(
        name="chat m-1",
        span_type="CHAT_MODEL",
        inputs={"messages": [{"role": "user", "content": "hi"}]},
        outputs={"content": "hey"},
        attributes={
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "m-1",
            "gen_ai.request.temperature": 0.25,
            "gen_ai.response.finish_reasons": ["stop", "length"],
            "huge": 2**70,
            "mixed": [1, "two", 3.0],
            "flag": False,
            "nothing": None,
        },
        token_usage={"input_tokens": 3, "output_tokens": 4, "total_tokens": 7},
    )
    tool.update(
        outputs=0.5,
        status={"code": "ERROR", "message": "KeyError: 'k'"},
        events=[
            {
                "name": "exception",
                "timestamp_ns": tool["end_time_ns"],
                "attributes": {"exception.type": "KeyError", "exception.message": "'k'"},
            }
        ],
    )
    out["token_usage"] = {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}
    return out


def normalized(trace: dict[str, Any], trace_id: str) -> dict[str, Any]:
    """A stored trace with what differs by trace id (and server-side bookkeeping) removed."""
    text = json.dumps(trace).replace(trace_id, "<id>")
    out = json.loads(text)
    out["tags"].pop("mlflow.artifactLocation", None)
    return out


def test_protobuf_and_json_store_the_same_trace(mlflow_server: MlflowServer) -> None:
    experiment_id = create_experiment(mlflow_server.url, unique("encodings"))
    ids = {True: uuid.uuid4().hex, False: uuid.uuid4().hex}
    for protobuf, trace_id in ids.items():
        exporter = TrackingServerExporter(
            HttpClient(mlflow_server.url), experiment_id=experiment_id, protobuf=protobuf
        )
        result = exporter.export([rich_record(trace_id)])
        exporter.shutdown()
        assert result.ok, result.message
    traces = {
        t["trace_id"]: t
        for t in read_traces(mlflow_server.python, mlflow_server.url, experiment_id)
    }
    as_protobuf = normalized(traces["tr-" + ids[True]], ids[True])
    as_json = normalized(traces["tr-" + ids[False]], ids[False])
    assert as_protobuf == as_json

    spans = by_name(as_protobuf)
    assert spans["root"]["inputs"] == {
        "text": "héllo ✓ 日本",
        "nested": {"a": [1, 2.5, None, True]},
    }
    assert spans["root"]["outputs"] == ["x", {"y": 1}]
    assert spans["step 3"]["outputs"] == 0.5
    assert spans["step 3"]["status"] == "ERROR"
    assert spans["step 3"]["status_message"] == "KeyError: 'k'"
    assert spans["step 3"]["events"][0]["attributes"]["exception.type"] == "KeyError"
    llm = spans["chat m-1"]
    assert llm["span_type"] == "CHAT_MODEL"
    assert llm["attributes"]["huge"] == str(2**70)  # beyond int64: kept as text
    assert llm["attributes"]["mixed"] == [1, "two", 3.0]
    assert llm["attributes"]["flag"] is False
    assert llm["attributes"]["gen_ai.request.temperature"] == 0.25
    assert llm["attributes"]["gen_ai.response.finish_reasons"] == ["stop", "length"]
    assert "nothing" not in llm["attributes"]
    assert llm["attributes"]["mlflow.llm.provider"] == "openai"
    assert as_protobuf["tags"]["env"] == "ü-test"
    assert as_protobuf["metadata"]["mlflow.trace.session"] == "s-9"
    assert as_protobuf["token_usage"] == {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}


# -- 6. credentials --------------------------------------------------------------------


class Recorder:
    """A reverse proxy on loopback that records each request's headers, then forwards it
    to the MLflow server, or answers `reject` (e.g. 401) without forwarding."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.reject: int | None = None
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _any(self) -> None:
                import http.client

                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                recorder.seen.append((self.command, self.path.split("?")[0], headers))
                if recorder.reject is not None:
                    payload = b'{"error_code": "UNAUTHENTICATED", "message": "bad credentials"}'
                    status, reply = recorder.reject, [("Content-Type", "application/json")]
                else:
                    host, port = recorder.upstream.removeprefix("http://").split(":")
                    conn = http.client.HTTPConnection(host, int(port), timeout=30)
                    sent = {
                        k: v
                        for k, v in self.headers.items()
                        if k.lower() not in ("host", "connection")
                    }
                    conn.request(self.command, self.path, body=body or None, headers=sent)
                    resp = conn.getresponse()
                    payload, status = resp.read(), resp.status
                    reply = [(k, v) for k, v in resp.getheaders() if k.lower() == "content-type"]
                    conn.close()
                head = [f"HTTP/1.1 {status} -", *(f"{k}: {v}" for k, v in reply)]
                head.append(f"Content-Length: {len(payload)}")
                # One write: headers and body apart meet Nagle and delayed ACKs (40 ms each).
                self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)

            def do_GET(self) -> None:
                self._any()

            def do_POST(self) -> None:
                self._any()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder(mlflow_server: MlflowServer) -> Iterator[Recorder]:
    r = Recorder(mlflow_server.url)
    yield r
    r.close()


def everything_written(root: Path) -> str:
    """Every file tracekit wrote under `root` (spool, store), as one text."""
    texts = [p.read_text(errors="replace") for p in root.rglob("*") if p.is_file()]
    return "\n".join([*texts, *(str(p) for p in root.rglob("*"))])


def test_bearer_token_is_sent_and_never_recorded(
    mlflow_server: MlflowServer,
    recorder: Recorder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = "tk-secret-" + uuid.uuid4().hex
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
    caplog.set_level(logging.DEBUG, logger="tracekit")
    name = unique("bearer")
    tracekit.configure(tracking_uri=recorder.url, experiment_name=name)
    double(5)
    trace_id = tracekit.get_last_trace_id()
    flush()
    assert_not_spooled(tmp_path)

    paths = [path for _, path, _ in recorder.seen]
    assert paths == [
        "/api/2.0/mlflow/experiments/get-by-name",
        "/api/2.0/mlflow/experiments/create",
        OTLP,
        BATCH_GET_INFOS,
    ]
    for _, path, headers in recorder.seen:
        assert headers["authorization"] == f"Bearer {token}", path
        assert headers["user-agent"].startswith("tracekit/")
    experiment_id = experiment_by_name(mlflow_server.url, name)["experiment_id"]
    otlp_headers = recorder.seen[2][2]
    assert otlp_headers["x-mlflow-experiment-id"] == experiment_id
    assert otlp_headers["content-type"] == "application/x-protobuf"

    stored = read_trace(mlflow_server.python, mlflow_server.url, f"tr-{trace_id}")
    assert stored["spans"][0]["outputs"] == 10
    assert token not in json.dumps(stored)

    # Refused credentials: the failure names the variables to check, never the token.
    recorder.reject = 401
    _state.reset()
    tracekit.configure(tracking_uri=recorder.url, experiment_name=name)
    double(6)
    flush()
    _state.reset()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "HTTP 401" in logged
    assert "MLFLOW_TRACKING_TOKEN" in logged
    assert token not in logged
    assert token not in everything_written(tmp_path)  # the spooled batch and its description


def test_basic_auth_from_variables_and_from_the_url(
    mlflow_server: MlflowServer, recorder: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    experiment_id = create_experiment(mlflow_server.url, unique("basic"))
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pä:ss")
    tracekit.configure(tracking_uri=recorder.url, experiment_id=experiment_id)
    double(7)
    flush()
    expected = "Basic " + base64.b64encode("alice:pä:ss".encode()).decode()
    # the OTLP request and BatchGetTraceInfos
    assert [h["authorization"] for _, _, h in recorder.seen] == [expected, expected]

    # user:password in the URL (as MLflow's client accepts): sent as basic auth, and kept
    # out of the destination's name, which log lines and the spool directory carry.
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    recorder.seen.clear()
    _state.reset()
    with_userinfo = recorder.url.replace("http://", "http://bob:s%40cret@")
    tracekit.configure(tracking_uri=with_userinfo, experiment_id=experiment_id)
    double(8)
    flush()
    expected = "Basic " + base64.b64encode(b"bob:s@cret").decode()
    assert [h["authorization"] for _, _, h in recorder.seen] == [expected, expected]
    exporter = _state.pipeline().exporter
    assert exporter.destination == recorder.url  # type: ignore[attr-defined]
    assert exporter.spool.destination["uri"] == recorder.url  # type: ignore[attr-defined]
    recorder.reject = 401  # the failure is logged and spooled under the destination's name
    double(9)
    flush()
    _state.reset()
    written = everything_written(tmp_path)
    assert "127.0.0.1" in written  # the spool exists and names the server...
    assert "s@cret" not in written  # ...but not the password
    assert "s%40cret" not in written
    assert "bob" not in written
    assert_traces = read_traces(mlflow_server.python, mlflow_server.url, experiment_id)
    assert sorted(t["spans"][0]["outputs"] for t in assert_traces) == [14, 16]


# -- 7. payloads too large or unprintable ----------------------------------------------


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("repr is broken")


@tracekit.trace(span_type="CHAIN")
def swallow(document: str, thing: Any) -> dict[str, Any]:
    return {"length": len(document), "thing": thing}


def test_large_and_unprintable_payloads(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    experiment_id = create_experiment(mlflow_server.url, unique("payloads"))
    tracekit.configure(tracking_uri=mlflow_server.url, experiment_id=experiment_id)
    document = "word " * 400_000  # 2 MB
    assert swallow(document, Unprintable())["length"] == 2_000_000
    trace_id = tracekit.get_last_trace_id()
    flush()
    assert_not_spooled(tmp_path)

    trace = read_trace(mlflow_server.python, mlflow_server.url, f"tr-{trace_id}")
    (span,) = trace["spans"]
    stored = span["inputs"]["document"]
    assert stored.startswith("word word ")
    assert len(stored) < 200_000  # truncated
    assert stored.endswith("]")
    assert "[tracekit: truncated" in stored
    assert "unserializable Unprintable" in span["inputs"]["thing"]
    assert span["outputs"]["length"] == 2_000_000
    assert "unserializable Unprintable" in span["outputs"]["thing"]
    assert len(trace["request_preview"]) <= 1000
    assert trace["state"] == "OK"


# -- 8. many traces, and the same batch twice ------------------------------------------


@tracekit.trace(span_type="CHAIN")
def pipeline_step(i: int) -> int:
    with tracekit.start_span("inner", span_type="TOOL") as span:
        span.set_outputs(i)
    return i


def test_many_traces_arrive_once_even_when_sent_twice(
    mlflow_server: MlflowServer, recorder: Recorder, tmp_path: Path
) -> None:
    def count(path: str) -> int:
        return sum(1 for _, p, _ in recorder.seen if p == path)

    experiment_id = create_experiment(mlflow_server.url, unique("many"))
    memory = InMemoryExporter()
    tracekit.configure(tracking_uri=recorder.url, experiment_id=experiment_id, exporter=memory)
    for i in range(300):
        pipeline_step(i)
    flush()
    assert_not_spooled(tmp_path)
    assert count(START_TRACE) == 0  # the root spans carry it all, in our experiment
    first = read_traces(mlflow_server.python, mlflow_server.url, experiment_id)
    assert len(first) == 300
    assert sorted(t["spans"][0]["outputs"] for t in first) == list(range(300))

    # The same 300 traces again, in one batch (a retry after a timeout that had succeeded;
    # a replayed spool), in requests of at most 100 spans, with StartTraceV3 for each.
    records = memory.traces
    assert len(records) == 300
    exporter = TrackingServerExporter(
        HttpClient(recorder.url),
        experiment_id=experiment_id,
        max_spans_per_request=100,
        trace_info="always",
    )
    before = count(OTLP)
    result = exporter.export(records)
    exporter.shutdown()
    assert result.ok, result.message
    assert count(OTLP) - before == 6  # 600 spans in requests of 100, traces whole
    assert count(START_TRACE) == 300
    again = read_traces(mlflow_server.python, mlflow_server.url, experiment_id)
    assert len(again) == 300
    assert sorted(t["trace_id"] for t in again) == sorted(t["trace_id"] for t in first)
    assert {len(t["spans"]) for t in again} == {2}
    assert sorted(t["spans"][0]["outputs"] for t in again) == list(range(300))
    assert {t["state"] for t in again} == {"OK"}


# -- pure functions ---------------------------------------------------------------------


def test_trace_info_of_a_fragment_is_none_and_previews_are_bounded() -> None:
    fragment = record("a" * 32)
    fragment["spans"] = fragment["spans"][1:]  # a forked child's part: no root
    assert trace_info(fragment, "1") is None

    whole = record("b" * 32, metadata={"session_id": 7, "user_id": "u"})
    whole["spans"][0]["inputs"] = {"text": "x" * 5000}
    info = trace_info(whole, "12")
    assert info is not None
    body = info["trace"]["trace_info"]
    assert body["trace_id"] == "tr-" + "b" * 32
    assert body["trace_location"]["mlflow_experiment"]["experiment_id"] == "12"
    assert len(body["request_preview"]) == 1000
    assert body["request_preview"].endswith("...")
    assert body["response_preview"] == "answer"
    assert body["request_time"] == "2026-09-21T14:13:20.123Z"
    assert body["execution_duration"] == "0.250s"  # whole ms, as the server counts them
    assert body["trace_metadata"]["mlflow.trace.session"] == "7"
    assert body["trace_metadata"]["mlflow.trace.user"] == "u"
    assert body["tags"]["mlflow.traceName"] == "root"


# -- trace info from the root span alone (trace_info="auto") ----------------------------


@tracekit.trace(span_type="AGENT")
def tagged_agent(question: str) -> str:
    tracekit.update_current_trace(tags={"env": "prod", "team": "support"}, session_id="s-42")
    tracekit.update_current_trace(user_id="u-7")
    with tracekit.start_span("chat tiny", span_type="CHAT_MODEL", inputs={"q": question}) as span:
        span.set_attribute("gen_ai.request.model", "tiny")
        span.set_attribute("gen_ai.provider.name", "openai")
        span.set_outputs("fine")
        span.set_token_usage({"input_tokens": 7, "output_tokens": 3, "total_tokens": 10})
    return "fine"


def test_trace_info_comes_from_the_root_span_without_start_trace(
    mlflow_server: MlflowServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    experiment_id = create_experiment(mlflow_server.url, unique("auto"))
    tracekit.configure(tracking_uri=proxy.url, experiment_id=experiment_id)
    assert tagged_agent("status?") == "fine"
    trace_id = tracekit.get_last_trace_id()
    flush()
    assert_not_spooled(tmp_path)
    # The spans, and one question (is any trace of the batch in another experiment?).
    assert proxy.requests == [("POST", OTLP, "pass"), ("POST", BATCH_GET_INFOS, "pass")]

    trace = read_trace(mlflow_server.python, mlflow_server.url, f"tr-{trace_id}")
    assert trace["state"] == "OK"
    assert trace["tags"]["mlflow.traceName"] == "tagged_agent"
    assert trace["tags"]["env"] == "prod"
    assert trace["tags"]["team"] == "support"
    assert trace["metadata"]["mlflow.trace.session"] == "s-42"
    assert trace["metadata"]["mlflow.trace.user"] == "u-7"
    assert trace["token_usage"] == {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}
    assert json.loads(trace["request_preview"]) == {"question": "status?"}
    assert [s["name"] for s in trace["spans"]] == ["tagged_agent", "chat tiny"]
    assert [s["span_type"] for s in trace["spans"]] == ["AGENT", "CHAT_MODEL"]
