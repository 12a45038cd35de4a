"""The engine's seams for SDKs that are not Stainless-generated, proven with real botocore.

botocore generates its client classes at run time (there is no `Class.method` to patch
before a client exists) and hands a stream back inside the result dict
(`{"stream": EventStream, ...}`). A small test integration of the Bedrock Converse API,
written only with the engine's public declarations (`Endpoint.factory`, `Integration.patch`,
`Endpoint.call` with a `StreamSeam` that takes the stream out of the result and puts the
traced one back), runs the real botocore client against a local server speaking Bedrock's
wire format (JSON, and AWS event-stream framing for the stream) over loopback.
"""

from __future__ import annotations

import binascii
import gc
import json
import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

botocore_session = pytest.importorskip("botocore.session")

from tracekit._span import Span, SpanType  # noqa: E402
from tracekit.integrations._common import Request  # noqa: E402
from tracekit.integrations._engine import Endpoint, Integration, StreamSeam  # noqa: E402
from tracekit.integrations._registry import IntegrationSpec  # noqa: E402
from tracekit.testing import Capture  # noqa: E402

MODEL = "anthropic.claude-fake"
ANSWER = ["You ", "asked: ", "hi"]
USAGE = {"inputTokens": 5, "outputTokens": 3, "totalTokens": 8}


# -- a local Bedrock Converse server ---------------------------------------------------


def _event(event_type: str, payload: dict[str, Any]) -> bytes:
    """One AWS event-stream message (prelude, string headers, JSON payload, CRCs)."""
    headers = b""
    for name, value in (
        (":event-type", event_type),
        (":content-type", "application/json"),
        (":message-type", "event"),
    ):
        raw = value.encode()
        headers += bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(raw)) + raw
    body = json.dumps(payload).encode()
    total = 12 + len(headers) + len(body) + 4
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", binascii.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + headers + body
    return message + struct.pack(">I", binascii.crc32(message) & 0xFFFFFFFF)


def _stream_body() -> bytes:
    events = [_event("messageStart", {"role": "assistant"})]
    events += [
        _event("contentBlockDelta", {"delta": {"text": text}, "contentBlockIndex": 0})
        for text in ANSWER
    ]
    events += [
        _event("contentBlockStop", {"contentBlockIndex": 0}),
        _event("messageStop", {"stopReason": "end_turn"}),
        _event("metadata", {"usage": USAGE, "metrics": {"latencyMs": 1}}),
    ]
    return b"".join(events)


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.endswith("/converse-stream"):
            body, kind = _stream_body(), "application/vnd.amazon.eventstream"
        else:
            body = json.dumps(
                {
                    "output": {
                        "message": {"role": "assistant", "content": [{"text": "".join(ANSWER)}]}
                    },
                    "stopReason": "end_turn",
                    "usage": USAGE,
                    "metrics": {"latencyMs": 1},
                }
            ).encode()
            kind = "application/json"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def bedrock_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


# -- the test integration: only the engine's public declarations -------------------------


def _converse_request(instance: Any, kwargs: Any) -> Request:
    model = kwargs.get("modelId")
    attributes = {
        "gen_ai.provider.name": "aws.bedrock",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": model,
    }
    return Request(f"chat {model}", SpanType.CHAT_MODEL, dict(kwargs), attributes)


def _usage(usage: dict[str, int]) -> dict[str, int]:
    return {
        "input_tokens": usage["inputTokens"],
        "output_tokens": usage["outputTokens"],
        "total_tokens": usage["totalTokens"],
    }


def _converse_response(span: Span, response: Any) -> None:
    span.set_outputs(response["output"])
    span.set_attribute("gen_ai.response.finish_reasons", [response["stopReason"]])
    span.set_token_usage(_usage(response["usage"]))


class _EventAccumulator:
    def __init__(self, request: Request) -> None:
        self.text: list[str] = []
        self.stop: str | None = None
        self.usage: dict[str, int] | None = None

    def add(self, event: Any) -> None:
        if "contentBlockDelta" in event:
            self.text.append(event["contentBlockDelta"]["delta"].get("text", ""))
        elif "messageStop" in event:
            self.stop = event["messageStop"]["stopReason"]
        elif "metadata" in event:
            self.usage = _usage(event["metadata"]["usage"])

    def finish(self, span: Span) -> None:
        span.set_outputs({"role": "assistant", "content": [{"text": "".join(self.text)}]})
        if self.stop:
            span.set_attribute("gen_ai.response.finish_reasons", [self.stop])
        if self.usage:
            span.set_token_usage(self.usage)


_STREAM = StreamSeam(
    is_stream=lambda result: isinstance(result, dict) and "stream" in result,
    accumulator=_EventAccumulator,
    take=lambda result: result["stream"],
    put=lambda result, traced: {**result, "stream": traced},
)


def _instrument(client: Any, integration: Integration) -> None:
    """Patch the generated client class of each Bedrock Runtime client created."""
    if client.meta.service_model.service_name != "bedrock-runtime":
        return
    owner = type(client)
    integration.patch(
        owner,
        "converse",
        Endpoint.call("", "converse", request=_converse_request, response=_converse_response),
    )
    integration.patch(
        owner,
        "converse_stream",
        Endpoint.call("", "converse_stream", request=_converse_request, stream=_STREAM),
    )


bedrock = Integration(
    IntegrationSpec(
        name="bedrock-test",
        sdk_module="botocore",
        distribution="botocore",
        min_version="1.34",
        face=__name__,
        implementation=__name__,
    ),
    [Endpoint.factory("botocore.client", "ClientCreator.create_client", instrument=_instrument)],
)


@pytest.fixture
def traced(captured: Capture) -> Iterator[Capture]:
    bedrock.autolog()
    try:
        yield captured
    finally:
        bedrock.revert()


def _client(url: str) -> Any:
    return botocore_session.get_session().create_client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=url,
        aws_access_key_id="test",
        aws_secret_access_key="test",  # noqa: S106 - a fake key for a loopback server
    )


MESSAGES = [{"role": "user", "content": [{"text": "hi"}]}]


def _spans(captured: Capture) -> list[dict[str, Any]]:
    return [span for trace in captured.traces for span in trace["spans"]]


def _record(
    span_id: int, start: int, end: int, outputs: Any, chat: Any, **attributes: Any
) -> dict[str, Any]:
    """The whole span record the test integration must produce (deterministic ids, clock)."""
    return {
        "span_id": f"{span_id:016x}",
        "parent_id": None,
        "name": f"chat {MODEL}",
        "span_type": "CHAT_MODEL",
        "start_time_ns": 1_700_000_000_000_000_000 + start * 1_000_000,
        "end_time_ns": 1_700_000_000_000_000_000 + end * 1_000_000,
        "status": {"code": "OK", "message": ""},
        "inputs": {"modelId": MODEL, "messages": MESSAGES},
        "outputs": outputs,
        "attributes": {
            "gen_ai.provider.name": "aws.bedrock",
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": MODEL,
            **attributes,
            "gen_ai.response.finish_reasons": ["end_turn"],
        },
        "events": [],
        "token_usage": {"input_tokens": 5, "output_tokens": 3, "total_tokens": 8},
        "chat": chat,
    }


ASSISTANT = {"role": "assistant", "content": [{"text": "You asked: hi"}]}
# The normalized chat tracekit reads from these shapes (Converse's messages are
# role + content blocks; a non-streamed output nested under "message" is not read).
QUESTION = [{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]
ANSWERED = {
    "input_messages": QUESTION,
    "output_messages": [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "You asked: hi"}],
            "finish_reason": "stop",
        }
    ],
}


def test_a_client_generated_at_run_time_is_traced(traced: Capture, bedrock_url: str) -> None:
    response = _client(bedrock_url).converse(modelId=MODEL, messages=MESSAGES)
    assert response["output"]["message"] == ASSISTANT
    assert _spans(traced) == [
        _record(1, 0, 1, {"message": ASSISTANT}, {"input_messages": QUESTION})
    ]


def test_a_stream_inside_the_result_is_traced_and_handed_back(
    traced: Capture, bedrock_url: str
) -> None:
    response = _client(bedrock_url).converse_stream(modelId=MODEL, messages=MESSAGES)
    assert set(response) >= {"stream", "ResponseMetadata"}
    from botocore.eventstream import EventStream

    assert isinstance(response["stream"], EventStream)  # the proxy keeps its surface
    events = list(response["stream"])
    assert [next(iter(e)) for e in events] == [
        "messageStart",
        "contentBlockDelta",
        "contentBlockDelta",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    stream = {
        "tracekit.time_to_first_chunk_s": 0.001,
        "tracekit.stream": True,
        "tracekit.stream.chunks": 7,
    }
    assert _spans(traced) == [_record(1, 0, 2, ASSISTANT, ANSWERED, **stream)]


def test_a_stream_left_early_ends_its_span_once(traced: Capture, bedrock_url: str) -> None:
    response = _client(bedrock_url).converse_stream(modelId=MODEL, messages=MESSAGES)
    first = next(iter(response["stream"]))
    assert "messageStart" in first
    response["stream"].close()
    del response
    gc.collect()
    (span,) = _spans(traced)
    assert span["attributes"]["tracekit.stream.ended_by"] == "close"
    assert span["outputs"] == {"role": "assistant", "content": [{"text": ""}]}


def test_revert_unpatches_the_generated_class(captured: Capture, bedrock_url: str) -> None:
    bedrock.autolog()
    client = _client(bedrock_url)
    bedrock.revert()
    client.converse(modelId=MODEL, messages=MESSAGES)
    _client(bedrock_url).converse(modelId=MODEL, messages=MESSAGES)
    assert _spans(captured) == []
