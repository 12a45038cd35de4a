"""tracekit and the app's own OpenTelemetry: the `otel` bridge, nesting both ways, and
SDKs that trace themselves (anthropic 2.x).

The app's OpenTelemetry is the real SDK: a global TracerProvider exporting to an
InMemorySpanExporter. The global is reset around each test with OpenTelemetry's own
test utility, so no other test sees a provider. The SDKs run against
`FakeProviderServer`, which records the headers it receives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import tracekit
from tracekit._fake_server import FakeProviderServer
from tracekit._propagation import format_traceparent
from tracekit.testing import Capture, capture

otel_trace = pytest.importorskip("opentelemetry.trace")
sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
globals_test = pytest.importorskip("opentelemetry.test.globals_test")
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

MESSAGES = [{"role": "user", "content": "hi"}]
SDK_SPAN = "anthropic.messages.create"


@pytest.fixture
def app_otel() -> Iterator[InMemorySpanExporter]:
    """The app's OpenTelemetry setup: a global SDK TracerProvider, spans kept in memory."""
    globals_test.reset_trace_globals()
    exporter = InMemorySpanExporter()
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel_trace.set_tracer_provider(provider)
    try:
        yield exporter
    finally:
        provider.shutdown()
        globals_test.reset_trace_globals()


def tree(exporter: InMemorySpanExporter) -> list[tuple[str, str, str, str | None, str]]:
    """(name, trace id, span id, parent id, instrumentation scope) of each OTel span,
    in start order."""
    spans = sorted(exporter.get_finished_spans(), key=lambda s: s.start_time or 0)
    return [
        (
            s.name,
            f"{s.context.trace_id:032x}",
            f"{s.context.span_id:016x}",
            f"{s.parent.span_id:016x}" if s.parent else None,
            s.instrumentation_scope.name if s.instrumentation_scope else "",
        )
        for s in spans
    ]


def tk_tree(record: dict[str, Any]) -> list[tuple[str, str, str, str | None, str]]:
    return [
        (s["name"], record["trace_id"], s["span_id"], s["parent_id"], "tracekit")
        for s in record["spans"]
    ]


# -- A: the bridge ----------------------------------------------------------------------


def test_the_bridge_hands_every_span_to_the_apps_provider(
    app_otel: InMemorySpanExporter,
) -> None:
    @tracekit.trace(span_type="AGENT")
    def agent(question: str) -> str:
        tracekit.update_current_trace(tags={"env": "test"}, session_id="s-1")
        with tracekit.start_span("llm", span_type="CHAT_MODEL") as span:
            span.set_attributes({"gen_ai.request.model": "m", "gen_ai.tool.definitions": [{}]})
            span.set_token_usage({"input_tokens": 3, "output_tokens": 2, "total_tokens": 5})
            span.set_outputs("answer")
        try:
            with tracekit.start_span("tool", span_type="TOOL"):
                raise ValueError("boom")
        except ValueError:
            pass
        return "answer"

    with capture(tracking_uri="otel") as captured:
        agent("q?")
        (record,) = captured.traces
    spans = {s.name: s for s in app_otel.get_finished_spans()}
    assert tree(app_otel) == tk_tree(record)  # every id kept, one trace, same nesting
    by_name = {s["name"]: s for s in record["spans"]}
    for name, span in spans.items():
        assert span.start_time == by_name[name]["start_time_ns"]
        assert span.end_time == by_name[name]["end_time_ns"]
    assert spans["agent"].kind == otel_trace.SpanKind.INTERNAL
    trace_facts = {  # on every span, for backends that group by them
        "session.id": "s-1",
        "gen_ai.conversation.id": "s-1",
        "metadata": '{"session_id": "s-1"}',
        "tag.tags": ("env=test",),
    }
    assert dict(spans["agent"].attributes or {}) == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "agent",
        "tracekit.span_type": "AGENT",
        "openinference.span.kind": "AGENT",
        "input.value": '{"question": "q?"}',
        "input.mime_type": "application/json",
        "output.value": "answer",
        "output.mime_type": "text/plain",
        **trace_facts,
    }
    assert spans["llm"].kind == otel_trace.SpanKind.CLIENT
    assert dict(spans["llm"].attributes or {}) == {
        "gen_ai.request.model": "m",
        # not the conventions' shape (no chat to derive it from): kept under tracekit's key
        "tracekit.request.tools": "[{}]",
        "gen_ai.usage.input_tokens": 3,
        "gen_ai.usage.output_tokens": 2,
        "tracekit.span_type": "CHAT_MODEL",
        "openinference.span.kind": "LLM",
        "output.value": "answer",
        "output.mime_type": "text/plain",
        "llm.token_count.prompt": 3,
        "llm.token_count.completion": 2,
        "llm.token_count.total": 5,
        "llm.model_name": "m",
        **trace_facts,
    }
    assert dict(spans["tool"].attributes or {}) == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "tool",
        "tracekit.span_type": "TOOL",
        "openinference.span.kind": "TOOL",
        "tool.name": "tool",
        **trace_facts,
    }
    assert spans["llm"].status.status_code == otel_trace.StatusCode.OK
    tool = spans["tool"]
    assert tool.status.status_code == otel_trace.StatusCode.ERROR
    assert tool.status.description == "ValueError: boom"
    (event,) = tool.events
    assert event.name == "exception"
    assert event.timestamp == by_name["tool"]["events"][0]["timestamp_ns"]
    assert (event.attributes or {})["exception.type"] == "ValueError"
    assert {s.instrumentation_scope.name for s in spans.values()} == {"tracekit"}


def test_the_bridge_beside_another_destination(
    app_otel: InMemorySpanExporter, tmp_path: Any
) -> None:
    with capture(tracking_uri=f"{tmp_path},otel") as captured:
        with tracekit.start_span("root"):
            pass
        (record,) = captured.traces
    assert tree(app_otel) == tk_tree(record)
    assert list(tmp_path.glob("*.jsonl"))  # the file store got it too


def test_otel_is_a_destination_word(tmp_path: Any) -> None:
    from tracekit import _config
    from tracekit.exporters import FanoutExporter, build, store_directory
    from tracekit.exporters.file import FileExporter
    from tracekit.exporters.otel import OtelBridgeExporter

    config = _config.from_env({"TRACEKIT_TRACKING_URI": f"OTel,{tmp_path}"})
    exporter = build(config)
    assert isinstance(exporter, FanoutExporter)
    assert [type(e) for e in exporter.exporters] == [OtelBridgeExporter, FileExporter]
    assert store_directory("otel") is None


class _OtherTracer(otel_trace.Tracer):
    """A tracer that is not the OpenTelemetry SDK's (it delegates to one)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def start_span(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.start_span(*args, **kwargs)

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.start_as_current_span(*args, **kwargs)


class _OtherProvider(otel_trace.TracerProvider):
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
        return _OtherTracer(self.inner.get_tracer(*args, **kwargs))


def test_with_another_provider_ids_are_new_and_the_tree_is_kept() -> None:
    globals_test.reset_trace_globals()
    exporter = InMemorySpanExporter()
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel_trace.set_tracer_provider(_OtherProvider(provider))
    try:
        with capture(tracking_uri="otel") as captured:
            with tracekit.start_span("root"), tracekit.start_span("child"):
                pass
            (record,) = captured.traces
    finally:
        globals_test.reset_trace_globals()
    root, child = sorted(exporter.get_finished_spans(), key=lambda s: s.start_time or 0)
    assert child.parent is not None
    assert child.parent.span_id == root.context.span_id
    assert child.context.trace_id == root.context.trace_id
    assert [(s.name, (s.attributes or {})["tracekit.span_id"]) for s in (root, child)] == [
        (s["name"], s["span_id"]) for s in record["spans"]
    ]
    assert {(s.attributes or {})["tracekit.trace_id"] for s in (root, child)} == {
        record["trace_id"]
    }


def test_the_apps_sampler_applies() -> None:
    globals_test.reset_trace_globals()
    exporter = InMemorySpanExporter()
    provider = sdk_trace.TracerProvider(sampler=sdk_trace.sampling.ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel_trace.set_tracer_provider(provider)
    try:
        with capture(tracking_uri="otel") as captured:
            with tracekit.start_span("root"), tracekit.start_span("child"):
                pass
            assert len(captured.traces) == 1  # tracekit's other destinations still get it
        assert exporter.get_finished_spans() == ()
    finally:
        globals_test.reset_trace_globals()


def test_without_a_provider_the_bridge_says_so(caplog: pytest.LogCaptureFixture) -> None:
    globals_test.reset_trace_globals()
    with capture(tracking_uri="otel") as captured:
        with tracekit.start_span("root"):
            pass
        assert len(captured.traces) == 1
    assert "found no OpenTelemetry TracerProvider" in caplog.text


# -- B: nesting both ways ----------------------------------------------------------------


@pytest.mark.parametrize("bridge", [False, True])
def test_otel_around_tracekit_around_otel(app_otel: InMemorySpanExporter, bridge: bool) -> None:
    tracer = otel_trace.get_tracer("app")

    @tracekit.trace
    def step() -> None:
        with tracer.start_as_current_span("otel inner"), tracekit.start_span("tk innermost"):
            pass

    async def task() -> None:
        with tracekit.start_span("tk async"), tracer.start_as_current_span("otel in task"):
            await asyncio.sleep(0)

    settings = {"tracking_uri": "otel"} if bridge else {}
    with capture(**settings) as captured:
        with tracer.start_as_current_span("otel outer"):
            step()
            asyncio.run(task())
        tk = [s for r in captured.traces for s in tk_tree(r)]
    otel = tree(app_otel)
    app = [s for s in otel if s[4] == "app"]
    assert [s for s in otel if s[4] == "tracekit"] == (tk if bridge else [])
    (outer,) = [s for s in app if s[0] == "otel outer"]
    trace_id = outer[1]
    assert {s[1] for s in tk + otel} == {trace_id}  # one trace
    named = {s[0]: s for s in tk + app}
    assert named["step"][3] == outer[2]
    assert named["otel inner"][3] == named["step"][2]
    assert named["tk innermost"][3] == named["otel inner"][2]
    assert named["tk async"][3] == outer[2]
    assert named["otel in task"][3] == named["tk async"][2]


def test_otel_spans_inside_generators_and_thread_pools(app_otel: InMemorySpanExporter) -> None:
    tracer = otel_trace.get_tracer("app")

    @tracekit.trace
    def numbers() -> Any:
        for i in range(2):
            with tracer.start_as_current_span(f"otel {i}"):
                pass
            yield i

    @tracekit.trace
    async def anumbers() -> Any:
        with tracer.start_as_current_span("otel async"):
            pass
        yield 1

    async def consume() -> list[Any]:
        return [i async for i in anumbers()]

    @tracekit.trace
    def pooled() -> None:
        def work() -> None:
            with tracer.start_as_current_span("otel thread"):
                pass

        with ThreadPoolExecutor(1) as pool:
            pool.submit(work).result()

    with capture() as captured:
        assert list(numbers()) == [0, 1]
        assert asyncio.run(consume()) == [1]
        pooled()
        records = captured.traces
    parents = {s[0]: s[3] for s in tree(app_otel)}
    ids = {r["spans"][0]["name"]: r["spans"][0]["span_id"] for r in records}
    assert parents == {
        "otel 0": ids["numbers"],
        "otel 1": ids["numbers"],
        "otel async": ids["anumbers"],
        "otel thread": ids["pooled"],
    }


def test_a_langchain_run_inside_an_otel_span(app_otel: InMemorySpanExporter) -> None:
    """LangChain runs are current for tracekit only (not for OpenTelemetry): a run started
    under an OpenTelemetry span nests under it, and what runs inside the run under the run."""
    pytest.importorskip("langchain_core")
    from langchain_core.runnables import RunnableLambda

    from tracekit.integrations.langchain import integration

    tracer = otel_trace.get_tracer("app")

    @tracekit.trace
    def inner(x: int) -> int:
        return x + 1

    @tracekit.trace
    def outer() -> int:
        with tracer.start_as_current_span("otel"):
            return int(RunnableLambda(inner, name="step").invoke(1))

    tracekit.langchain.autolog()
    try:
        with capture() as captured:
            assert outer() == 2
            (record,) = captured.traces
    finally:
        integration.revert()
    ((_, _, otel_id, otel_parent, _),) = tree(app_otel)
    spans = {s["name"]: s for s in record["spans"]}
    assert otel_parent == spans["outer"]["span_id"]
    assert spans["step"]["parent_id"] == otel_id
    assert spans["inner"]["parent_id"] == spans["step"]["span_id"]


def test_without_a_provider_tracekit_leaves_opentelemetry_alone(captured: Capture) -> None:
    """No TracerProvider (OpenTelemetry loaded by a library, as anthropic 2.x does):
    OpenTelemetry starts no recording span, so there is nothing to nest, and tracekit
    does not make its spans OpenTelemetry's current span (it would cost every span
    several microseconds). Outgoing requests name tracekit's span through tracekit's own
    propagation (`tracekit.get_tracing_headers()` for the app's own HTTP calls)."""
    from opentelemetry import propagate

    globals_test.reset_trace_globals()
    carrier: dict[str, str] = {}
    with tracekit.start_span("root") as span:
        propagate.inject(carrier)
        headers = tracekit.get_tracing_headers()
    assert carrier == {}
    assert headers == {"traceparent": format_traceparent(span.trace_id, span.span_id)}
    assert otel_trace.get_current_span() is otel_trace.INVALID_SPAN  # left as it was
    assert len(captured.traces) == 1


def test_otel_context_off_keeps_them_apart(app_otel: InMemorySpanExporter) -> None:
    tracer = otel_trace.get_tracer("app")
    with capture(otel_context=False) as captured:
        with tracer.start_as_current_span("otel") as outer, tracekit.start_span("tk"):
            assert otel_trace.get_current_span() is outer  # no stand-in
        (record,) = captured.traces
    (span,) = record["spans"]
    assert span["parent_id"] is None
    assert record["trace_id"] != tree(app_otel)[0][1]


# -- C: an SDK that traces itself ------------------------------------------------------


@pytest.fixture
def anthropic_sdk(integrations: Callable[..., None]) -> Any:
    anthropic = pytest.importorskip("anthropic")
    integrations("anthropic")
    return anthropic


def sent(server: FakeProviderServer) -> list[str | None]:
    found = [
        {k.lower(): v for k, v in request["headers"].items()}.get("traceparent")
        for request in server.requests
    ]
    server.requests.clear()
    return found


def calls(anthropic: Any, server: FakeProviderServer, **client: Any) -> None:
    """create, create(stream=True), the stream helper, sync and async."""
    sync = anthropic.Anthropic(api_key="t", base_url=server.base_url, max_retries=0, **client)
    kwargs: dict[str, Any] = {"model": "c", "max_tokens": 5, "messages": MESSAGES}
    sync.messages.create(**kwargs)
    list(sync.messages.create(**kwargs, stream=True))
    with sync.messages.stream(**kwargs) as stream:
        stream.until_done()

    async def run() -> None:
        aclient = anthropic.AsyncAnthropic(
            api_key="t", base_url=server.base_url, max_retries=0, **client
        )
        await aclient.messages.create(**kwargs)
        async with aclient.beta.messages.stream(**kwargs) as stream:
            await stream.until_done()

    asyncio.run(run())


@pytest.mark.parametrize("sdk_env", ["", "false"])  # ANTHROPIC_OPEN_TELEMETRY
@pytest.mark.parametrize("bridge", [False, True])
@pytest.mark.parametrize("app", ["none", "global", "client option"])
def test_one_llm_span_per_anthropic_call(
    anthropic_sdk: Any,
    server: FakeProviderServer,
    monkeypatch: pytest.MonkeyPatch,
    app: str,
    bridge: bool,
    sdk_env: str,
) -> None:
    """Whatever the app's OpenTelemetry setup, the SDK's tracing switch and tracekit's
    destinations: one LLM span per call everywhere, and the request names it."""
    if sdk_env:
        monkeypatch.setenv("ANTHROPIC_OPEN_TELEMETRY", sdk_env)
    globals_test.reset_trace_globals()
    exporter = InMemorySpanExporter()
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    client: dict[str, Any] = {}
    if app == "global":
        otel_trace.set_tracer_provider(provider)
    elif app == "client option":
        client["open_telemetry"] = {"tracer_provider": provider}
    try:
        server.requests.clear()
        settings = {"tracking_uri": "otel"} if bridge else {}
        with capture(**settings) as captured:
            with tracekit.start_span("app"):
                calls(anthropic_sdk, server, **client)
            (record,) = captured.traces
    finally:
        globals_test.reset_trace_globals()
    llm = [s for s in record["spans"] if s["span_type"] == "CHAT_MODEL"]
    assert len(llm) == 5
    assert all(s["parent_id"] == record["spans"][0]["span_id"] for s in llm)
    assert sent(server) == [format_traceparent(record["trace_id"], s["span_id"]) for s in llm]
    otel = tree(exporter)
    assert not [s for s in otel if s[0] == SDK_SPAN]
    assert otel == (tk_tree(record) if bridge and app == "global" else [])


@pytest.mark.parametrize(
    "cassette", ["messages_tool_use_nonstream_gzip.yaml", "messages_stream_basic.yaml"]
)
def test_recorded_anthropic_calls_through_the_bridge(
    anthropic_sdk: Any, app_otel: InMemorySpanExporter, cassette: str
) -> None:
    """Real recorded responses: the app's pipeline gets tracekit's LLM span, whole
    (every attribute, as OTLP maps them), and no span of the SDK's."""
    from tests.replay import load_or_skip, replay_server

    from tracekit.exporters._otlp import span_attributes
    from tracekit.exporters.otel import attributes_of

    recorded = load_or_skip(f"anthropic/{cassette}")
    with capture(tracking_uri="otel") as captured, replay_server(recorded) as server:
        client = anthropic_sdk.Anthropic(api_key="t", base_url=server.base_url, max_retries=0)
        result = client.messages.create(**recorded.request_json(0))
        if recorded.request_json(0).get("stream"):
            list(result)
        (record,) = captured.traces
        (request,) = server.requests
    (llm,) = record["spans"]
    assert llm["token_usage"]  # the recorded usage reached the span
    (span,) = app_otel.get_finished_spans()
    assert tree(app_otel) == tk_tree(record)
    expected = attributes_of(span_attributes(llm, record, False))
    assert expected["gen_ai.usage.input_tokens"] == llm["token_usage"]["input_tokens"]
    assert dict(span.attributes or {}) == {  # OpenTelemetry keeps arrays as tuples
        k: tuple(v) if isinstance(v, list) else v for k, v in expected.items()
    }
    assert span.kind == otel_trace.SpanKind.CLIENT
    assert request.headers["traceparent"] == format_traceparent(record["trace_id"], llm["span_id"])


def test_sdk_spans_kept_on_request(
    app_otel: InMemorySpanExporter, server: FakeProviderServer
) -> None:
    """`autolog(sdk_spans=True)`: the SDK's span nests under tracekit's LLM span and
    its `traceparent` names the SDK's span."""
    anthropic = pytest.importorskip("anthropic")
    from tracekit.integrations.anthropic import integration

    tracekit.anthropic.autolog(sdk_spans=True)
    try:
        client = anthropic.Anthropic(api_key="t", base_url=server.base_url, max_retries=0)
        server.requests.clear()
        with capture() as captured:
            client.messages.create(model="c", max_tokens=5, messages=MESSAGES)
            (record,) = captured.traces
    finally:
        integration.revert()
    (llm,) = record["spans"]
    ((name, trace_id, span_id, parent_id, _),) = tree(app_otel)
    assert (name, trace_id, parent_id) == (SDK_SPAN, record["trace_id"], llm["span_id"])
    assert sent(server) == [format_traceparent(trace_id, span_id)]


def test_calls_tracekit_does_not_trace_keep_the_sdks_span(
    anthropic_sdk: Any, app_otel: InMemorySpanExporter, server: FakeProviderServer
) -> None:
    tracekit.anthropic.autolog(disable=True)
    client = anthropic_sdk.Anthropic(api_key="t", base_url=server.base_url, max_retries=0)
    server.requests.clear()
    with capture() as captured:
        client.messages.create(model="c", max_tokens=5, messages=MESSAGES)
        assert captured.traces == []
    ((name, trace_id, span_id, _, _),) = tree(app_otel)
    assert name == SDK_SPAN
    (header,) = sent(server)
    assert header is not None
    assert header.startswith(f"00-{trace_id}-{span_id}-")  # flags 03: a random trace id
