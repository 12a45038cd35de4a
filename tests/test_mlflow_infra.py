"""Smoke tests of the real-MLflow test infrastructure: server, fault proxy and trace reader."""

from __future__ import annotations

import http.client
import json
import socket
import time
import uuid
from pathlib import Path

import pytest
from tests.fault_proxy import FaultProxy
from tests.mlflow_server import (
    MlflowReadError,
    MlflowServer,
    create_experiment,
    read_trace,
    read_traces,
)

# The first run may build the MLflow virtualenv (~35 s) inside the first test's setup.
pytestmark = pytest.mark.timeout(600)


def _request(
    url: str, method: str, path: str, body: object = None, timeout: float = 10.0
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request with http.client; returns status, headers and body."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        headers = {} if body is None else {"Content-Type": "application/json"}
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _get_experiment_by_name(url: str, name: str) -> tuple[int, bytes]:
    status, _, body = _request(
        url, "GET", f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={name}"
    )
    return status, body


def test_create_experiment_through_proxy(proxy: FaultProxy, mlflow_server: MlflowServer) -> None:
    name = _unique("via-proxy")
    experiment_id = create_experiment(proxy.url, name)
    assert experiment_id.isdigit()
    assert proxy.requests == [("POST", "/api/2.0/mlflow/experiments/create", "pass")]
    assert proxy.count("/api/2.0/mlflow/experiments") == 1
    status, body = _get_experiment_by_name(mlflow_server.url, name)
    assert status == 200
    assert json.loads(body)["experiment"]["experiment_id"] == experiment_id


@pytest.mark.parametrize("mode", ["503", "429"])
def test_error_modes_answer_with_retry_after(proxy: FaultProxy, mode: str) -> None:
    proxy.mode = mode
    proxy.retry_after = "7"
    status, headers, body = _request(
        proxy.url, "POST", "/api/2.0/mlflow/experiments/create", {"name": _unique("never")}
    )
    assert status == int(mode)
    assert headers["Retry-After"] == "7"
    assert json.loads(body)["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert proxy.requests == [("POST", "/api/2.0/mlflow/experiments/create", mode)]


def test_refuse_then_pass_on_the_same_port(proxy: FaultProxy) -> None:
    url, port = proxy.url, proxy.port
    assert _request(url, "GET", "/health")[0] == 200
    proxy.mode = "refuse"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    proxy.mode = "pass"
    assert (proxy.url, proxy.port) == (url, port)
    assert create_experiment(proxy.url, _unique("after-refuse")).isdigit()


def test_stall_times_out_then_pass_lets_requests_through(proxy: FaultProxy) -> None:
    proxy.mode = "stall"
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        _request(proxy.url, "GET", "/health", timeout=0.5)
    assert time.monotonic() - started < 5
    proxy.mode = "pass"
    assert _request(proxy.url, "GET", "/health")[0] == 200
    assert [mode for _, _, mode in proxy.requests] == ["stall", "pass"]


def test_pass_then_stall_stores_but_never_answers(
    proxy: FaultProxy, mlflow_server: MlflowServer
) -> None:
    proxy.mode = "pass_then_stall"
    name = _unique("stored-unanswered")
    with pytest.raises(TimeoutError):
        _request(proxy.url, "POST", "/api/2.0/mlflow/experiments/create", {"name": name}, 0.5)
    deadline = time.monotonic() + 5
    while _get_experiment_by_name(mlflow_server.url, name)[0] != 200:
        assert time.monotonic() < deadline, "the stalled request never reached the server"
        time.sleep(0.05)


def test_stop_releases_a_stalled_request(mlflow_server: MlflowServer) -> None:
    with FaultProxy(mlflow_server.url, mode="stall") as p:
        conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=5)
        conn.request("GET", "/health")
        deadline = time.monotonic() + 5
        while p.count() == 0:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    started = time.monotonic()
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        conn.getresponse()
    assert time.monotonic() - started < 2
    conn.close()


def test_read_traces_of_an_empty_experiment(mlflow_server: MlflowServer) -> None:
    experiment_id = create_experiment(mlflow_server.url, _unique("empty"))
    assert read_traces(mlflow_server.python, mlflow_server.url, experiment_id) == []


def test_read_an_otlp_trace(mlflow_server: MlflowServer) -> None:
    experiment_id = create_experiment(mlflow_server.url, _unique("otlp"))
    trace_hex, span_hex = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    start = time.time_ns()
    payload = {
        "resourceSpans": [
            {
                "resource": {"attributes": []},
                "scopeSpans": [
                    {
                        "scope": {"name": "tracekit-smoke"},
                        "spans": [
                            {
                                "traceId": trace_hex,
                                "spanId": span_hex,
                                "name": "root",
                                "kind": 1,
                                "startTimeUnixNano": str(start),
                                "endTimeUnixNano": str(start + 2_000_000),
                                "attributes": [
                                    {"key": "mlflow.spanType", "value": {"stringValue": '"CHAIN"'}}
                                ],
                                "status": {"code": 1},
                            }
                        ],
                    }
                ],
            }
        ]
    }
    host_port = mlflow_server.url.removeprefix("http://")
    conn = http.client.HTTPConnection(host_port, timeout=10)
    conn.request(
        "POST",
        "/v1/traces",
        body=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "x-mlflow-experiment-id": experiment_id},
    )
    assert conn.getresponse().status == 200
    conn.close()

    trace = read_trace(mlflow_server.python, mlflow_server.url, f"tr-{trace_hex}")
    assert trace["trace_id"] == f"tr-{trace_hex}"
    assert trace["experiment_id"] == experiment_id
    assert trace["state"] == "OK"
    [span] = trace["spans"]
    assert span["span_id"] == span_hex
    assert span["parent_id"] is None
    assert (span["name"], span["span_type"], span["status"]) == ("root", "CHAIN", "OK")
    assert span["end_time_ns"] - span["start_time_ns"] == 2_000_000
    [listed] = read_traces(mlflow_server.python, mlflow_server.url, experiment_id)
    assert listed["trace_id"] == f"tr-{trace_hex}"
    assert listed["spans"] == trace["spans"]


def test_server_attributes(mlflow_server: MlflowServer) -> None:
    assert mlflow_server.url == f"http://127.0.0.1:{mlflow_server.port}"
    assert isinstance(mlflow_server.log_path, Path)
    assert "Uvicorn running" in mlflow_server.log_path.read_text()


def test_read_a_missing_trace(mlflow_server: MlflowServer) -> None:
    with pytest.raises(MlflowReadError) as info:
        read_trace(mlflow_server.python, mlflow_server.url, f"tr-{uuid.uuid4().hex}")
    assert info.value.error_code == "RESOURCE_DOES_NOT_EXIST"
