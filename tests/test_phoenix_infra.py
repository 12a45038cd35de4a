"""Smoke test of the real-Phoenix test infrastructure: start, OTLP/protobuf in, REST out."""

from __future__ import annotations

import os
import urllib.error
import urllib.request

import pytest
from tests.phoenix_server import PhoenixServer

# The first run may build the Phoenix virtualenv (a few minutes) inside the setup.
pytestmark = pytest.mark.timeout(900)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "a18d86cc91dfb2dc"


def _request() -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    span = Span(
        trace_id=bytes.fromhex(TRACE_ID),
        span_id=bytes.fromhex(SPAN_ID),
        name="smoke",
        start_time_unix_nano=1_795_344_799_100_000_000,
        end_time_unix_nano=1_795_344_799_200_000_000,
        attributes=[
            KeyValue(key="openinference.span.kind", value=AnyValue(string_value="CHAIN")),
            KeyValue(key="input.value", value=AnyValue(string_value="hello")),
        ],
    )
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]
    )
    return bytes(request.SerializeToString())


def _post(server: PhoenixServer, body: bytes, content_type: str) -> int:
    req = urllib.request.Request(  # noqa: S310 - loopback
        server.otlp_endpoint, data=body, headers={"Content-Type": content_type}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_phoenix_takes_protobuf_refuses_json_and_shows_the_span(
    phoenix_server: PhoenixServer,
) -> None:
    assert _post(phoenix_server, b"{}", "application/json") == 415
    assert _post(phoenix_server, _request(), "application/x-protobuf") == 200
    (span,) = phoenix_server.wait_for_spans(1)
    assert span["name"] == "smoke"
    assert span["context"] == {"trace_id": TRACE_ID, "span_id": SPAN_ID}
    assert span["span_kind"] == "CHAIN"
    assert span["attributes"]["input.value"] == "hello"


def test_the_server_is_on_loopback(phoenix_server: PhoenixServer) -> None:
    assert phoenix_server.url.startswith("http://127.0.0.1:")
    assert os.path.isdir(phoenix_server.workdir)
