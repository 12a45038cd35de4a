"""OTLP/protobuf out of the box: tracekit's own encoder, receivers that refuse an encoding,
and Arize Phoenix (protobuf only) end to end, with and without opentelemetry-proto.

The encoder is checked byte for byte against the official classes (opentelemetry-proto,
in the dev group only): `ParseDict` of the same OTLP/JSON request, then `SerializeToString`.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.child import run_python
from tests.phoenix_server import PhoenixServer
from tests.test_otlp_export import Received, Receiver, sample_records

from tracekit.exporters import _otlp, _protobuf
from tracekit.exporters._settings import OtlpSettings
from tracekit.exporters.otlp import OtlpExporter

json_format = pytest.importorskip("google.protobuf.json_format")
trace_service_pb2 = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")

pytestmark = pytest.mark.timeout(900)  # the Phoenix tests may build its virtualenv

# -- the encoder against the official classes ----------------------------------------------


def official(request: dict[str, Any]) -> bytes:
    """What opentelemetry-proto makes of an OTLP/JSON request (its JSON mapping reads
    `bytes` fields as base64, where OTLP/JSON writes ids in hex)."""
    request = copy.deepcopy(request)
    for rs in request.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for span in ss.get("spans", []):
                for item in [span, *span.get("links", [])]:
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if item.get(key):
                            item[key] = base64.b64encode(bytes.fromhex(item[key])).decode()
    message = json_format.ParseDict(request, trace_service_pb2.ExportTraceServiceRequest())
    return bytes(message.SerializeToString())


def every_field() -> dict[str, Any]:
    """A request using every field and every AnyValue kind, defaults included."""
    values = [
        {"stringValue": "ü ✓ 🚀"},
        {"stringValue": ""},
        {"boolValue": True},
        {"boolValue": False},
        {"intValue": "0"},
        {"intValue": "300"},
        {"intValue": str(2**63 - 1)},
        {"intValue": str(-(2**63))},
        {"intValue": "-1"},
        {"doubleValue": 0.0},
        {"doubleValue": -2.5},
        {"arrayValue": {"values": [{"intValue": "1"}, {"arrayValue": {"values": []}}]}},
        {"arrayValue": {}},
        {"kvlistValue": {"values": [{"key": "k", "value": {"stringValue": "v"}}]}},
        {"bytesValue": base64.b64encode(b"\x00\xff").decode()},
        {},
    ]
    attributes = [{"key": f"k{i}", "value": v} for i, v in enumerate(values)]
    attributes.append(
        {"key": "x" * 200, "value": {"stringValue": "y" * 20_000}}
    )  # 2- and 3-byte lengths
    span = {
        "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
        "spanId": "a18d86cc91dfb2dc",
        "traceState": "vendor=1",
        "parentSpanId": "00f067aa0ba902b7",
        "name": "chat gpt-4o-mini",
        "kind": 3,
        "startTimeUnixNano": "1795344799100000000",
        "endTimeUnixNano": "1795344799200000000",
        "attributes": attributes,
        "droppedAttributesCount": 2,
        "events": [
            {
                "timeUnixNano": "1795344799150000000",
                "name": "exception",
                "attributes": attributes[:3],
            },
            {"name": "", "droppedAttributesCount": 1},
        ],
        "droppedEventsCount": 3,
        "links": [
            {
                "traceId": "0af7651916cd43dd8448eb211c80319c",
                "spanId": "b7ad6b7169203331",
                "traceState": "a=b",
                "attributes": attributes[:2],
                "droppedAttributesCount": 4,
                "flags": 257,
            },
            {"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331"},
        ],
        "droppedLinksCount": 5,
        "status": {"message": "ValueError: bad", "code": 2},
        "flags": 769,
    }
    bare = {"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331"}
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": attributes[:2], "droppedAttributesCount": 1},
                "scopeSpans": [
                    {
                        "scope": {
                            "name": "tracekit",
                            "version": "1.0",
                            "attributes": attributes[:1],
                            "droppedAttributesCount": 6,
                        },
                        "spans": [span, {**bare, "status": {}}, bare],
                        "schemaUrl": "https://opentelemetry.io/schemas/1.26.0",
                    },
                    {"spans": []},
                ],
                "schemaUrl": "https://opentelemetry.io/schemas/1.26.0",
            },
            {"resource": {}, "scopeSpans": []},
            {},
        ]
    }


def test_every_field_encodes_as_the_official_classes_do() -> None:
    request = every_field()
    assert _protobuf.encode_request(request) == official(request)


@pytest.mark.parametrize("mlflow", [False, True], ids=["otlp", "mlflow"])
def test_tracekit_requests_encode_as_the_official_classes_do(mlflow: bool) -> None:
    request = _otlp.to_otlp(sample_records(), mlflow=mlflow)
    body, content_type = _otlp.encode(request, protobuf=True)
    assert content_type == "application/x-protobuf"
    assert body == official(request)
    message = trace_service_pb2.ExportTraceServiceRequest()
    message.ParseFromString(body)  # and back: the same request, ids in hex
    back = json_format.MessageToDict(message)
    assert [
        s["name"] for rs in back["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]
    ] == [
        s["name"] for rs in request["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]
    ]


def test_a_lone_surrogate_is_escaped_not_sent_as_invalid_utf8() -> None:
    request = every_field()
    request["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"] = "bad \udc80 text"
    message = trace_service_pb2.ExportTraceServiceRequest()
    message.ParseFromString(_protobuf.encode_request(request))
    assert message.resource_spans[0].scope_spans[0].spans[0].name == "bad \\udc80 text"


# -- receivers that refuse an encoding (HTTP 415) -------------------------------------------


class OneEncoding(Receiver):
    """An OTLP/HTTP receiver taking one content type (None: none) and answering 415 to others."""

    def __init__(self, accept: str | None) -> None:
        def answer(request: Received) -> tuple[int, bytes]:
            if request.headers.get("content-type", "") == accept:
                return 200, b""
            return 415, b"Unsupported content type"

        super().__init__(answer=answer)
        self.endpoint = f"{self.url}/v1/traces"

    @property
    def content_types(self) -> list[str]:
        return [r.headers.get("content-type", "") for r in self.received]


@pytest.fixture
def json_only() -> Iterator[OneEncoding]:
    receiver = OneEncoding("application/json")
    yield receiver
    receiver.close()


@pytest.fixture
def refuses_both() -> Iterator[OneEncoding]:
    receiver = OneEncoding(None)
    yield receiver
    receiver.close()


PB, JSON = "application/x-protobuf", "application/json"


def test_a_refused_encoding_falls_back_once_and_is_remembered(
    json_only: OneEncoding, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = OtlpExporter(OtlpSettings(json_only.endpoint))  # protobuf by default
    with caplog.at_level(logging.WARNING, logger="tracekit"):
        assert exporter.export(sample_records()).ok
        assert exporter.export(sample_records()).ok
    assert json_only.content_types == [PB, JSON, JSON]
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning == (
        f"tracekit: {json_only.endpoint} refused OTLP/protobuf (HTTP 415); sending OTLP/JSON "
        "from now on (set OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/json to say so)"
    )


def test_a_receiver_refusing_both_encodings_keeps_the_traces_with_one_clear_message(
    refuses_both: OneEncoding,
) -> None:
    exporter = OtlpExporter(OtlpSettings(refuses_both.endpoint))
    result = exporter.export(sample_records())
    assert refuses_both.content_types == [PB, JSON]
    assert (result.ok, result.rejected) == (False, False)  # kept (spooled), not set aside
    assert result.message == (
        "POST /v1/traces: HTTP 415 for both OTLP/protobuf and OTLP/JSON: not an OTLP/HTTP "
        "traces endpoint? Check OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (or the "
        "otlp+http://HOST:PORT/PATH destination)"
    )
    assert exporter.protobuf  # nothing learnt: the next batch tries protobuf first again


def test_the_spool_keeps_what_neither_encoding_delivered(
    refuses_both: OneEncoding, tmp_path: Path
) -> None:
    import tracekit

    tracekit.configure(tracking_uri=f"otlp+{refuses_both.endpoint}", spool_dir=str(tmp_path))
    with tracekit.start_span("kept"):
        pass
    tracekit.flush(10)
    spooled = [line for p in tmp_path.rglob("*.jsonl*") for line in p.read_text().splitlines()]
    assert [json.loads(line)["name"] for line in spooled] == ["kept"]
    tracekit.shutdown()


# -- Arize Phoenix end to end, from a plain install ------------------------------------------

APP = r"""
import json, sys

class Blocked:
    # A plain install: neither opentelemetry nor protobuf can be imported.
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("opentelemetry", "google"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None

if sys.argv[1] == "blocked":
    sys.meta_path.insert(0, Blocked())

import openai
import tracekit
from tracekit._fake_server import FakeProviderServer

tracekit.openai.autolog()
with FakeProviderServer() as server:
    client = openai.OpenAI(api_key="test", base_url=server.base_url + "/v1")

    @tracekit.trace(span_type="AGENT")
    def answer(question):
        response = client.chat.completions.create(
            model="fake-mini", messages=[{"role": "user", "content": question}]
        )
        return response.choices[0].message.content

    answer("what is the answer")
    assert tracekit.flush(30)
print(json.dumps({
    "trace_id": tracekit.get_last_trace_id(),
    "imported": sorted(m for m in sys.modules if m.startswith(("opentelemetry", "google"))),
}))
"""


@pytest.mark.parametrize(
    ("modules", "protocol"),
    [("blocked", None), ("importable", None), ("blocked", "http/json")],
    ids=["plain-install", "with-opentelemetry-proto", "json-asked-for"],
)
def test_phoenix_gets_the_trace_from_a_plain_install(
    phoenix_server: PhoenixServer, tmp_path: Path, modules: str, protocol: str | None
) -> None:
    project = f"tracekit-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACEKIT_", "OTEL_"))}
    env.update(
        TRACEKIT_TRACKING_URI="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=phoenix_server.url,
        OTEL_RESOURCE_ATTRIBUTES=f"openinference.project.name={project}",
        TRACEKIT_SPOOL_DIR=str(tmp_path / "spool"),
    )
    if protocol:
        env["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] = protocol
    done = run_python(APP, modules, env=env, cwd=tmp_path, timeout=120)
    out = json.loads(done.stdout.splitlines()[-1])
    if modules == "blocked":
        assert out["imported"] == []
    warnings = [line for line in done.stderr.splitlines() if "tracekit" in line]
    if protocol == "http/json":  # Phoenix answers 415 to JSON: one line, then protobuf
        assert len(warnings) == 1
        assert "refused OTLP/JSON (HTTP 415); sending OTLP/protobuf from now on" in warnings[0]
    else:
        assert warnings == []
    assert not list((tmp_path / "spool").rglob("*.jsonl*"))  # delivered, nothing kept

    spans = {s["name"]: s for s in phoenix_server.wait_for_spans(2, project)}
    agent, chat = spans["invoke_agent answer"], spans["chat fake-mini"]  # the conventions name
    assert agent["context"]["trace_id"] == chat["context"]["trace_id"] == out["trace_id"]
    assert agent["parent_id"] is None
    assert chat["parent_id"] == agent["context"]["span_id"]
    assert (agent["span_kind"], chat["span_kind"]) == ("AGENT", "LLM")
    assert json.loads(agent["attributes"]["input.value"]) == {"question": "what is the answer"}
    assert chat["attributes"]["gen_ai.request.model"] == "fake-mini"
    assert chat["attributes"]["llm.token_count.total"] > 0
