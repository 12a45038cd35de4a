"""One trace across processes, as a real `mlflow server` stores it.

A client process (a `@tracekit.trace` function calling a service with
`tracekit.get_tracing_headers()`) and a service process (`tracekit.wsgi` around a
wsgiref app, or `tracekit.asgi` behind a small asyncio HTTP server or uvicorn) export to the same
MLflow experiment. Each process records its own part of the trace (the service's is a
fragment whose root has a remote parent); MLflow must show one trace with the service's
request span under the client's span, whichever part arrives first. Read back with
MLflow's own client (`tests/mlflow_read.py`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import IO, Any

import pytest
from tests.mlflow_server import MlflowServer, create_experiment, read_traces

# The first use of `mlflow_server` may build the MLflow virtualenv.
pytestmark = pytest.mark.timeout(600)

# Both processes export only when told to (`go` on stdin), so that the test decides
# which part of the trace reaches MLflow first.
EXPORT_WHEN_TOLD = """
sys.stdin.readline()
assert tracekit.flush(30), "not flushed"
print("flushed", flush=True)
"""

WSGI_SERVICE = """
import sys, tracekit, tracekit.wsgi
from wsgiref.simple_server import make_server, WSGIRequestHandler

@tracekit.trace(span_type="LLM")
def answer(question):
    tracekit.get_current_span().set_token_usage(USAGE)
    tracekit.update_current_trace(tags={"served_by": "service"})
    return "hi " + question

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [answer(environ["QUERY_STRING"]).encode()]

class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass

server = make_server("127.0.0.1", 0, tracekit.wsgi.TracekitMiddleware(app), handler_class=Quiet)
print(server.server_port, flush=True)
server.handle_request()
server.server_close()
"""

# A minimal HTTP/1.1-over-asyncio ASGI server: one request, then it stops.
ASGI_SERVICE = """
import asyncio, sys, tracekit, tracekit.asgi

@tracekit.trace(span_type="LLM")
async def answer(question):
    tracekit.get_current_span().set_token_usage(USAGE)
    tracekit.update_current_trace(tags={"served_by": "service"})
    return "hi " + question

async def app(scope, receive, send):
    await receive()
    body = (await answer(scope["query_string"].decode())).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})

async def handle(reader, writer, done):
    head = (await reader.readuntil(b"\\r\\n\\r\\n")).decode("latin-1").split("\\r\\n")
    method, target, _ = head[0].split(" ")
    path, _, query = target.partition("?")
    headers = []
    for line in head[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower().encode(), value.strip().encode()))
    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}
    async def send(message):
        if message["type"] == "http.response.start":
            writer.write(b"HTTP/1.1 %d OK\\r\\n" % message["status"])
            for k, v in message["headers"]:
                writer.write(k + b": " + v + b"\\r\\n")
            writer.write(b"connection: close\\r\\n\\r\\n")
        else:
            writer.write(message.get("body", b""))
        await writer.drain()
    scope = {"type": "http", "method": method, "path": path,
             "query_string": query.encode(), "headers": headers}
    await tracekit.asgi.TracekitMiddleware(app)(scope, receive, send)
    writer.close()
    done.set()

async def main():
    done = asyncio.Event()
    server = await asyncio.start_server(lambda r, w: handle(r, w, done), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await done.wait()
    server.close()

asyncio.run(main())
"""

# A real ASGI server (uvicorn, when installed), lifespan included (passed through).
UVICORN_SERVICE = """
import socket, sys, tracekit, tracekit.asgi, uvicorn

@tracekit.trace(span_type="LLM")
async def answer(question):
    tracekit.get_current_span().set_token_usage(USAGE)
    tracekit.update_current_trace(tags={"served_by": "service"})
    return "hi " + question

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].rpartition(".")[2]
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    await receive()
    body = (await answer(scope["query_string"].decode())).encode()
    headers = [(b"content-type", b"text/plain")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    server.should_exit = True  # one request, then a graceful shutdown

sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen()
config = uvicorn.Config(
    tracekit.asgi.TracekitMiddleware(app), lifespan="on", log_level="warning", access_log=False
)
server = uvicorn.Server(config)
print(sock.getsockname()[1], flush=True)
server.run(sockets=[sock])
"""

CLIENT = """
import sys, urllib.request, tracekit

@tracekit.trace(span_type="AGENT")
def ask(url):
    span = tracekit.get_current_span()
    tracekit.update_current_trace(tags={"asked_by": "client"})
    print(span.trace_id, span.span_id, flush=True)
    with tracekit.start_span("plan", span_type="LLM") as plan:
        plan.set_token_usage({"input_tokens": 10, "output_tokens": 1, "total_tokens": 11})
    request = urllib.request.Request(url, headers=tracekit.get_tracing_headers())
    return urllib.request.urlopen(request, timeout=30).read().decode()

print(ask(sys.argv[1]), flush=True)
"""


USAGE = {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}


def run(code: str, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    code = f"USAGE = {USAGE!r}\n" + textwrap.dedent(code) + EXPORT_WHEN_TOLD
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def line(stream: IO[str] | None) -> str:
    assert stream is not None
    return stream.readline().strip()


def export(process: subprocess.Popen[str]) -> None:
    """Tell a process to export its part of the trace, and wait until it has."""
    assert process.stdin is not None
    process.stdin.write("go\n")
    process.stdin.flush()
    assert line(process.stdout) == "flushed", process.communicate(timeout=30)[1]
    assert process.wait(timeout=30) == 0, process.communicate(timeout=30)[1]


def environment(mlflow_server: MlflowServer, experiment_id: str, service: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACEKIT_", "MLFLOW_"))}
    env.update(
        TRACEKIT_TESTING="1",
        TRACEKIT_TRACKING_URI=mlflow_server.url,
        TRACEKIT_EXPERIMENT_ID=experiment_id,
        TRACEKIT_SERVICE_NAME=service,
        TRACEKIT_EXPORT_INTERVAL="3600",  # only the explicit flush exports
    )
    return env


@pytest.mark.parametrize("first", ["service", "client"])
@pytest.mark.parametrize(
    "service_code",
    [WSGI_SERVICE, ASGI_SERVICE, UVICORN_SERVICE],
    ids=["wsgi", "asgi", "uvicorn"],
)
def test_one_mlflow_trace_across_processes(
    mlflow_server: MlflowServer, tmp_path: Path, service_code: str, first: str
) -> None:
    if service_code is UVICORN_SERVICE:
        pytest.importorskip("uvicorn", reason="uvicorn not installed")
    experiment_id = create_experiment(mlflow_server.url, f"distributed-{uuid.uuid4().hex[:10]}")
    service = run(service_code, environment(mlflow_server, experiment_id, "service"))
    client: subprocess.Popen[str] | None = None
    try:
        port = int(line(service.stdout) or 0)
        assert port, service.communicate(timeout=30)[1]
        client = run(
            CLIENT,
            environment(mlflow_server, experiment_id, "client"),
            f"http://127.0.0.1:{port}/ask?why",
        )
        trace_id, client_span_id = line(client.stdout).split()
        assert line(client.stdout) == "hi why", client.communicate(timeout=30)[1]
        for process in (service, client) if first == "service" else (client, service):
            export(process)
    finally:
        for process in (service, client):
            if process is not None and process.poll() is None:
                process.kill()
                process.communicate()

    traces = read_traces(mlflow_server.python, mlflow_server.url, experiment_id)
    assert [t["trace_id"] for t in traces] == [f"tr-{trace_id}"]
    (trace,) = traces
    spans: dict[str, dict[str, Any]] = {s["name"]: s for s in trace["spans"]}
    assert sorted(spans) == ["GET /ask", "answer", "ask", "plan"]
    ask, request, answer = spans["ask"], spans["GET /ask"], spans["answer"]
    assert (ask["span_id"], ask["parent_id"], ask["span_type"]) == (client_span_id, None, "AGENT")
    assert request["parent_id"] == ask["span_id"]  # across the process boundary
    assert (request["span_type"], request["status"]) == ("CHAIN", "OK")
    assert request["attributes"]["http.response.status_code"] == 200
    assert answer["parent_id"] == request["span_id"]
    assert (answer["inputs"], answer["outputs"]) == ({"question": "why"}, "hi why")
    # The trace-level record is the client's (the process that holds the root),
    # whichever part arrived first.
    assert trace["state"] == "OK"
    assert trace["tags"]["mlflow.traceName"] == "ask"
    # Trace tags from both processes: the client's on its root span, the service's
    # through SetTraceTag (its part has no root span for MLflow to read them from).
    assert trace["tags"]["asked_by"] == "client"
    assert trace["tags"]["served_by"] == "service"
    assert trace["request_time"] == ask["start_time_ns"] // 1_000_000
    end_ms = max(s["end_time_ns"] for s in trace["spans"]) // 1_000_000
    assert trace["request_time"] + trace["execution_duration"] == end_ms
    assert trace["request_preview"] is not None
    assert "why" in trace["request_preview"]
    assert "hi why" in (trace["response_preview"] or "")
    # Token usage summed over both processes' spans.
    assert trace["token_usage"] == {"input_tokens": 13, "output_tokens": 3, "total_tokens": 16}
    # Not asserted: MLflow copies each batch's resource attributes into the trace's tags,
    # so its `service.name` tag names whichever process exported last.
