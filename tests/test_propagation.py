"""One trace across processes: W3C `traceparent` out (SDK requests, `get_tracing_headers`)
and in (`continue_trace`, the WSGI and ASGI middleware, an active OpenTelemetry span).

The SDKs run against `FakeProviderServer`, which records the headers it receives; the
cross-process tests run a real WSGI server (wsgiref) and a small ASGI server (asyncio) in
subprocesses that export to one file store with a client process.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.child import run_python

import tracekit
from tracekit import _config
from tracekit._fake_server import FakeProviderServer
from tracekit._propagation import format_traceparent, parse, parse_traceparent
from tracekit._store import iter_records
from tracekit.testing import Capture, capture

REMOTE_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
REMOTE_SPAN = "00f067aa0ba902b7"
REMOTE = f"00-{REMOTE_TRACE}-{REMOTE_SPAN}-01"
UNSAMPLED = f"00-{REMOTE_TRACE}-{REMOTE_SPAN}-00"  # the caller did not record its span
MESSAGES = [{"role": "user", "content": "hi"}]
CHAT_COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
    ],
}


def spans(captured: Capture) -> list[dict[str, Any]]:
    return [span for trace in captured.traces for span in trace["spans"]]


# -- the header -------------------------------------------------------------------------


def test_parse_traceparent() -> None:
    assert parse_traceparent(REMOTE) == (REMOTE_TRACE, REMOTE_SPAN)
    assert parse_traceparent(f" {REMOTE} ") == (REMOTE_TRACE, REMOTE_SPAN)
    assert parse_traceparent(f"00-{REMOTE_TRACE}-{REMOTE_SPAN}-00") == (REMOTE_TRACE, REMOTE_SPAN)
    # A later version may add fields; version 00 may not.
    assert parse_traceparent(f"01-{REMOTE_TRACE}-{REMOTE_SPAN}-01-x") == (REMOTE_TRACE, REMOTE_SPAN)
    for bad in (
        None,
        b"bytes",
        "",
        "garbage",
        f"00-{REMOTE_TRACE}-{REMOTE_SPAN}-01-extra",
        f"ff-{REMOTE_TRACE}-{REMOTE_SPAN}-01",
        f"00-{'0' * 32}-{REMOTE_SPAN}-01",
        f"00-{REMOTE_TRACE}-{'0' * 16}-01",
        f"00-{REMOTE_TRACE.upper()}-{REMOTE_SPAN}-01",
        f"00-{REMOTE_TRACE[:-1]}-{REMOTE_SPAN}-01",
    ):
        assert parse_traceparent(bad) is None, bad
    assert format_traceparent(REMOTE_TRACE, REMOTE_SPAN) == REMOTE
    assert format_traceparent(REMOTE_TRACE, REMOTE_SPAN, sampled=False) == UNSAMPLED


def test_the_sampled_flag() -> None:
    for flags, sampled in (("01", True), ("00", False), ("03", True), ("02", False)):
        assert parse(f"00-{REMOTE_TRACE}-{REMOTE_SPAN}-{flags}") == (
            REMOTE_TRACE,
            REMOTE_SPAN,
            sampled,
        )


def test_get_tracing_headers(captured: Capture) -> None:
    assert tracekit.get_tracing_headers() == {}
    with tracekit.start_span("outer") as span:
        assert tracekit.get_tracing_headers() == {
            "traceparent": f"00-{span.trace_id}-{span.span_id}-01"
        }
    assert tracekit.get_tracing_headers() == {}
    with capture(sampling_ratio=0.0), tracekit.start_span("sampled out"):
        assert tracekit.get_tracing_headers() == {}


# -- continue_trace ---------------------------------------------------------------------


def test_continue_trace_makes_a_fragment_of_the_remote_trace(captured: Capture) -> None:
    @tracekit.trace
    def handler() -> None:
        with tracekit.start_span("child"):
            pass

    with tracekit.continue_trace({"TraceParent": REMOTE}):
        handler()
        with tracekit.start_span("second"):
            pass
    with tracekit.start_span("after"):
        pass
    records = captured.traces
    assert [
        (r["trace_id"], [(s["name"], s["parent_id"]) for s in r["spans"]]) for r in records
    ] == [
        (REMOTE_TRACE, [("handler", REMOTE_SPAN), ("child", "0000000000000001")]),
        (REMOTE_TRACE, [("second", REMOTE_SPAN)]),
        ("00000000000000000000000000000001", [("after", None)]),
    ]
    assert records[0]["name"] == "handler"  # the record's root is the local top span


@pytest.mark.parametrize(
    "headers",
    [None, {}, {"traceparent": "nonsense"}, [(b"traceparent", b"00-xyz")], 42, {"other": "x"}],
)
def test_continue_trace_without_a_valid_header_starts_a_new_trace(
    captured: Capture, headers: Any
) -> None:
    with tracekit.continue_trace(headers), tracekit.start_span("root"):
        pass
    (span,) = spans(captured)
    assert span["parent_id"] is None
    assert captured.single()["trace_id"] == "00000000000000000000000000000001"


def test_continue_trace_accepts_asgi_style_pairs(captured: Capture) -> None:
    with tracekit.continue_trace([(b"traceparent", REMOTE.encode())]), tracekit.start_span("r"):
        pass
    assert captured.single()["trace_id"] == REMOTE_TRACE


def test_continue_trace_in_tasks(captured: Capture) -> None:
    async def one(i: int) -> None:
        header = f"00-{i:032x}-{i:016x}-01"
        with tracekit.continue_trace({"traceparent": header}):
            await asyncio.sleep(0)
            with tracekit.start_span(f"task {i}"):
                await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(*(one(i) for i in range(100, 110)))

    asyncio.run(main())
    found = {r["trace_id"]: r["spans"][0]["parent_id"] for r in captured.traces}
    assert found == {f"{i:032x}": f"{i:016x}" for i in range(100, 110)}


# -- sampling follows the remote parent ---------------------------------------------------


def test_an_unsampled_remote_parent_records_nothing(captured: Capture) -> None:
    seen: list[dict[str, str]] = []

    @tracekit.trace
    def handler() -> None:
        seen.append(tracekit.get_tracing_headers())
        with tracekit.start_span("child") as child:
            assert not child.is_recording
            seen.append(tracekit.get_tracing_headers())

    with tracekit.continue_trace({"traceparent": UNSAMPLED}):
        handler()
        seen.append(tracekit.get_tracing_headers())
        with tracekit.continue_trace({"traceparent": REMOTE}):  # a nested decision wins
            with tracekit.start_span("sampled"):
                pass
            assert tracekit.get_tracing_headers() == {}
    assert tracekit.get_tracing_headers() == {}
    with tracekit.start_span("after"):
        pass
    # The decision is passed on: the headers name the remote span, flags 00.
    assert seen == [{"traceparent": UNSAMPLED}] * 3
    assert [(r["trace_id"], r["name"]) for r in captured.traces] == [
        (REMOTE_TRACE, "sampled"),
        ("00000000000000000000000000000001", "after"),
    ]


def test_a_sampled_remote_parent_is_recorded_whatever_the_ratio() -> None:
    @tracekit.trace
    def handler() -> None:
        with tracekit.start_span("child"):
            pass

    async def handle() -> None:
        with tracekit.continue_trace({"traceparent": REMOTE}), tracekit.start_span("async"):
            await asyncio.sleep(0)

    with capture(sampling_ratio=0.0) as captured:
        with tracekit.continue_trace({"traceparent": REMOTE}):
            handler()
            assert wsgi_call(hello) == ("200 OK", b"hi")  # a nested request, recorded too
        asyncio.run(handle())
        with tracekit.start_span("own root"):  # sampled out as before
            tracekit.trace(lambda: None)()
    assert [(r["trace_id"], r["name"], len(r["spans"])) for r in captured.traces] == [
        (REMOTE_TRACE, "handler", 2),
        (REMOTE_TRACE, "POST /hello", 1),
        (REMOTE_TRACE, "async", 1),
    ]
    with capture(sampling_ratio=0.5) as half:
        for _ in range(20):
            with tracekit.continue_trace({"traceparent": REMOTE}), tracekit.start_span("r"):
                pass
    assert len(half.traces) == 20


def hello(environ: Any, start_response: Any) -> Any:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hi"]


# -- outgoing requests of the SDKs ----------------------------------------------------


def sent(server: FakeProviderServer) -> list[str | None]:
    found = []
    for request in server.requests:
        headers = {k.lower(): v for k, v in request["headers"].items()}
        found.append(headers.get("traceparent"))
    server.requests.clear()
    return found


def llm_headers(captured: Capture) -> list[str]:
    return [
        format_traceparent(r["trace_id"], s["span_id"])
        for r in captured.traces
        for s in r["spans"]
        if s["span_type"] == "CHAT_MODEL"
    ]


@pytest.fixture
def openai_traced(captured: Capture, integrations: Callable[..., None]) -> Any:
    openai = pytest.importorskip("openai")
    integrations("openai")
    return openai


def test_openai_requests_carry_the_llm_span(
    openai_traced: Any, captured: Capture, server: FakeProviderServer
) -> None:
    client = openai_traced.OpenAI(api_key="t", base_url=server.base_url + "/v1", max_retries=0)
    aclient = openai_traced.AsyncOpenAI(
        api_key="t", base_url=server.base_url + "/v1", max_retries=0
    )
    extra = {"X-Mine": "1"}
    server.requests.clear()
    with tracekit.start_span("app"):
        client.chat.completions.create(model="m", messages=MESSAGES, extra_headers=extra)
        list(client.chat.completions.create(model="m", messages=MESSAGES, stream=True))
        asyncio.run(aclient.chat.completions.create(model="m", messages=MESSAGES))
        client.responses.create(model="m", input="hi")
    assert extra == {"X-Mine": "1"}  # the caller's dict is left alone
    headers = sent(server)
    assert headers == llm_headers(captured)
    assert len(headers) == 4


def test_sdk_requests_follow_the_callers_sampling_decision(
    openai_traced: Any, server: FakeProviderServer
) -> None:
    client = openai_traced.OpenAI(api_key="t", base_url=server.base_url + "/v1", max_retries=0)
    server.requests.clear()
    with capture(sampling_ratio=0.0) as captured:
        with tracekit.continue_trace({"traceparent": UNSAMPLED}):
            client.chat.completions.create(model="m", messages=MESSAGES)
        assert captured.traces == []
        with tracekit.continue_trace({"traceparent": REMOTE}):
            client.chat.completions.create(model="m", messages=MESSAGES)
        client.chat.completions.create(model="m", messages=MESSAGES)  # sampled out here
    (record,) = captured.traces
    (span,) = record["spans"]
    assert (record["trace_id"], span["parent_id"]) == (REMOTE_TRACE, REMOTE_SPAN)
    # Under an unsampled caller: its traceparent goes on, flags 00, so a gateway that
    # traces drops the trace too; recorded: flags 01; sampled out here (no caller): none.
    assert sent(server) == [UNSAMPLED, format_traceparent(REMOTE_TRACE, span["span_id"]), None]


def test_unsampled_caller_reaches_every_sdk(server: FakeProviderServer) -> None:
    """The 00 decision reaches the gateway from each SDK, sync and async, streams too."""
    pytest.importorskip("anthropic")
    pytest.importorskip("google.genai")
    import anthropic
    import openai
    from google import genai
    from google.genai import types

    from tracekit.integrations.anthropic import integration as anthropic_integration
    from tracekit.integrations.gemini import integration as gemini_integration
    from tracekit.integrations.openai import integration as openai_integration

    tracekit.openai.autolog()
    tracekit.anthropic.autolog()
    tracekit.gemini.autolog()
    try:
        oai = openai.OpenAI(api_key="t", base_url=server.base_url + "/v1", max_retries=0)
        ant = anthropic.Anthropic(api_key="t", base_url=server.base_url, max_retries=0)
        gem = genai.Client(
            api_key="k",
            http_options=types.HttpOptions(base_url=server.base_url, api_version="v1beta"),
        )
        server.requests.clear()
        with capture() as captured, tracekit.continue_trace({"traceparent": UNSAMPLED}):
            oai.chat.completions.create(model="m", messages=MESSAGES)
            list(oai.chat.completions.create(model="m", messages=MESSAGES, stream=True))
            ant.messages.create(model="c", max_tokens=5, messages=MESSAGES)
            with ant.messages.stream(model="c", max_tokens=5, messages=MESSAGES) as stream:
                stream.until_done()
            gem.models.generate_content(model="g", contents="hi")
            list(gem.models.generate_content_stream(model="g", contents="hi"))
    finally:
        for integration in (openai_integration, anthropic_integration, gemini_integration):
            integration.revert()
    assert captured.traces == []
    assert sent(server) == [UNSAMPLED] * 6


def test_user_traceparent_wins(
    openai_traced: Any, captured: Capture, server: FakeProviderServer
) -> None:
    mine = f"00-{'a' * 32}-{'b' * 16}-01"
    client = openai_traced.OpenAI(api_key="t", base_url=server.base_url + "/v1", max_retries=0)
    server.requests.clear()
    client.chat.completions.create(
        model="m", messages=MESSAGES, extra_headers={"Traceparent": mine}
    )
    defaults = openai_traced.OpenAI(
        api_key="t",
        base_url=server.base_url + "/v1",
        max_retries=0,
        default_headers={"traceparent": mine},
    )
    defaults.chat.completions.create(model="m", messages=MESSAGES)
    assert sent(server) == [mine, mine]


def test_propagation_can_be_turned_off(openai_traced: Any, server: FakeProviderServer) -> None:
    client = openai_traced.OpenAI(api_key="t", base_url=server.base_url + "/v1", max_retries=0)
    server.requests.clear()
    with capture(propagate_context=False) as captured:
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert len(spans(captured)) == 1
    assert sent(server) == [None]
    assert _config.from_env({"TRACEKIT_PROPAGATE_CONTEXT": "false"}).propagate_context is False
    assert _config.from_env({}).propagate_context is True


def test_anthropic_requests_carry_the_llm_span(
    captured: Capture, server: FakeProviderServer
) -> None:
    anthropic = pytest.importorskip("anthropic")
    from tracekit.integrations.anthropic import integration

    tracekit.anthropic.autolog()
    try:
        client = anthropic.Anthropic(api_key="t", base_url=server.base_url, max_retries=0)
        server.requests.clear()
        client.messages.create(model="c", max_tokens=5, messages=MESSAGES)
        list(client.messages.create(model="c", max_tokens=5, messages=MESSAGES, stream=True))
    finally:
        integration.revert()
    assert sent(server) == llm_headers(captured)


@pytest.fixture
def anthropic_traced(captured: Capture, integrations: Callable[..., None]) -> Any:
    anthropic = pytest.importorskip("anthropic")
    integrations("anthropic")
    return anthropic


def test_anthropic_stream_helper_carries_the_llm_span(
    anthropic_traced: Any, captured: Capture, server: FakeProviderServer
) -> None:
    client = anthropic_traced.Anthropic(api_key="t", base_url=server.base_url, max_retries=0)
    aclient = anthropic_traced.AsyncAnthropic(api_key="t", base_url=server.base_url, max_retries=0)
    extra = {"X-Mine": "1"}
    kwargs: dict[str, Any] = {"model": "c", "max_tokens": 5, "messages": MESSAGES}

    async def async_helpers() -> list[str]:
        texts = []
        async with aclient.messages.stream(**kwargs) as stream:
            texts.append(await stream.get_final_text())
        async with aclient.beta.messages.stream(**kwargs) as stream:
            texts += [text async for text in stream.text_stream]
        return texts

    server.requests.clear()
    with tracekit.start_span("app"):
        with client.messages.stream(**kwargs, extra_headers=extra) as stream:
            text = stream.get_final_text()
        with client.beta.messages.stream(**kwargs) as stream:
            assert list(stream.text_stream)
        texts = asyncio.run(async_helpers())
    assert extra == {"X-Mine": "1"}  # the caller's dict is left alone
    assert text
    assert all(texts)
    first = {k.lower(): v for k, v in server.requests[0]["headers"].items()}
    assert first["x-mine"] == "1"
    assert first["x-stainless-helper-method"] == "stream"  # the SDK's own headers too
    headers = sent(server)
    assert len(headers) == 4
    assert headers == llm_headers(captured)


def test_anthropic_stream_helper_keeps_the_callers_traceparent(
    anthropic_traced: Any, captured: Capture, server: FakeProviderServer
) -> None:
    mine = f"00-{'a' * 32}-{'b' * 16}-01"
    kwargs: dict[str, Any] = {"model": "c", "max_tokens": 5, "messages": MESSAGES}
    client = anthropic_traced.Anthropic(api_key="t", base_url=server.base_url, max_retries=0)
    defaults = anthropic_traced.Anthropic(
        api_key="t", base_url=server.base_url, max_retries=0, default_headers={"traceparent": mine}
    )
    server.requests.clear()
    with client.messages.stream(**kwargs, extra_headers={"TraceParent": mine}) as stream:
        stream.get_final_message()
    with defaults.messages.stream(**kwargs) as stream:
        stream.get_final_message()
    assert sent(server) == [mine, mine]
    with capture(propagate_context=False) as off, client.messages.stream(**kwargs) as stream:
        stream.get_final_message()
    assert len(spans(off)) == 1
    assert sent(server) == [None]


def test_anthropic_stream_helper_never_entered(
    anthropic_traced: Any, captured: Capture, server: FakeProviderServer
) -> None:
    client = anthropic_traced.Anthropic(api_key="t", base_url=server.base_url, max_retries=0)
    server.requests.clear()
    manager = client.messages.stream(model="c", max_tokens=5, messages=MESSAGES)
    del manager
    gc.collect()
    tracekit.flush()
    assert server.requests == []
    (span,) = spans(captured)
    assert span["attributes"]["tracekit.stream.ended_by"] == "never_entered"


def test_openai_and_anthropic_carry_it_in_extra_headers(
    captured: Capture, server: FakeProviderServer
) -> None:
    """OpenAI and Anthropic calls hand the traceparent to the SDK in the call's
    `extra_headers` (merged with the caller's, in a new dict); the client's request
    builder (a private method) is not patched."""
    anthropic = pytest.importorskip("anthropic")
    import openai
    from anthropic import _base_client as anthropic_base
    from openai import _base_client as openai_base

    from tracekit.integrations.anthropic import integration as anthropic_integration
    from tracekit.integrations.openai import integration as openai_integration

    tracekit.openai.autolog()
    tracekit.anthropic.autolog()
    bases = (openai_base.BaseClient, anthropic_base.BaseClient)
    extra = {"X-Mine": "1"}
    try:
        unpatched = [not hasattr(b.__dict__["_build_request"], "__wrapped__") for b in bases]
        oai = openai.OpenAI(api_key="t", base_url=server.base_url + "/v1", max_retries=0)
        ant = anthropic.Anthropic(api_key="t", base_url=server.base_url, max_retries=0)
        server.requests.clear()
        with tracekit.start_span("app"):
            oai.chat.completions.create(model="m", messages=MESSAGES, extra_headers=extra)
            list(oai.chat.completions.create(model="m", messages=MESSAGES, stream=True))
            ant.messages.create(model="c", max_tokens=5, messages=MESSAGES)
        first = {k.lower(): v for k, v in server.requests[0]["headers"].items()}
        headers = sent(server)
    finally:
        openai_integration.revert()
        anthropic_integration.revert()
    assert unpatched == [True, True]
    assert extra == {"X-Mine": "1"}  # the caller's dict is left alone
    assert first["x-mine"] == "1"
    assert headers == llm_headers(captured)
    assert len(headers) == 3


def test_a_retried_request_carries_the_llm_span_again(
    openai_traced: Any, captured: Capture
) -> None:
    """The SDK builds its request again for a retry, the call's span still current."""
    import httpx2

    seen: list[str | None] = []

    def respond(request: Any) -> Any:
        seen.append(request.headers.get("traceparent"))
        if len(seen) == 1:  # retried at once: the SDK honours retry-after-ms
            return httpx2.Response(500, headers={"retry-after-ms": "1"}, json={"error": {}})
        return httpx2.Response(200, json=CHAT_COMPLETION)

    client = openai_traced.OpenAI(
        api_key="t",
        base_url="http://openai.invalid/v1",
        max_retries=1,
        http_client=httpx2.Client(transport=httpx2.MockTransport(respond)),
    )
    with tracekit.start_span("app"):
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert seen == llm_headers(captured) * 2


def test_azure_openai_requests_carry_the_llm_span(
    openai_traced: Any, captured: Capture, server: FakeProviderServer
) -> None:
    """Azure's client builds its request in an override that calls the base one."""
    client = openai_traced.AzureOpenAI(
        api_key="t", azure_endpoint=server.base_url, api_version="2024-10-21", max_retries=0
    )
    server.requests.clear()
    client.chat.completions.create(model="m", messages=MESSAGES)
    assert server.requests[0]["path"].startswith("/openai/deployments/m/chat/completions")
    headers = sent(server)
    assert headers == llm_headers(captured)
    assert len(headers) == 1


def test_the_callers_own_traceparent_settings_win(
    openai_traced: Any, captured: Capture, server: FakeProviderServer
) -> None:
    """`Omit()` in a call's `extra_headers` sends none; tracekit's own header of an
    outer span, passed on by the app, is replaced by the LLM span's (as before)."""
    client = openai_traced.OpenAI(api_key="t", base_url=server.base_url + "/v1", max_retries=0)
    server.requests.clear()
    with tracekit.start_span("app"):
        client.chat.completions.create(
            model="m", messages=MESSAGES, extra_headers={"traceparent": openai_traced.Omit()}
        )
        client.chat.completions.create(
            model="m", messages=MESSAGES, extra_headers=tracekit.get_tracing_headers()
        )
    assert sent(server) == [None, llm_headers(captured)[1]]


def test_an_untraced_call_after_a_traced_one_sends_no_traceparent(
    openai_traced: Any, captured: Capture, server: FakeProviderServer
) -> None:
    """The traced call's header is kept for the request built during that call only."""
    client = openai_traced.OpenAI(api_key="t", base_url=server.base_url + "/v1", max_retries=0)
    aclient = openai_traced.AsyncOpenAI(
        api_key="t", base_url=server.base_url + "/v1", max_retries=0
    )
    server.requests.clear()
    with tracekit.start_span("app"):
        client.chat.completions.create(model="m", messages=MESSAGES)
        tracekit.openai.autolog(disable=True)
        client.chat.completions.create(model="m", messages=MESSAGES)
        asyncio.run(aclient.chat.completions.create(model="m", messages=MESSAGES))
    assert sent(server) == [*llm_headers(captured), None, None]


def test_gemini_requests_carry_the_llm_span(captured: Capture, server: FakeProviderServer) -> None:
    pytest.importorskip("google.genai")
    from google import genai
    from google.genai import types

    from tracekit.integrations.gemini import integration

    tracekit.gemini.autolog()
    mine = f"00-{'c' * 32}-{'d' * 16}-01"
    config = types.GenerateContentConfig(
        temperature=0.5, http_options=types.HttpOptions(headers={"x-mine": "1"})
    )
    try:
        client = genai.Client(
            api_key="k",
            http_options=types.HttpOptions(base_url=server.base_url, api_version="v1beta"),
        )
        server.requests.clear()
        client.models.generate_content(model="g", contents="hi")
        client.models.generate_content(model="g", contents="hi", config=config)
        list(client.models.generate_content_stream(model="g", contents="hi", config={"seed": 1}))
        ours = sent(server)
        client.models.generate_content(
            model="g", contents="hi", config={"http_options": {"headers": {"traceparent": mine}}}
        )
        assert sent(server) == [mine]
    finally:
        integration.revert()
    assert ours == llm_headers(captured)[:3]
    assert config.http_options is not None
    assert config.http_options.headers == {"x-mine": "1"}
    # Per-call http_options are never recorded, ours included.
    for span in spans(captured):
        assert "http_options" not in json.dumps(span["inputs"]).replace('"http_options": null', "")


def test_gemini_streams_carry_their_span_when_read(
    captured: Capture, server: FakeProviderServer
) -> None:
    """A Gemini stream's request is built when the stream is read, after the call
    returned: it still carries the stream's span (sync and async, read in another
    order than made), and its config is left as the caller gave it."""
    pytest.importorskip("google.genai")
    import asyncio

    from google import genai
    from google.genai import types

    from tracekit.integrations.gemini import integration

    tracekit.gemini.autolog()
    config: dict[str, Any] = {"seed": 1}
    try:
        client = genai.Client(
            api_key="k",
            http_options=types.HttpOptions(base_url=server.base_url, api_version="v1beta"),
        )
        server.requests.clear()
        first = client.models.generate_content_stream(model="g", contents="hi", config=config)
        second = client.models.generate_content_stream(model="g", contents="hi")
        with tracekit.start_span("between"):
            list(second)
        list(first)

        async def read() -> None:
            stream = await client.aio.models.generate_content_stream(model="g", contents="hi")
            async for _chunk in stream:
                pass

        asyncio.run(read())
        headers = sent(server)
    finally:
        integration.revert()
    expected = llm_headers(captured)
    assert len(expected) == 3
    assert sorted(h or "" for h in headers) == sorted(expected)
    assert config == {"seed": 1}


def test_gemini_without_the_request_hook_uses_the_config(
    captured: Capture, server: FakeProviderServer
) -> None:
    """Non-streamed Gemini calls put the traceparent on the request the SDK builds
    (BaseApiClient._build_request, a private method). Where that method is not
    patched (another google-genai version), the call's config carries it instead."""
    pytest.importorskip("google.genai")
    from google import genai
    from google.genai import _api_client, types

    from tracekit.integrations.gemini import integration

    tracekit.gemini.autolog()
    patched = _api_client.BaseApiClient.__dict__["_build_request"]
    try:
        _api_client.BaseApiClient._build_request = patched.__wrapped__  # as if never patched
        client = genai.Client(
            api_key="k",
            http_options=types.HttpOptions(base_url=server.base_url, api_version="v1beta"),
        )
        server.requests.clear()
        client.models.generate_content(model="g", contents="hi")
        headers = sent(server)
    finally:
        _api_client.BaseApiClient._build_request = patched
        integration.revert()
    assert headers == llm_headers(captured)
    assert len(headers) == 1


# -- the middleware, in process -----------------------------------------------------------


def wsgi_call(app: Any, path: str = "/hello", headers: dict[str, str] | None = None) -> Any:
    from wsgiref.util import setup_testing_defaults

    environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": "POST"}
    for key, value in (headers or {}).items():
        environ["HTTP_" + key.upper().replace("-", "_")] = value
    setup_testing_defaults(environ)
    seen: list[str] = []
    result = tracekit.wsgi.TracekitMiddleware(app)(environ, lambda s, h, e=None: seen.append(s))
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close:
            close()
    return seen[0], body


def test_wsgi_middleware(captured: Capture) -> None:
    def app(environ: Any, start_response: Any) -> Any:
        tracekit.get_current_span().set_attribute("http.route", "/{name}")  # type: ignore[union-attr]
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body() -> Iterator[bytes]:
            with tracekit.start_span("streamed"):
                yield b"a"
            yield b"b"

        return body()

    assert wsgi_call(app, headers={"traceparent": REMOTE}) == ("200 OK", b"ab")
    record = captured.single()
    assert record["trace_id"] == REMOTE_TRACE
    request, streamed = record["spans"]
    assert (
        request["name"],
        request["span_type"],
        request["parent_id"],
        request["status"]["code"],
    ) == (
        "POST /{name}",
        "CHAIN",
        REMOTE_SPAN,
        "OK",
    )
    assert request["attributes"] == {
        "http.request.method": "POST",
        "url.path": "/hello",
        "http.route": "/{name}",
        "http.response.status_code": 200,
    }
    assert streamed["parent_id"] == request["span_id"]


def test_wsgi_middleware_errors(captured: Capture) -> None:
    def failing(environ: Any, start_response: Any) -> Any:
        start_response("503 Service Unavailable", [])
        return [b"down"]

    def raising(environ: Any, start_response: Any) -> Any:
        raise RuntimeError("boom")

    assert wsgi_call(failing) == ("503 Service Unavailable", b"down")
    with pytest.raises(RuntimeError, match="boom"):
        wsgi_call(raising)
    first, second = spans(captured)
    assert (first["name"], first["status"]["code"], first["parent_id"]) == (
        "POST /hello",
        "ERROR",
        None,
    )
    assert first["attributes"]["http.response.status_code"] == 503
    assert second["status"]["code"] == "ERROR"
    assert second["events"][0]["attributes"]["exception.type"] == "RuntimeError"


async def asgi_call(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await tracekit.asgi.TracekitMiddleware(app)(scope, receive, send)
    return messages


class Route:
    path = "/items/{item_id}"


def test_asgi_middleware(captured: Capture) -> None:
    ended_with_body: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await send({"type": "lifespan.startup.complete"})
            return
        scope["route"] = Route()  # as FastAPI's router does
        await send({"type": "http.response.start", "status": 200, "headers": []})
        with tracekit.start_span("chunk"):
            await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b"})
        ended_with_body.append(tracekit.get_current_span() is not None)

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/items/1",
        "headers": [(b"traceparent", REMOTE.encode())],
    }
    messages = asyncio.run(asgi_call(app, scope))
    assert [m["type"] for m in messages] == ["http.response.start"] + ["http.response.body"] * 2
    assert asyncio.run(asgi_call(app, {"type": "lifespan"})) == [
        {"type": "lifespan.startup.complete"}
    ]
    record = captured.single()
    assert record["trace_id"] == REMOTE_TRACE
    request, chunk = record["spans"]
    assert (request["name"], request["parent_id"], request["status"]["code"]) == (
        "GET /items/{item_id}",
        REMOTE_SPAN,
        "OK",
    )
    assert request["attributes"] == {
        "http.request.method": "GET",
        "url.path": "/items/1",
        "http.route": "/items/{item_id}",
        "http.response.status_code": 200,
    }
    assert chunk["parent_id"] == request["span_id"]
    # The span ended with the last body message, before the app returned.
    assert request["end_time_ns"] <= chunk["end_time_ns"] + 2_000_000


def test_asgi_middleware_errors(captured: Capture) -> None:
    async def failing(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b"no"})

    async def raising(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("bad")

    scope = {"type": "http", "method": "GET", "path": "/x", "headers": []}
    asyncio.run(asgi_call(failing, scope))
    with pytest.raises(ValueError, match="bad"):
        asyncio.run(asgi_call(raising, dict(scope)))
    first, second = spans(captured)
    assert (first["name"], first["status"]["code"], first["parent_id"]) == ("GET /x", "ERROR", None)
    assert first["attributes"]["http.response.status_code"] == 500
    assert second["status"]["code"] == "ERROR"


def test_middleware_follows_the_callers_sampling_decision() -> None:
    seen: list[dict[str, str]] = []

    @tracekit.trace
    def work() -> None:
        seen.append(tracekit.get_tracing_headers())

    def wsgi_app(environ: Any, start_response: Any) -> Any:
        work()
        start_response("200 OK", [])

        def body() -> Iterator[bytes]:
            work()  # the body is read after the app returned
            yield b"ok"

        return body()

    async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        work()
        await send({"type": "http.response.body", "body": b"ok"})

    def asgi_scope(traceparent: str) -> dict[str, Any]:
        headers = [(b"traceparent", traceparent.encode())]
        return {"type": "http", "method": "GET", "path": "/a", "headers": headers}

    with capture(sampling_ratio=0.0) as captured:
        assert wsgi_call(wsgi_app, headers={"traceparent": UNSAMPLED}) == ("200 OK", b"ok")
        asyncio.run(asgi_call(asgi_app, asgi_scope(UNSAMPLED)))
        assert captured.traces == []
        assert seen == [{"traceparent": UNSAMPLED}] * 3
        seen.clear()
        assert wsgi_call(wsgi_app, headers={"traceparent": REMOTE}) == ("200 OK", b"ok")
        asyncio.run(asgi_call(asgi_app, asgi_scope(REMOTE)))
        wsgi_call(wsgi_app)  # no caller: the local ratio (0) decides
    wsgi_record, asgi_record = captured.traces
    assert [s["name"] for s in wsgi_record["spans"]] == ["POST /hello", "work", "work"]
    assert [s["name"] for s in asgi_record["spans"]] == ["GET /a", "work"]
    for record in (wsgi_record, asgi_record):
        assert (record["trace_id"], record["spans"][0]["parent_id"]) == (REMOTE_TRACE, REMOTE_SPAN)
    # Each call names its own recorded span, flags 01; a sampled-out one sends nothing.
    assert [h.get("traceparent", "")[-2:] for h in seen] == ["01", "01", "01", "", ""]


# -- OpenTelemetry -----------------------------------------------------------------------


def test_root_spans_join_an_active_opentelemetry_span(captured: Capture) -> None:
    otel = pytest.importorskip("opentelemetry.trace", reason="opentelemetry-api not installed")

    class Recording(otel.NonRecordingSpan):  # type: ignore[misc]
        def is_recording(self) -> bool:
            return True

    context = otel.SpanContext(int(REMOTE_TRACE, 16), int(REMOTE_SPAN, 16), is_remote=False)
    with otel.use_span(Recording(context)):
        with tracekit.start_span("joined"):
            pass
        with capture(otel_context=False) as off, tracekit.start_span("own"):
            pass
    with otel.use_span(otel.NonRecordingSpan(context)), tracekit.start_span("not recording"):
        pass
    assert off.single()["trace_id"] != REMOTE_TRACE
    first, second = captured.traces
    assert (first["trace_id"], first["spans"][0]["parent_id"]) == (REMOTE_TRACE, REMOTE_SPAN)
    assert second["spans"][0]["parent_id"] is None


def test_opentelemetry_sdk_span(captured: Capture) -> None:
    sdk = pytest.importorskip(
        "opentelemetry.sdk.trace", reason="opentelemetry-sdk not installed (dev dependency)"
    )
    tracer = sdk.TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("otel") as otel_span, tracekit.start_span("llm"):
        pass
    context = otel_span.get_span_context()
    record = captured.single()
    assert record["trace_id"] == f"{context.trace_id:032x}"
    assert record["spans"][0]["parent_id"] == f"{context.span_id:016x}"


def test_opentelemetry_sdk_span_decides_sampling() -> None:
    sdk = pytest.importorskip("opentelemetry.sdk.trace", reason="opentelemetry-sdk not installed")
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    recording = sdk.TracerProvider().get_tracer("test")
    with capture(sampling_ratio=0.0) as captured:
        with recording.start_as_current_span("otel"), tracekit.start_span("llm"):
            pass
        dropped = sdk.TracerProvider(sampler=ALWAYS_OFF).get_tracer("test")
        with dropped.start_as_current_span("otel"), tracekit.start_span("llm"):
            pass  # not recording: the local ratio decides, as before
    (record,) = captured.traces
    assert record["spans"][0]["parent_id"] is not None


def test_traceparent_round_trips_through_opentelemetry() -> None:
    """tracekit's headers read by OpenTelemetry's propagator and the other way round,
    the sampled flag included."""
    sdk = pytest.importorskip("opentelemetry.sdk.trace", reason="opentelemetry-sdk not installed")
    from opentelemetry import context as otel_context
    from opentelemetry import trace as otel
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    propagator = TraceContextTextMapPropagator()
    tracer = sdk.TracerProvider().get_tracer("test")
    unsampled_tracer = sdk.TracerProvider(sampler=ALWAYS_OFF).get_tracer("test")
    with capture(otel_context=False) as captured:
        # Out: an OpenTelemetry service continues our span.
        with tracekit.start_span("client") as client:
            carrier = tracekit.get_tracing_headers()
        remote = otel.get_current_span(propagator.extract(carrier)).get_span_context()
        assert (remote.trace_id, remote.span_id) == (
            int(client.trace_id, 16),
            int(client.span_id, 16),
        )
        assert remote.trace_flags.sampled
        with tracer.start_as_current_span("service", context=propagator.extract(carrier)) as span:
            assert span.parent is not None
            assert span.parent.span_id == remote.span_id
        # In: our service continues OpenTelemetry's span (sampled, then not).
        callers = []
        for source in (tracer, unsampled_tracer):
            with source.start_as_current_span("caller") as caller:
                incoming: dict[str, str] = {}
                propagator.inject(incoming)
            callers.append(caller.get_span_context())
            token = otel_context.attach(otel_context.Context())  # the caller is remote now
            try:
                with tracekit.continue_trace(incoming), tracekit.start_span("handler"):
                    onward = tracekit.get_tracing_headers()
            finally:
                otel_context.detach(token)
            passed_on = otel.get_current_span(propagator.extract(onward)).get_span_context()
            assert passed_on.trace_id == caller.get_span_context().trace_id
            assert passed_on.trace_flags.sampled == caller.get_span_context().trace_flags.sampled
    assert not callers[1].trace_flags.sampled
    client_record, handler_record = captured.traces  # nothing under the unsampled caller
    assert client_record["spans"][0]["name"] == "client"
    handler = handler_record["spans"][0]
    assert (handler_record["trace_id"], handler["name"], handler["parent_id"]) == (
        f"{callers[0].trace_id:032x}",
        "handler",
        f"{callers[0].span_id:016x}",
    )


def test_import_tracekit_does_not_import_opentelemetry() -> None:
    code = "import sys, tracekit; print(any(m.startswith('opentelemetry') for m in sys.modules))"
    out = run_python(code)
    assert out.stdout.strip() == "False"


# -- across processes ---------------------------------------------------------------------

WSGI_SERVER = """
import sys, tracekit, tracekit.wsgi
from wsgiref.simple_server import make_server, WSGIRequestHandler

@tracekit.trace(span_type="LLM")
def answer():
    return "hi"

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [answer().encode()]

class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass

server = make_server("127.0.0.1", 0, tracekit.wsgi.TracekitMiddleware(app), handler_class=Quiet)
print(server.server_port, flush=True)
server.handle_request()
tracekit.flush()
"""

# A minimal HTTP/1.1-over-asyncio ASGI server: one request per connection, then exit.
ASGI_SERVER = """
import asyncio, tracekit, tracekit.asgi

@tracekit.trace(span_type="LLM")
async def answer():
    return "hi"

async def app(scope, receive, send):
    await receive()
    headers = [(b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": (await answer()).encode()})

async def handle(reader, writer, done):
    head = (await reader.readuntil(b"\\r\\n\\r\\n")).decode("latin-1").split("\\r\\n")
    method, target, _ = head[0].split(" ")
    headers = [tuple(p.strip().lower().encode() if i == 0 else p.strip().encode()
                     for i, p in enumerate(line.split(":", 1))) for line in head[1:] if line]
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
    scope = {"type": "http", "method": method, "path": target.split("?")[0], "headers": headers}
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
tracekit.flush()
"""

CLIENT = """
import sys, urllib.request, tracekit

with tracekit.start_span("client", span_type="AGENT"):
    request = urllib.request.Request(sys.argv[1], headers=tracekit.get_tracing_headers())
    print(urllib.request.urlopen(request, timeout=10).read().decode())
tracekit.flush()
"""


@pytest.mark.parametrize("server_code", [WSGI_SERVER, ASGI_SERVER], ids=["wsgi", "asgi"])
def test_one_trace_across_processes(tmp_path: Path, server_code: str) -> None:
    store = tmp_path / "store"
    env = {**os.environ, "TRACEKIT_TRACKING_URI": str(store)}
    env.pop("TRACEKIT_TESTING", None)
    service = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(server_code)],
        env={**env, "TRACEKIT_SERVICE_NAME": "service"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert service.stdout is not None
        port = int(service.stdout.readline())
        client = subprocess.run(
            [sys.executable, "-c", CLIENT, f"http://127.0.0.1:{port}/ask"],
            env={**env, "TRACEKIT_SERVICE_NAME": "client"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert client.returncode == 0, client.stderr
        assert client.stdout.strip() == "hi"
        assert service.wait(timeout=30) == 0
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
    records = list(iter_records(store))
    by_service = {r["resource"]["service.name"]: r for r in records}
    assert sorted(by_service) == ["client", "service"], records
    client_record, service_record = by_service["client"], by_service["service"]
    assert client_record["trace_id"] == service_record["trace_id"]
    (client_span,) = client_record["spans"]
    request, answer = service_record["spans"]
    assert client_span["parent_id"] is None
    assert (request["name"], request["parent_id"]) == ("GET /ask", client_span["span_id"])
    assert (answer["name"], answer["parent_id"]) == ("answer", request["span_id"])
    assert request["attributes"]["http.response.status_code"] == 200
