"""The OTLP exporter: what an OpenTelemetry backend receives, and MLflow's `/v1/traces`.

A recording OTLP/HTTP receiver on loopback (written here, standard library only) stores
each request; bodies are decoded with opentelemetry-proto (or as OTLP/JSON) and the
assertions are on the decoded request: where it went, its headers, the resource, span
kinds, parents, status, `gen_ai.*` and content attributes, events. The same exporter
pointed at a real `mlflow server` (with its experiment header) must store the trace.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import logging
import os
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tests.mlflow_server import MlflowServer, create_experiment, free_port, read_traces

import tracekit
from tracekit import _state
from tracekit._config import from_env
from tracekit.exporters import _otlp
from tracekit.exporters._http import retry_after
from tracekit.exporters._settings import otlp_settings, tracking_settings
from tracekit.exporters.memory import InMemoryExporter
from tracekit.exporters.otlp import OtlpExporter, settings_for

trace_service_pb2 = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")

pytestmark = [
    pytest.mark.timeout(600),  # the MLflow test may build the MLflow virtualenv
    pytest.mark.usefixtures("fresh_tracing"),
]

KIND_INTERNAL, KIND_CLIENT = 1, 3


# -- a recording OTLP/HTTP receiver -----------------------------------------------------


class Received:
    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body

    @property
    def payload(self) -> bytes:
        if self.headers.get("content-encoding") == "gzip":
            return gzip.decompress(self.body)
        return self.body

    def decoded(self) -> dict[str, Any]:
        """The request as plain data, the same whichever encoding it came in."""
        if self.headers["content-type"] == "application/x-protobuf":
            message = trace_service_pb2.ExportTraceServiceRequest()
            message.ParseFromString(self.payload)
            return from_protobuf(message)
        assert self.headers["content-type"] == "application/json"
        return from_json(json.loads(self.payload))


class Receiver:
    """Answers `status` (after `delay` seconds) to every request and keeps them all;
    over TLS when given a server `context`. `answer(request) -> (status, body)`, when
    given, decides each answer instead of `status` and `reply_body`."""

    def __init__(
        self,
        context: ssl.SSLContext | None = None,
        *,
        answer: Callable[[Received], tuple[int, bytes]] | None = None,
    ) -> None:
        self.status = 200
        self.delay = 0.0
        self.reply_headers: dict[str, str] = {}
        self.reply_body = b""
        self.hang_up = False  # close each connection after answering, unannounced
        self.received: list[Received] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                request = Received("POST", self.path, headers, body)
                receiver.received.append(request)
                if receiver.delay:
                    time.sleep(receiver.delay)
                status, reply = receiver.status, receiver.reply_body
                if answer is not None:
                    status, reply = answer(request)
                head = [f"HTTP/1.1 {status} -"]
                head += [f"{k}: {v}" for k, v in receiver.reply_headers.items()]
                head.append(f"Content-Length: {len(reply)}")
                # One write: headers and body apart meet Nagle and delayed ACKs (40 ms).
                # OSError: the client gave up (the timeout test).
                with contextlib.suppress(OSError):
                    self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + reply)
                self.close_connection = receiver.hang_up

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self) -> tuple[socket.socket, Any]:
                sock, address = super().get_request()
                if context is not None:
                    sock = context.wrap_socket(sock, server_side=True)
                return sock, address

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        scheme = "https" if context is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def only(self) -> Received:
        assert len(self.received) == 1, [r.path for r in self.received]
        return self.received[0]

    def trace_ids(self) -> list[str]:
        """The trace ids of every span received."""
        return [s["trace_id"] for r in self.received for s in all_spans(r.decoded())]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


# -- decoding both encodings to the same plain shape -------------------------------------


def _pb_value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_pb_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _pb_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "int_value":
        return int(value.int_value)
    return getattr(value, kind) if kind else None


def _pb_attributes(attributes: Any) -> dict[str, Any]:
    return {kv.key: _pb_value(kv.value) for kv in attributes}


def from_protobuf(message: Any) -> dict[str, Any]:
    resources = []
    for rs in message.resource_spans:
        scopes = []
        for ss in rs.scope_spans:
            spans = [
                {
                    "trace_id": s.trace_id.hex(),
                    "span_id": s.span_id.hex(),
                    "parent_id": s.parent_span_id.hex() or None,
                    "name": s.name,
                    "kind": int(s.kind),
                    "start": int(s.start_time_unix_nano),
                    "end": int(s.end_time_unix_nano),
                    "status": (int(s.status.code), s.status.message),
                    "attributes": _pb_attributes(s.attributes),
                    "events": [
                        (e.name, int(e.time_unix_nano), _pb_attributes(e.attributes))
                        for e in s.events
                    ],
                }
                for s in ss.spans
            ]
            scopes.append({"scope": ss.scope.name, "spans": spans})
        resources.append({"resource": _pb_attributes(rs.resource.attributes), "scopes": scopes})
    return {"resource_spans": resources}


def _json_value(value: dict[str, Any]) -> Any:
    ((kind, inner),) = value.items()
    if kind == "arrayValue":
        return [_json_value(v) for v in inner.get("values", [])]
    if kind == "kvlistValue":
        return {kv["key"]: _json_value(kv["value"]) for kv in inner.get("values", [])}
    if kind == "intValue":
        assert isinstance(inner, str)  # OTLP/JSON: 64-bit integers are strings
        return int(inner)
    return inner


def _json_attributes(attributes: list[dict[str, Any]]) -> dict[str, Any]:
    return {kv["key"]: _json_value(kv["value"]) for kv in attributes}


def from_json(request: dict[str, Any]) -> dict[str, Any]:
    resources = []
    for rs in request["resourceSpans"]:
        scopes = []
        for ss in rs["scopeSpans"]:
            spans = [
                {
                    "trace_id": s["traceId"],
                    "span_id": s["spanId"],
                    "parent_id": s.get("parentSpanId") or None,
                    "name": s["name"],
                    "kind": s["kind"],
                    "start": int(s["startTimeUnixNano"]),
                    "end": int(s["endTimeUnixNano"]),
                    "status": (s["status"].get("code", 0), s["status"].get("message", "")),
                    "attributes": _json_attributes(s.get("attributes", [])),
                    "events": [
                        (e["name"], int(e["timeUnixNano"]), _json_attributes(e["attributes"]))
                        for e in s.get("events", [])
                    ],
                }
                for s in ss["spans"]
            ]
            scopes.append({"scope": ss["scope"]["name"], "spans": spans})
        resources.append(
            {"resource": _json_attributes(rs["resource"]["attributes"]), "scopes": scopes}
        )
    return {"resource_spans": resources}


def all_spans(decoded: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for rs in decoded["resource_spans"] for sc in rs["scopes"] for s in sc["spans"]]


# -- a traced app ------------------------------------------------------------------------


@tracekit.trace(span_type="RETRIEVER")
def search(query: str) -> list[str]:
    return [f"doc about {query}"]


@tracekit.trace(span_type="TOOL")
def broken_tool() -> None:
    raise KeyError("missing")


@tracekit.trace(span_type="AGENT")
def agent(question: str) -> str:
    docs = search(question)
    with tracekit.start_span("embeddings text-embedding-3-small", span_type="EMBEDDING") as span:
        span.set_attributes({"gen_ai.operation.name": "embeddings"})
        span.set_token_usage({"input_tokens": 8, "output_tokens": 0, "total_tokens": 8})
    with tracekit.start_span("text_completion davinci", span_type="LLM", inputs="Say hi") as span:
        span.set_outputs("hi")
    with tracekit.start_span(
        "chat gpt-4o-mini",
        span_type="CHAT_MODEL",
        inputs={"messages": [{"role": "user", "content": question}], "docs": docs},
        attributes={
            "gen_ai.provider.name": "openai",
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
            "gen_ai.response.finish_reasons": ["stop"],
            "gen_ai.request.temperature": 0.5,
        },
    ) as span:
        span.set_outputs({"role": "assistant", "content": "42"})
        span.set_token_usage(
            {
                "input_tokens": 20,
                "output_tokens": 6,
                "total_tokens": 26,
                "cache_read_input_tokens": 4,
                "reasoning_tokens": 2,
            }
        )
    with contextlib.suppress(KeyError):
        broken_tool()
    return "42"


def run_agent(uri: str) -> dict[str, Any]:
    """Run the app exporting to `uri` (and to memory); return our record of it."""
    memory = InMemoryExporter()
    tracekit.configure(tracking_uri=uri, exporter=memory)
    assert agent("life") == "42"
    assert tracekit.flush(30)
    (record,) = memory.traces
    return record


def assert_not_spooled(root: Path) -> None:
    spool = root / ".tracekit" / "spool"
    pending = sorted(p.name for p in spool.rglob("*.jsonl*")) if spool.exists() else []
    assert pending == [], f"batches were spooled instead of delivered: {pending}"


# -- 10. against the recording receiver --------------------------------------------------


def test_what_the_receiver_gets(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "api-key=k-123,x-team=search%20ui")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "support-bot")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod,team=a%2Cb")
    record = run_agent(f"otlp+{receiver.url}")
    assert_not_spooled(tmp_path)

    request = receiver.only()
    assert (request.method, request.path) == ("POST", "/v1/traces")
    assert request.headers["content-type"] == "application/x-protobuf"
    assert request.headers["api-key"] == "k-123"
    assert request.headers["x-team"] == "search ui"
    assert request.headers["user-agent"].startswith("tracekit/")
    assert "content-encoding" not in request.headers
    assert "x-mlflow-experiment-id" not in request.headers

    decoded = request.decoded()
    (resource_spans,) = decoded["resource_spans"]
    resource = resource_spans["resource"]
    assert resource["service.name"] == "support-bot"
    assert resource["deployment.environment"] == "prod"
    assert resource["team"] == "a,b"
    assert resource["telemetry.sdk.name"] == "tracekit"
    assert resource["telemetry.sdk.language"] == "python"
    assert resource["telemetry.sdk.version"] == tracekit.__version__
    (scope,) = resource_spans["scopes"]
    assert scope["scope"] == "tracekit"

    # Tool and agent spans are named as the GenAI conventions say; the rest keep theirs.
    wire_names = {"agent": "invoke_agent agent", "broken_tool": "execute_tool broken_tool"}
    spans = {s["name"]: s for s in scope["spans"]}
    assert set(spans) >= set(wire_names.values())
    for ours_name, wire_name in wire_names.items():
        spans[ours_name] = spans.pop(wire_name)
    ours = {s["name"]: s for s in record["spans"]}
    assert set(spans) == set(ours)
    assert spans["agent"]["attributes"]["gen_ai.operation.name"] == "invoke_agent"
    assert spans["agent"]["attributes"]["gen_ai.agent.name"] == "agent"
    assert spans["broken_tool"]["attributes"]["gen_ai.operation.name"] == "execute_tool"
    assert spans["broken_tool"]["attributes"]["gen_ai.tool.name"] == "broken_tool"
    assert spans["broken_tool"]["attributes"]["tool.name"] == "broken_tool"
    root_id = ours["agent"]["span_id"]
    for name, span in spans.items():
        mine = ours[name]
        assert span["trace_id"] == record["trace_id"]
        assert span["span_id"] == mine["span_id"]
        assert span["parent_id"] == mine["parent_id"]
        assert (span["start"], span["end"]) == (mine["start_time_ns"], mine["end_time_ns"])
        assert span["attributes"]["tracekit.span_type"] == mine["span_type"]
        assert not any(k.startswith("mlflow.") for k in span["attributes"]), name
    assert spans["agent"]["parent_id"] is None
    assert {n: s["parent_id"] for n, s in spans.items() if n != "agent"} == dict.fromkeys(
        set(spans) - {"agent"}, root_id
    )
    assert {n: s["kind"] for n, s in spans.items()} == {
        "agent": KIND_INTERNAL,
        "search": KIND_INTERNAL,
        "broken_tool": KIND_INTERNAL,
        "embeddings text-embedding-3-small": KIND_CLIENT,
        "text_completion davinci": KIND_CLIENT,
        "chat gpt-4o-mini": KIND_CLIENT,
    }
    assert {n: s["attributes"]["openinference.span.kind"] for n, s in spans.items()} == {
        "agent": "AGENT",
        "search": "RETRIEVER",
        "broken_tool": "TOOL",
        "embeddings text-embedding-3-small": "EMBEDDING",
        "text_completion davinci": "LLM",
        "chat gpt-4o-mini": "LLM",
    }

    # Status: OK, and ERROR with its message and exception event.
    assert {n: s["status"][0] for n, s in spans.items()} == {
        **dict.fromkeys(spans, 1),
        "broken_tool": 2,
    }
    assert spans["broken_tool"]["status"][1] == "KeyError: 'missing'"
    ((event_name, event_time, event),) = spans["broken_tool"]["events"]
    assert event_name == "exception"
    assert event["exception.type"] == "KeyError"
    assert event["exception.message"] == "'missing'"
    assert "KeyError: 'missing'" in event["exception.stacktrace"]
    assert spans["broken_tool"]["start"] <= event_time <= spans["broken_tool"]["end"]
    assert all(s["events"] == [] for n, s in spans.items() if n != "broken_tool")

    # gen_ai.* as recorded, gen_ai.usage.* from the token usage (native integers).
    chat = spans["chat gpt-4o-mini"]["attributes"]
    assert chat["gen_ai.provider.name"] == "openai"
    assert chat["gen_ai.operation.name"] == "chat"
    assert chat["gen_ai.request.model"] == "gpt-4o-mini"
    assert chat["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert chat["gen_ai.response.finish_reasons"] == ["stop"]
    assert chat["gen_ai.request.temperature"] == 0.5
    assert chat["gen_ai.usage.input_tokens"] == 20
    assert chat["gen_ai.usage.output_tokens"] == 6
    assert chat["gen_ai.usage.cache_read.input_tokens"] == 4
    assert chat["gen_ai.usage.reasoning.output_tokens"] == 2
    embedding = spans["embeddings text-embedding-3-small"]["attributes"]
    assert embedding["gen_ai.usage.input_tokens"] == 8
    assert embedding["gen_ai.usage.output_tokens"] == 0
    assert "gen_ai.usage.input_tokens" not in spans["search"]["attributes"]

    # Content as OpenInference readers (Phoenix, Langfuse) show it.
    # A chat span: the question as text, the messages as OpenInference's; an output
    # the chat mapper does not read (a bare message, no provider's shape) as JSON.
    assert (chat["input.value"], chat["input.mime_type"]) == ("life", "text/plain")
    assert chat["llm.input_messages.0.message.content"] == "life"
    assert json.loads(chat["output.value"]) == {"role": "assistant", "content": "42"}
    assert chat["output.mime_type"] == "application/json"
    assert json.loads(spans["agent"]["attributes"]["input.value"]) == {"question": "life"}
    # A string is shown as the text it is, not as a JSON string.
    assert spans["agent"]["attributes"]["output.value"] == "42"
    assert spans["agent"]["attributes"]["output.mime_type"] == "text/plain"
    assert json.loads(spans["search"]["attributes"]["output.value"]) == ["doc about life"]
    llm = spans["text_completion davinci"]["attributes"]
    assert (llm["input.value"], llm["input.mime_type"]) == ("Say hi", "text/plain")
    assert "output.value" not in spans["broken_tool"]["attributes"]  # no outputs: absent
    assert "input.value" not in spans["embeddings text-embedding-3-small"]["attributes"]


@pytest.mark.parametrize(
    ("uri", "env", "path"),
    [
        ("otlp", {"OTEL_EXPORTER_OTLP_ENDPOINT": "{url}"}, "/v1/traces"),
        ("otlp", {"OTEL_EXPORTER_OTLP_ENDPOINT": "{url}/base/"}, "/base/v1/traces"),
        (  # the signal-specific endpoint wins, used as it is
            "otlp",
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:{dead}",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "{url}/collector/spans?tenant=a",
            },
            "/collector/spans?tenant=a",
        ),
        ("otlp", {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "{url}"}, "/"),  # no path: the root
        ("otlp+{url}/custom/path", {}, "/custom/path"),
        ("otlp+{url}", {}, "/v1/traces"),
        ("otlp+{url}/", {}, "/v1/traces"),
        # The URI names the endpoint: OTEL_EXPORTER_OTLP_* endpoints do not override it.
        (
            "otlp+{url}",
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:{dead}"},
            "/v1/traces",
        ),
    ],
)
def test_endpoint_resolution(
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    uri: str,
    env: dict[str, str],
    path: str,
) -> None:
    values = {"url": receiver.url, "dead": str(free_port())}
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(**values))
    memory = InMemoryExporter()
    tracekit.configure(tracking_uri=uri.format(**values), exporter=memory)
    search("x")
    assert tracekit.flush(30)
    assert_not_spooled(tmp_path)
    assert receiver.only().path == path
    (span,) = all_spans(receiver.only().decoded())
    assert span["trace_id"] == memory.traces[0]["trace_id"]


def test_signal_specific_settings_win(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "a=generic,b=generic")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "a=traces")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    run_agent(f"otlp+{receiver.url}")
    request = receiver.only()
    assert request.headers["a"] == "traces"
    assert "b" not in request.headers  # the signal's list replaces the generic one
    assert request.headers["content-type"] == "application/json"
    assert request.headers["content-encoding"] == "gzip"
    assert request.body[:2] == b"\x1f\x8b"
    assert len(all_spans(request.decoded())) == 6


@pytest.mark.parametrize(
    ("env", "service"),
    [
        ({}, _state.program_name()),  # the default: the program's name
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attributes"}, "from-attributes"),
        (
            {
                "OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attributes",
                "OTEL_SERVICE_NAME": "otel",
            },
            "otel",
        ),
        ({"OTEL_SERVICE_NAME": "otel", "TRACEKIT_SERVICE_NAME": "ours"}, "ours"),
    ],
)
def test_service_name(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], service: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    tracekit.configure(tracking_uri=f"otlp+{receiver.url}")
    search("x")
    assert tracekit.flush(30)
    (resource_spans,) = receiver.only().decoded()["resource_spans"]
    assert resource_spans["resource"].get("service.name") == service


def sample_records() -> list[dict[str, Any]]:
    """Two traces, with every kind of value and status."""
    t0 = 1_790_000_000_000_000_000

    def span(i: int, parent: int | None, span_type: str, **extra: Any) -> dict[str, Any]:
        out = {
            "span_id": f"{i:016x}",
            "parent_id": None if parent is None else f"{parent:016x}",
            "name": f"span {i}",
            "span_type": span_type,
            "start_time_ns": t0 + i,
            "end_time_ns": t0 + 1000 + i,
            "status": {"code": "OK", "message": ""},
            "inputs": None,
            "outputs": None,
            "attributes": {},
            "events": [],
        }
        out.update(extra)
        return out

    def trace(trace_id: str, spans: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "schema": "tracekit.trace/1",
            "trace_id": trace_id,
            "name": "span 1",
            "status": "OK",
            "start_time_ns": t0,
            "end_time_ns": t0 + 2000,
            "tags": {},
            "metadata": {},
            "resource": {"service.name": "svc", "telemetry.sdk.name": "tracekit"},
            "spans": spans,
        }

    return [
        trace(
            "0af7651916cd43dd8448eb211c80319c",
            [
                span(1, None, "CHAIN", inputs={"q": "ü ✓"}, outputs=[1, "a"]),
                span(
                    2,
                    1,
                    "RERANKER",
                    status={"code": "UNSET", "message": ""},
                    attributes={"big": 2**64, "ints": [1, 2], "mixed": [1, "a"], "none": None},
                ),
                span(
                    3,
                    1,
                    "PARSER",
                    status={"code": "ERROR", "message": "ValueError: bad"},
                    events=[
                        {"name": "retry", "timestamp_ns": t0 + 500, "attributes": {"n": 2}},
                    ],
                ),
            ],
        ),
        trace("4bf92f3577b34da6a3ce929d0e0e4736", [span(9, None, "UNKNOWN", outputs=3.5)]),
    ]


def test_json_and_protobuf_carry_the_same_request(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = sample_records()
    decoded = {}
    for protocol in ("http/protobuf", "http/json"):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        exporter = OtlpExporter(settings_for(f"otlp+{receiver.url}"))
        result = exporter.export(records)
        exporter.shutdown()
        assert result.ok, result.message
        decoded[protocol] = receiver.received[-1].decoded()
    assert [r.headers["content-type"] for r in receiver.received] == [
        "application/x-protobuf",
        "application/json",
    ]
    assert decoded["http/protobuf"] == decoded["http/json"]

    assert len(decoded["http/json"]["resource_spans"]) == 1  # one resource, shared
    spans = {s["name"]: s for s in all_spans(decoded["http/json"])}
    assert [s["trace_id"] for s in all_spans(decoded["http/json"])] == [
        "0af7651916cd43dd8448eb211c80319c"
    ] * 3 + ["4bf92f3577b34da6a3ce929d0e0e4736"]
    assert spans["span 2"]["status"] == (0, "")
    assert spans["span 3"]["status"] == (2, "ValueError: bad")
    assert spans["span 1"]["status"] == (1, "")
    assert spans["span 2"]["kind"] == KIND_CLIENT  # a reranker calls a model
    assert spans["span 3"]["kind"] == KIND_INTERNAL
    assert spans["span 3"]["attributes"]["openinference.span.kind"] == "CHAIN"
    assert spans["span 3"]["events"] == [("retry", 1_790_000_000_000_000_500, {"n": 2})]
    attributes = spans["span 2"]["attributes"]
    assert attributes["big"] == str(2**64)
    assert attributes["ints"] == [1, 2]
    assert attributes["mixed"] == '[1, "a"]'
    assert "none" not in attributes
    assert json.loads(spans["span 1"]["attributes"]["input.value"]) == {"q": "ü ✓"}
    assert json.loads(spans["span 9"]["attributes"]["output.value"]) == 3.5


def test_requests_are_split_without_splitting_a_trace(receiver: Receiver) -> None:
    records = sample_records() * 3  # 3 + 1 spans, three times: 12 spans
    exporter = OtlpExporter(settings_for(f"otlp+{receiver.url}"), max_spans_per_request=4)
    assert exporter.export(records).ok
    exporter.shutdown()
    sizes = [len(all_spans(r.decoded())) for r in receiver.received]
    assert sizes == [4, 4, 4]
    for request in receiver.received:
        by_trace: dict[str, int] = {}
        for span in all_spans(request.decoded()):
            by_trace[span["trace_id"]] = by_trace.get(span["trace_id"], 0) + 1
        assert by_trace.get("0af7651916cd43dd8448eb211c80319c") in (None, 3)


def test_timeout_from_the_environment_in_milliseconds(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "9000")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "300")
    settings = settings_for(f"otlp+{receiver.url}")
    assert settings.timeout == pytest.approx(0.3)
    receiver.delay = 3.0
    exporter = OtlpExporter(settings)
    started = time.monotonic()
    result = exporter.export(sample_records())
    elapsed = time.monotonic() - started
    exporter.shutdown()
    assert not result.ok
    assert result.retryable
    assert "timed out" in result.message
    assert elapsed < 2.0
    assert len(receiver.received) == 1  # a timeout is not retried here (the wrappers do it)


def test_failures_say_whether_to_retry(receiver: Receiver) -> None:
    exporter = OtlpExporter(settings_for(f"otlp+{receiver.url}"))
    receiver.status, receiver.reply_headers = 429, {"Retry-After": "7"}
    result = exporter.export(sample_records())
    assert (result.ok, result.retryable, result.retry_after, result.status) == (
        False,
        True,
        7.0,
        429,
    )
    receiver.status, receiver.reply_headers = 400, {"Content-Type": "text/plain"}
    receiver.reply_body = b"bad span"
    result = exporter.export(sample_records())
    exporter.shutdown()
    assert (result.ok, result.retryable, result.status) == (False, False, 400)
    assert "HTTP 400 bad span" in result.message
    assert "/v1/traces" in result.message


def test_a_connection_the_server_dropped_is_reopened(receiver: Receiver) -> None:
    """A kept-alive connection the server closed (its idle timeout) costs no export."""
    receiver.hang_up = True
    exporter = OtlpExporter(settings_for(f"otlp+{receiver.url}"))
    results = []
    for _ in range(3):
        results.append(exporter.export(sample_records()))
        time.sleep(0.05)  # the server's close reaches us before the next request
    exporter.shutdown()
    assert [r.ok for r in results] == [True, True, True], [r.message for r in results]
    assert len(receiver.received) == 3  # each batch sent once


def test_headers_that_cannot_be_sent_are_dropped_with_a_warning(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(
        "OTEL_EXPORTER_OTLP_HEADERS",
        "good=1,bad name=x,tick=%E2%9C%93,split=a%0D%0Ab,latin=%C3%A9,=v,s3cr3t-token",
    )
    with caplog.at_level(logging.WARNING, logger="tracekit"):
        settings = settings_for(f"otlp+{receiver.url}")
    assert settings.headers == {"good": "1", "latin": "é"}
    messages = [r.getMessage() for r in caplog.records if r.name == "tracekit"]
    assert len(messages) == 5
    assert all("OTEL_EXPORTER_OTLP_HEADERS" in m for m in messages)
    assert any("'tick=<hidden>'" in m for m in messages)
    assert not any("s3cr3t" in m or "a\r\nb" in m for m in messages)
    exporter = OtlpExporter(settings)
    assert exporter.export(sample_records()).ok  # the rest still works
    exporter.shutdown()
    assert receiver.only().headers["good"] == "1"


def test_nothing_listening_is_retryable() -> None:
    exporter = OtlpExporter(settings_for(f"otlp+http://127.0.0.1:{free_port()}"))
    result = exporter.export(sample_records())
    exporter.shutdown()
    assert not result.ok
    assert result.retryable
    assert "connection refused" in result.message


def test_credentials_in_the_endpoint_become_a_header(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = receiver.url.replace("http://", "http://ingest:p%40ss-9@")
    record = run_agent(f"otlp+{url}/v1/traces")
    request = receiver.only()
    expected = "Basic " + base64.b64encode(b"ingest:p@ss-9").decode("ascii")
    assert request.headers["authorization"] == expected
    assert len(all_spans(request.decoded())) == len(record["spans"])
    (remote, _memory) = _state.pipeline().exporter.exporters  # type: ignore[attr-defined]
    assert remote.destination == f"otlp+{receiver.url}/v1/traces"
    assert "p@ss" not in repr(settings_for(f"otlp+{url}"))
    # An explicit Authorization header wins over the URL's credentials.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "Authorization=Bearer t-1")
    assert settings_for(f"otlp+{url}").headers == {"Authorization": "Bearer t-1"}


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "'http/protobuf'"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "thrift", "'http/protobuf'"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "brotli", "'none'"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon", "10000.0"),
    ],
)
def test_bad_settings_warn_and_fall_back(
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    variable: str,
    value: str,
    expected: str,
) -> None:
    monkeypatch.setenv(variable, value)
    with caplog.at_level(logging.WARNING, logger="tracekit"):
        settings = settings_for(f"otlp+{receiver.url}")
    (message,) = [r.getMessage() for r in caplog.records if r.name == "tracekit"]
    assert variable in message
    assert repr(value) in message
    assert f"using {expected} instead" in message
    assert settings.protobuf is True
    assert settings.gzip is False
    assert settings.timeout == 10.0
    exporter = OtlpExporter(settings)  # and it still exports, with the fallback
    assert exporter.export(sample_records()).ok
    exporter.shutdown()
    assert receiver.only().headers["content-type"] == "application/x-protobuf"


@pytest.mark.parametrize(
    ("protocol", "warned"),
    [
        (None, None),  # nothing asked: OTLP/JSON, quietly
        ("http/json", None),
        ("http/protobuf", "tracekit[otlp]"),  # asked for and impossible: say so
        ("grpc", "http/protobuf or http/json"),
    ],
)
def test_without_opentelemetry_proto_json_is_used(
    caplog: pytest.LogCaptureFixture, protocol: str | None, warned: str | None
) -> None:
    env = {} if protocol is None else {"OTEL_EXPORTER_OTLP_PROTOCOL": protocol}
    with caplog.at_level(logging.WARNING, logger="tracekit"):
        settings = otlp_settings("otlp+http://127.0.0.1:4318", protobuf_available=False, env=env)
    assert settings.protobuf is False
    messages = [r.getMessage() for r in caplog.records if r.name == "tracekit"]
    if warned is None:
        assert messages == []
        return
    (message,) = messages
    assert "OTEL_EXPORTER_OTLP_PROTOCOL" in message
    assert repr(protocol) in message
    assert warned in message
    assert "using 'http/json' instead" in message


def test_a_uri_without_http_is_refused_with_a_warning(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="otlp\\+http://"):
        otlp_settings("otlp://127.0.0.1:4318", True, {})
    with caplog.at_level(logging.WARNING, logger="tracekit"):
        tracekit.configure(tracking_uri="otlp://127.0.0.1:4318")
        search("x")
        assert tracekit.flush(30)
    (message,) = [r.getMessage() for r in caplog.records if r.name == "tracekit"]
    assert "otlp://127.0.0.1:4318" in message
    assert "otlp+http://" in message
    assert (tmp_path / ".tracekit" / "traces.jsonl").exists()  # kept locally instead


# -- 9. MLflow's /v1/traces --------------------------------------------------------------


def test_otlp_into_mlflow(
    mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    experiment_id = create_experiment(mlflow_server.url, f"otlp-{uuid.uuid4().hex[:10]}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"x-mlflow-experiment-id={experiment_id}")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "otlp-tests")
    ways = [("http/json", "none"), ("http/json", "gzip"), ("http/protobuf", "gzip")]
    ours: dict[str, tuple[str, dict[str, Any]]] = {}
    for protocol, compression in ways:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", compression)
        _state.reset()
        memory = InMemoryExporter()
        tracekit.configure(tracking_uri=f"otlp+{mlflow_server.url}", exporter=memory)
        with tracekit.start_span("session root", span_type="CHAIN") as root:
            tracekit.update_current_trace(tags={"way": protocol}, session_id="s-otlp")
            root.set_inputs({"way": protocol, "compression": compression})
            agent("otlp")
            root.set_outputs(7)
        assert tracekit.flush(30)
        (record,) = memory.traces
        ours["tr-" + record["trace_id"]] = (f"{protocol}+{compression}", record)
    _state.reset()
    assert_not_spooled(tmp_path)

    traces = read_traces(mlflow_server.python, mlflow_server.url, experiment_id)
    assert sorted(t["trace_id"] for t in traces) == sorted(ours)
    for trace in traces:
        way, record = ours[trace["trace_id"]]
        spans = {s["name"]: s for s in trace["spans"]}
        mine = {s["name"]: s for s in record["spans"]}
        assert set(spans) == set(mine), way
        assert {n: s["span_type"] for n, s in spans.items()} == {
            "session root": "CHAIN",
            "agent": "AGENT",
            "search": "RETRIEVER",
            "broken_tool": "TOOL",
            "embeddings text-embedding-3-small": "EMBEDDING",
            "text_completion davinci": "LLM",
            "chat gpt-4o-mini": "CHAT_MODEL",
        }, way
        for name, span in spans.items():
            assert span["span_id"] == mine[name]["span_id"], way
            assert span["parent_id"] == mine[name]["parent_id"], way
            assert span["inputs"] == mine[name]["inputs"], (way, name)
            assert span["outputs"] == mine[name]["outputs"], (way, name)
        assert spans["session root"]["outputs"] == 7
        assert spans["broken_tool"]["status"] == "ERROR"
        assert spans["broken_tool"]["events"][0]["attributes"]["exception.type"] == "KeyError"
        chat = spans["chat gpt-4o-mini"]["attributes"]
        assert chat["mlflow.chat.tokenUsage"] == {
            "input_tokens": 20,
            "output_tokens": 6,
            "total_tokens": 26,
            "cache_read_input_tokens": 4,
        }
        assert chat["mlflow.llm.model"] == "gpt-4o-mini-2024-07-18"
        assert "input.value" not in chat  # MLflow's own keys carry the content
        # What MLflow derives from the spans alone: state, usage, session, tags.
        assert trace["state"] == "OK", way
        assert trace["token_usage"] == {
            "input_tokens": 28,
            "output_tokens": 6,
            "total_tokens": 34,
            "cache_read_input_tokens": 4,
        }, way
        assert trace["metadata"]["mlflow.trace.session"] == "s-otlp", way
        assert trace["tags"]["way"] == way.split("+")[0], way
        assert trace["tags"]["service.name"] == "otlp-tests"


# -- pure functions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, {"boolValue": True}),
        (0, {"intValue": "0"}),
        (2**63 - 1, {"intValue": str(2**63 - 1)}),
        (-(2**63), {"intValue": str(-(2**63))}),
        (2**63, {"stringValue": str(2**63)}),  # beyond int64: text, not an overflow
        (-(2**63) - 1, {"stringValue": str(-(2**63) - 1)}),
        (0.25, {"doubleValue": 0.25}),
        ("ü", {"stringValue": "ü"}),
        ([1, 2], {"arrayValue": {"values": [{"intValue": "1"}, {"intValue": "2"}]}}),
        (["a"], {"arrayValue": {"values": [{"stringValue": "a"}]}}),
        ([True, False], {"arrayValue": {"values": [{"boolValue": True}, {"boolValue": False}]}}),
        ([1, True], {"stringValue": "[1, true]"}),  # bool is not int here
        ([1, 2.0], {"stringValue": "[1, 2.0]"}),
        ([1, "a"], {"stringValue": '[1, "a"]'}),
        ([[1], [2]], {"stringValue": "[[1], [2]]"}),
        ([], {"stringValue": "[]"}),
        ({"k": [1]}, {"stringValue": '{"k": [1]}'}),
        ([2**64], {"stringValue": str([2**64])}),  # an array of ints must fit int64 too
    ],
)
def test_any_value(value: Any, expected: dict[str, Any]) -> None:
    assert _otlp.any_value(value) == expected


def test_any_values_encode_as_protobuf() -> None:
    """Every AnyValue any_value() makes is one protobuf accepts."""
    values = [2**63 - 1, -(2**63), 2**63, [2**64], [1, 2], [1, "a"], [], {"a": 1}, 0.5, "x"]
    request = {
        "resourceSpans": [
            {
                "resource": {"attributes": []},
                "scopeSpans": [
                    {
                        "scope": {"name": "t"},
                        "spans": [
                            {
                                "traceId": "0" * 31 + "1",
                                "spanId": "0" * 15 + "1",
                                "name": "s",
                                "kind": 1,
                                "startTimeUnixNano": "1",
                                "endTimeUnixNano": "2",
                                "attributes": [
                                    {"key": f"k{i}", "value": _otlp.any_value(v)}
                                    for i, v in enumerate(values)
                                ],
                                "status": {"code": 1},
                            }
                        ],
                    }
                ],
            }
        ]
    }
    body, content_type = _otlp.encode(request, protobuf=True)
    assert content_type == "application/x-protobuf"
    message = trace_service_pb2.ExportTraceServiceRequest()
    message.ParseFromString(body)
    (span,) = all_spans(from_protobuf(message))
    assert span["attributes"]["k0"] == 2**63 - 1
    assert span["attributes"]["k2"] == str(2**63)
    assert span["attributes"]["k4"] == [1, 2]


def test_mlflow_attributes_read_back_as_values() -> None:
    """MLflow's ingestion JSON-encodes each attribute and undoes one level only for text,
    lists and objects: numbers go native, None is left out (the server-side test proves it
    end to end; this pins the mapping)."""
    (record,) = sample_records()[1:]
    root = record["spans"][0]
    attributes = _otlp.span_attributes(root, record, mlflow=True)
    assert attributes["mlflow.spanOutputs"] == 3.5
    assert attributes["mlflow.spanInputs"] is None  # skipped when encoded
    root["outputs"], root["inputs"] = {"a": 1}, "text"
    attributes = _otlp.span_attributes(root, record, mlflow=True)
    assert attributes["mlflow.spanOutputs"] == '{"a": 1}'
    assert attributes["mlflow.spanInputs"] == '"text"'
    assert "input.value" not in attributes
    (encoded,) = all_spans(from_json(_otlp.to_otlp([record], mlflow=True)))
    assert "mlflow.spanInputs" in encoded["attributes"]
    root["inputs"] = None
    (encoded,) = all_spans(from_json(_otlp.to_otlp([record], mlflow=True)))
    assert "mlflow.spanInputs" not in encoded["attributes"]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("0", 0.0),
        ("120", 120.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("inf", None),  # would hold a circuit open for ever
        ("nan", None),
        ("soon", None),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past
        ("Wed, 21 Oct 2015 07:28:10 -0000", 10.0),  # no zone: UTC, not local time
        ("Wed, 21 Oct 2015 09:28:10 +0200", 10.0),
    ],
)
def test_retry_after(header: str | None, expected: float | None) -> None:
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"  # the local time zone must not matter
    time.tzset()
    try:
        now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
        assert retry_after(header, now=now) == expected
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


def test_tracking_settings_credentials() -> None:
    token = tracking_settings("http://h:5000/", 3.0, {"MLFLOW_TRACKING_TOKEN": "t-1"})
    assert token.base_url == "http://h:5000"
    assert token.headers == {"Authorization": "Bearer t-1"}
    assert "t-1" not in repr(token)
    basic = tracking_settings(
        "https://h/prefix",
        3.0,
        {"MLFLOW_TRACKING_USERNAME": "u", "MLFLOW_TRACKING_PASSWORD": "p"},
    )
    assert basic.headers == {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()}
    in_url = tracking_settings("https://me:s%3Ac@h:8443/prefix/", 3.0, {})
    assert in_url.base_url == "https://h:8443/prefix"
    assert in_url.headers == {"Authorization": "Basic " + base64.b64encode(b"me:s:c").decode()}
    token_wins = tracking_settings("http://me:pw@h", 3.0, {"MLFLOW_TRACKING_TOKEN": "t-2"})
    assert (token_wins.base_url, token_wins.headers) == (
        "http://h",
        {"Authorization": "Bearer t-2"},
    )
    insecure = tracking_settings("https://h", 3.0, {"MLFLOW_TRACKING_INSECURE_TLS": "true"})
    assert insecure.tls.verify is False
    ca = tracking_settings("https://h", 3.0, {"MLFLOW_TRACKING_SERVER_CERT_PATH": "/ca.pem"})
    assert (ca.tls.verify, ca.tls.ca_file) == (True, "/ca.pem")


def test_config_reads_otel_resource_variables() -> None:
    config = from_env(
        {"OTEL_SERVICE_NAME": "svc", "OTEL_RESOURCE_ATTRIBUTES": "a=1,b=x%3Dy", "PATH": os.defpath}
    )
    assert config.service_name == "svc"
    assert dict(config.resource_attributes) == {"a": "1", "b": "x=y"}
