"""The OpenAI integration's surface: call forms, clients, switches, concurrency, privacy.

Against `FakeProviderServer` (real loopback sockets, the real SDK): the
`with_raw_response` / `with_streaming_response` forms, `parse`, embeddings,
legacy completions, Azure, `autolog()` before and after the client, the
switches that turn recording off, content capture off, 50 concurrent async
calls and a thread-pool fan-out nested under the caller's span, secrets kept
out of traces, the request and response left untouched, and SDK errors
reaching the caller unchanged.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

openai = pytest.importorskip("openai")
pydantic = pytest.importorskip("pydantic")

from tests.child import run_python  # noqa: E402
from tests.trace_checks import only_span  # noqa: E402

import tracekit  # noqa: E402
import tracekit.openai  # noqa: E402
from tracekit._fake_server import FakeProviderServer  # noqa: E402
from tracekit.integrations.openai import integration  # noqa: E402
from tracekit.testing import Capture, capture  # noqa: E402

PROVIDER = "openai"  # the `traced` fixture autologs it (tests/conftest.py)

MODEL = "fake-mini"
MESSAGES = [{"role": "user", "content": "hello there"}]
ANSWER = "You asked: hello there"
CITY = {"city": "Paris", "country": "France"}


class City(pydantic.BaseModel):  # type: ignore[misc]
    city: str
    country: str


class ScriptedServer(FakeProviderServer):
    """The fake server, plus: `json: ...` questions get CITY as JSON, `slow: ...` ones wait."""

    def answer(self, question: str, messages: Any) -> str:
        if question.startswith("json:"):
            return json.dumps(CITY)
        if question.startswith("slow:"):
            time.sleep(0.5)
        return super().answer(question, messages)


SERVER = ScriptedServer  # the `server` fixture runs it (tests/conftest.py)


@pytest.fixture
def patched(integrations: Callable[..., None]) -> None:
    """Autolog on, for tests that set up their own capture."""
    integrations(PROVIDER)


def sync_client(server: FakeProviderServer, **kwargs: Any) -> Any:
    return openai.OpenAI(api_key="test", base_url=server.base_url + "/v1", max_retries=0, **kwargs)


def async_client(server: FakeProviderServer, **kwargs: Any) -> Any:
    return openai.AsyncOpenAI(
        api_key="test", base_url=server.base_url + "/v1", max_retries=0, **kwargs
    )


def all_spans(captured: Capture) -> list[dict[str, Any]]:
    return [span for trace in captured.traces for span in trace["spans"]]


def chat(client: Any, content: str = "hello there", **kwargs: Any) -> Any:
    return client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": content}], **kwargs
    )


def fake_chat_usage(completion: int = 4) -> dict[str, int]:
    # The fake server counts whitespace-separated words of each JSON-encoded message.
    prompt = len(json.dumps(MESSAGES[0]).split())
    return {
        "input_tokens": prompt,
        "output_tokens": completion,
        "total_tokens": prompt + completion,
        "cache_read_input_tokens": 0,
        "reasoning_tokens": 0,
    }


# -- raw and streamed-response forms ---------------------------------------------------


def test_with_raw_response(traced: Capture, server: ScriptedServer) -> None:
    with sync_client(server) as client:
        raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
        assert raw.headers["x-request-id"] == "req_fake"
        assert raw.http_request.url.path == "/v1/chat/completions"
        completion = raw.parse()
    assert isinstance(completion, openai.types.chat.ChatCompletion)
    assert completion.choices[0].message.content == ANSWER

    span = only_span(traced)
    assert span["name"] == f"chat {MODEL}"
    assert span["status"]["code"] == "OK"
    assert span["inputs"] == {"model": MODEL, "messages": MESSAGES}  # no extra_headers
    assert span["outputs"]["choices"][0]["message"]["content"] == ANSWER
    assert span["token_usage"] == fake_chat_usage()
    assert span["attributes"]["gen_ai.response.id"] == "chatcmpl-fake"


def test_async_with_raw_response(traced: Capture, server: ScriptedServer) -> None:
    async def main() -> Any:
        async with async_client(server) as client:
            raw = await client.responses.with_raw_response.create(model=MODEL, input="hi")
            assert raw.headers["x-request-id"] == "req_fake"
            return raw.parse()

    response = asyncio.run(main())
    assert response.output_text == "You asked: hi"
    span = only_span(traced)
    assert span["outputs"]["output"][0]["content"][0]["text"] == "You asked: hi"
    assert span["token_usage"]["output_tokens"] == 3


def test_with_raw_response_stream(traced: Capture, server: ScriptedServer) -> None:
    with sync_client(server) as client:
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=MESSAGES, stream=True
        )
        assert raw.headers["content-type"] == "text/event-stream"
        chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    span = only_span(traced)
    assert span["name"] == f"chat {MODEL}"
    assert span["status"]["code"] == "OK"


def test_with_streaming_response(traced: Capture, server: ScriptedServer) -> None:
    with (
        sync_client(server) as client,
        client.chat.completions.with_streaming_response.create(
            model=MODEL, messages=MESSAGES
        ) as response,
    ):
        assert response.headers["x-request-id"] == "req_fake"
        completion = response.parse()
    assert completion.choices[0].message.content == ANSWER
    span = only_span(traced)
    assert span["name"] == f"chat {MODEL}"
    assert span["status"]["code"] == "OK"


def test_async_with_streaming_response(traced: Capture, server: ScriptedServer) -> None:
    async def main() -> Any:
        async with (
            async_client(server) as client,
            client.embeddings.with_streaming_response.create(
                model="fake-embed", input="hello"
            ) as response,
        ):
            assert response.headers["x-request-id"] == "req_fake"
            return await response.parse()

    embedding = asyncio.run(main())
    assert len(embedding.data[0].embedding) == 8
    span = only_span(traced)
    assert span["name"] == "embeddings fake-embed"


# -- parse -----------------------------------------------------------------------------


def test_chat_completions_parse(traced: Capture, server: ScriptedServer) -> None:
    messages = [{"role": "user", "content": "json: where is the Louvre?"}]
    with sync_client(server) as client:
        completion = client.chat.completions.parse(
            model=MODEL, messages=messages, response_format=City
        )
    assert completion.choices[0].message.parsed == City(**CITY)
    body = server.requests[-1]["body"]
    assert body["response_format"]["type"] == "json_schema"

    span = only_span(traced)  # parse is one call: one span
    assert span["name"] == f"chat {MODEL}"
    assert span["span_type"] == "CHAT_MODEL"
    assert span["status"]["code"] == "OK"
    assert span["inputs"]["messages"] == messages
    message = span["outputs"]["choices"][0]["message"]
    assert json.loads(message["content"]) == CITY
    assert span["token_usage"]["output_tokens"] == 4


def test_async_chat_completions_parse(traced: Capture, server: ScriptedServer) -> None:
    async def main() -> Any:
        async with async_client(server) as client:
            return await client.chat.completions.parse(
                model=MODEL,
                messages=[{"role": "user", "content": "json: hi"}],
                response_format=City,
            )

    completion = asyncio.run(main())
    assert completion.choices[0].message.parsed == City(**CITY)
    span = only_span(traced)
    assert json.loads(span["outputs"]["choices"][0]["message"]["content"]) == CITY


def test_chat_completions_stream_helper_with_response_format(
    traced: Capture, server: ScriptedServer
) -> None:
    with (
        sync_client(server) as client,
        client.chat.completions.stream(
            model=MODEL,
            messages=[{"role": "user", "content": "json: hi"}],
            response_format=City,
        ) as stream,
    ):
        completion = stream.get_final_completion()
    assert completion.choices[0].message.parsed == City(**CITY)
    span = only_span(traced)
    assert json.loads(span["outputs"]["choices"][0]["message"]["content"]) == CITY


def test_responses_parse(traced: Capture, server: ScriptedServer) -> None:
    with sync_client(server) as client:
        response = client.responses.parse(model=MODEL, input="json: hi", text_format=City)
    assert response.output_parsed == City(**CITY)
    span = only_span(traced)
    assert span["name"] == f"chat {MODEL}"
    assert span["status"]["code"] == "OK"
    assert json.loads(span["outputs"]["output"][0]["content"][0]["text"]) == CITY
    assert span["token_usage"]["input_tokens"] == 2


# -- embeddings and legacy completions -------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_embeddings(traced: Capture, server: ScriptedServer, mode: str) -> None:
    kwargs = {"model": "fake-embed", "input": ["one two", "three"], "dimensions": 4}
    if mode == "sync":
        with sync_client(server) as client:
            result = client.embeddings.create(**kwargs)
    else:

        async def main() -> Any:
            async with async_client(server) as client:
                return await client.embeddings.create(**kwargs)

        result = asyncio.run(main())
    assert [len(item.embedding) for item in result.data] == [4, 4]

    span = only_span(traced)
    assert span["name"] == "embeddings fake-embed"
    assert span["span_type"] == "EMBEDDING"
    assert span["inputs"] == kwargs
    assert span["outputs"] == {"model": "fake-embed", "count": 2, "dimensions": 4}
    assert span["token_usage"] == {"input_tokens": 3, "output_tokens": 0, "total_tokens": 3}
    assert span["attributes"]["gen_ai.operation.name"] == "embeddings"
    assert span["attributes"]["gen_ai.embeddings.dimension.count"] == 4


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_legacy_completions(traced: Capture, server: ScriptedServer, mode: str) -> None:
    kwargs = {"model": "fake-instruct", "prompt": "Say hi", "max_tokens": 5}
    if mode == "sync":
        with sync_client(server) as client:
            result = client.completions.create(**kwargs)
    else:

        async def main() -> Any:
            async with async_client(server) as client:
                return await client.completions.create(**kwargs)

        result = asyncio.run(main())
    assert result.choices[0].text == "You asked: Say hi"

    span = only_span(traced)
    assert span["name"] == "text_completion fake-instruct"
    assert span["span_type"] == "LLM"
    assert span["status"] == {"code": "OK", "message": ""}
    assert span["inputs"] == kwargs
    assert span["outputs"]["choices"][0]["text"] == "You asked: Say hi"
    assert span["token_usage"] == {"input_tokens": 2, "output_tokens": 4, "total_tokens": 6}
    attributes = span["attributes"]
    assert attributes["gen_ai.operation.name"] == "text_completion"
    assert attributes["gen_ai.request.model"] == "fake-instruct"
    assert attributes["gen_ai.request.max_tokens"] == 5
    assert attributes["gen_ai.response.finish_reasons"] == ["stop"]


# -- Azure -----------------------------------------------------------------------------


def test_azure_openai(traced: Capture, server: ScriptedServer) -> None:
    with openai.AzureOpenAI(
        api_key="azure-key",
        api_version="2024-10-21",
        azure_endpoint=server.base_url,
        max_retries=0,
    ) as client:
        completion = client.chat.completions.create(model="my-deployment", messages=MESSAGES)
    assert completion.choices[0].message.content == ANSWER
    assert server.requests[-1]["path"] == (
        "/openai/deployments/my-deployment/chat/completions?api-version=2024-10-21"
    )

    span = only_span(traced)
    assert span["name"] == "chat my-deployment"
    attributes = span["attributes"]
    assert attributes["gen_ai.provider.name"] == "azure.ai.openai"
    assert attributes["server.address"] == "127.0.0.1"
    assert attributes["server.port"] == server.server_address[1]
    assert span["token_usage"] == fake_chat_usage()


def test_async_azure_openai_stream(traced: Capture, server: ScriptedServer) -> None:
    async def main() -> str:
        async with openai.AsyncAzureOpenAI(
            api_key="azure-key",
            api_version="2024-10-21",
            azure_endpoint=server.base_url,
            max_retries=0,
        ) as client:
            stream = await client.chat.completions.create(
                model="my-deployment", messages=MESSAGES, stream=True
            )
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    assert asyncio.run(main()) == ANSWER
    span = only_span(traced)
    assert span["attributes"]["gen_ai.provider.name"] == "azure.ai.openai"
    assert span["outputs"]["choices"][0]["message"]["content"] == ANSWER


# -- autolog and the switches ----------------------------------------------------------


def test_autolog_after_the_client_was_created(captured: Capture, server: ScriptedServer) -> None:
    with sync_client(server) as client:
        chat(client)  # before autolog: not traced
        assert captured.traces == []
        tracekit.openai.autolog()
        try:
            chat(client)
        finally:
            integration.revert()
    assert only_span(captured)["name"] == f"chat {MODEL}"


def test_autolog_before_the_client_is_created(traced: Capture, server: ScriptedServer) -> None:
    with sync_client(server) as client:
        chat(client)
    assert only_span(traced)["name"] == f"chat {MODEL}"


def test_autolog_twice_still_one_span(traced: Capture, server: ScriptedServer) -> None:
    tracekit.openai.autolog()
    with sync_client(server) as client:
        chat(client)
    assert len(all_spans(traced)) == 1


def test_autolog_disable_records_nothing_but_calls_work(
    traced: Capture, server: ScriptedServer
) -> None:
    tracekit.openai.autolog(disable=True)
    with sync_client(server) as client:
        assert chat(client).choices[0].message.content == ANSWER
        assert (
            "".join(
                c.choices[0].delta.content or "" for c in chat(client, stream=True) if c.choices
            )
            == ANSWER
        )
        with client.chat.completions.stream(model=MODEL, messages=MESSAGES) as stream:
            assert stream.get_final_completion().choices[0].message.content == ANSWER
        assert traced.traces == []

        tracekit.openai.autolog()  # on again, without patching twice
        chat(client)
    assert len(all_spans(traced)) == 1


def test_autolog_log_traces_false_records_nothing(traced: Capture, server: ScriptedServer) -> None:
    tracekit.openai.autolog(log_traces=False)
    with sync_client(server) as client:
        assert chat(client).choices[0].message.content == ANSWER
        list(chat(client, stream=True))
    assert traced.traces == []


def test_tracing_disabled_records_nothing(patched: None, server: ScriptedServer) -> None:
    with capture(enabled=False) as captured, sync_client(server) as client:
        assert chat(client).choices[0].message.content == ANSWER
        stream = chat(client, stream=True)
        assert isinstance(stream, openai.Stream)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == ANSWER
        assert client.embeddings.create(model="fake-embed", input="x").data
        assert captured.traces == []


def test_content_capture_off_keeps_usage(patched: None, server: ScriptedServer) -> None:
    with capture(capture_content=False) as captured, sync_client(server) as client:
        chat(client)
        list(chat(client, stream=True, stream_options={"include_usage": True}))
        client.responses.create(model=MODEL, input="hello there")
        spans = all_spans(captured)
    assert len(spans) == 3
    for span in spans:
        assert span["inputs"] is None, span["name"]
        assert span["outputs"] is None, span["name"]
        assert span["token_usage"]["output_tokens"] == 4, span["name"]
        assert span["attributes"]["gen_ai.request.model"] == MODEL
        assert "hello there" not in json.dumps(span)
    assert spans[0]["token_usage"] == spans[1]["token_usage"] == fake_chat_usage()


def test_autolog_before_import_openai(tmp_path: Path) -> None:
    """`import tracekit.openai` does not import the SDK; autolog() first, then the app's import."""
    script = """
import json, sys
import tracekit, tracekit.openai
from tracekit.testing import capture
from tracekit._fake_server import FakeProviderServer
assert "openai" not in sys.modules, "import tracekit.openai imported the SDK"
tracekit.openai.autolog()
import openai
with capture() as captured, FakeProviderServer() as server:
    client = openai.OpenAI(api_key="t", base_url=server.base_url + "/v1", max_retries=0)
    client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    print(json.dumps([s["name"] for t in captured.traces for s in t["spans"]]))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEKIT_")}
    env["TRACEKIT_TESTING"] = "1"
    proc = run_python(script, cwd=tmp_path, env=env)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == ["chat m"]


# -- concurrency -----------------------------------------------------------------------


def test_fifty_concurrent_async_calls_under_one_parent(
    traced: Capture, server: ScriptedServer
) -> None:
    count = 50

    async def one(client: Any, i: int) -> str:
        messages = [{"role": "user", "content": f"question {i}"}]
        if i % 2:
            stream = await client.chat.completions.create(
                model=MODEL, messages=messages, stream=True
            )
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        result = await client.chat.completions.create(model=MODEL, messages=messages)
        return str(result.choices[0].message.content)

    @tracekit.trace(name="fan_out")
    async def fan_out() -> list[str]:
        async with async_client(server) as client:
            return await asyncio.gather(*(one(client, i) for i in range(count)))

    answers = asyncio.run(fan_out())
    assert answers == [f"You asked: question {i}" for i in range(count)]

    (trace,) = traced.traces
    spans = trace["spans"]
    assert len(spans) == count + 1
    (root,) = [s for s in spans if s["parent_id"] is None]
    assert root["name"] == "fan_out"
    children = [s for s in spans if s["parent_id"] is not None]
    assert {s["parent_id"] for s in children} == {root["span_id"]}
    seen = set()
    for span in children:
        question = span["inputs"]["messages"][0]["content"]
        seen.add(question)
        i = int(question.split()[-1])
        assert span["outputs"]["choices"][0]["message"]["content"] == f"You asked: {question}"
        assert span["attributes"].get("tracekit.stream", False) is bool(i % 2)
        assert span["status"]["code"] == "OK"
    assert seen == {f"question {i}" for i in range(count)}


def test_thread_pool_fan_out_nests_under_submitting_span(
    traced: Capture, server: ScriptedServer
) -> None:
    with (
        sync_client(server) as client,
        tracekit.start_span("submit") as parent,
        ThreadPoolExecutor(max_workers=8) as pool,
    ):
        answers = list(
            pool.map(lambda i: chat(client, f"item {i}").choices[0].message.content, range(16))
        )
    assert answers == [f"You asked: item {i}" for i in range(16)]

    (trace,) = traced.traces
    spans = trace["spans"]
    assert len(spans) == 17
    children = [s for s in spans if s["span_id"] != parent.span_id]
    assert {s["parent_id"] for s in children} == {parent.span_id}
    assert sorted(s["inputs"]["messages"][0]["content"] for s in children) == sorted(
        f"item {i}" for i in range(16)
    )
    for span in children:
        question = span["inputs"]["messages"][0]["content"]
        assert span["outputs"]["choices"][0]["message"]["content"] == f"You asked: {question}"


# -- the app's view: nothing changed, nothing leaked -----------------------------------


def _session(client: Any) -> list[Any]:
    """A few calls; what the app saw, as JSON."""
    seen = [chat(client, temperature=0.2, seed=7).model_dump(mode="json")]
    seen.append([c.model_dump(mode="json") for c in chat(client, stream=True)])
    seen.append(client.responses.create(model=MODEL, input="hi").model_dump(mode="json"))
    seen.append(
        [
            e.model_dump(mode="json")
            for e in client.responses.create(model=MODEL, input="hi", stream=True)
        ]
    )
    seen.append(client.embeddings.create(model="fake-embed", input="hi").model_dump(mode="json"))
    return seen


def test_request_and_response_are_unchanged(captured: Capture, server: ScriptedServer) -> None:
    with sync_client(server) as client:
        start = len(server.requests)
        plain = _session(client)
        plain_bodies = [r["body"] for r in server.requests[start:]]
        tracekit.openai.autolog()
        try:
            start = len(server.requests)
            traced_seen = _session(client)
            traced_bodies = [r["body"] for r in server.requests[start:]]
        finally:
            integration.revert()
    assert traced_bodies == plain_bodies
    assert traced_seen == plain
    assert len(all_spans(captured)) == 5


def test_secrets_are_not_recorded(traced: Capture, server: ScriptedServer) -> None:
    with openai.OpenAI(
        api_key="sk-SECRET-api-key",
        organization="org-SECRET-org",
        project="proj-SECRET-project",
        base_url=server.base_url + "/v1",
        default_headers={"X-Api-Key": "SECRET-default-header"},
        max_retries=0,
    ) as client:
        client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            extra_headers={
                "Authorization": "Bearer sk-SECRET-extra",
                "api-key": "SECRET-azure-key",
                "OpenAI-Project": "proj-SECRET-extra",
            },
        )
        client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
    sent = {k.lower(): v for k, v in server.requests[-2]["headers"].items()}
    assert sent["authorization"] == "Bearer sk-SECRET-extra"  # the SDK did send them
    assert sent["openai-organization"] == "org-SECRET-org"
    dump = json.dumps(traced.traces)
    assert "SECRET" not in dump


# -- SDK errors reach the caller unchanged ---------------------------------------------


def test_http_error_reaches_caller(traced: Capture, server: ScriptedServer) -> None:
    with sync_client(server) as client, pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="missing-model", messages=MESSAGES)
    assert type(info.value) is openai.NotFoundError
    assert info.value.status_code == 404
    span = only_span(traced)
    assert span["status"] == {"code": "ERROR", "message": f"NotFoundError: {info.value}"}
    assert span["events"][0]["attributes"]["exception.type"] == "NotFoundError"


def test_timeout_reaches_caller(traced: Capture, server: ScriptedServer) -> None:
    with sync_client(server) as client, pytest.raises(openai.APITimeoutError) as info:
        chat(client, "slow: take your time", timeout=0.1)
    assert type(info.value) is openai.APITimeoutError
    span = only_span(traced)
    assert span["status"]["code"] == "ERROR"
    assert span["events"][0]["attributes"]["exception.type"] == "APITimeoutError"


def test_async_connection_error_reaches_caller(traced: Capture) -> None:
    async def main() -> None:
        async with openai.AsyncOpenAI(
            api_key="test", base_url="http://127.0.0.1:9/v1", max_retries=0
        ) as client:
            await client.chat.completions.create(model=MODEL, messages=MESSAGES)

    with pytest.raises(openai.APIConnectionError) as info:
        asyncio.run(main())
    assert type(info.value) is openai.APIConnectionError
    span = only_span(traced)
    assert span["status"]["code"] == "ERROR"
    assert span["events"][0]["attributes"]["exception.type"] == "APIConnectionError"


# -- what issue 3 promises beyond the basics -------------------------------------------


def test_fake_server_is_public_in_tracekit_testing() -> None:
    """Issue 3: "`tracekit.testing`: a fake provider server ... so users can test offline"."""
    import tracekit.testing

    assert tracekit.testing.FakeProviderServer is FakeProviderServer


def test_stream_usage_option_asks_for_usage_and_hides_it(
    captured: Capture, server: ScriptedServer
) -> None:
    """Issue 3: `autolog(stream_usage=True)` asks streams for usage and hides the usage chunk."""
    with sync_client(server) as client:
        start = len(server.requests)
        plain = [c.model_dump(mode="json") for c in chat(client, stream=True)]
        tracekit.openai.autolog(stream_usage=True)
        try:
            seen = [c.model_dump(mode="json") for c in chat(client, stream=True)]
        finally:
            integration.revert()
    assert "stream_options" not in server.requests[start]["body"]
    assert server.requests[-1]["body"]["stream_options"] == {"include_usage": True}
    assert seen == plain  # the caller sees exactly what it would have seen
    span = only_span(captured)
    assert span["token_usage"] == fake_chat_usage()
    assert "stream_options" not in (span["inputs"] or {})


def test_sampled_out_calls_work_and_record_nothing(patched: None, server: ScriptedServer) -> None:
    with capture(sampling_ratio=0.0) as captured, sync_client(server) as client:
        assert chat(client).choices[0].message.content == ANSWER
        stream = chat(client, stream=True)
        assert isinstance(stream, openai.Stream)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == ANSWER
        with client.chat.completions.stream(model=MODEL, messages=MESSAGES) as helper:
            assert helper.get_final_completion().choices[0].message.content == ANSWER
        assert captured.traces == []


def test_stream_usage_option_respects_the_callers_choice(
    captured: Capture, server: ScriptedServer
) -> None:
    tracekit.openai.autolog(stream_usage=True)
    try:
        with sync_client(server) as client:
            chunks = list(chat(client, stream=True, stream_options={"include_usage": False}))
            body = server.requests[-1]["body"]
            with client.chat.completions.stream(model=MODEL, messages=MESSAGES) as helper:
                completion = helper.get_final_completion()
            helper_body = server.requests[-1]["body"]
    finally:
        integration.revert()
    assert body["stream_options"] == {"include_usage": False}  # the caller decided
    assert all(c.usage is None for c in chunks)
    # The helper's own accumulation sees what it would have seen without tracekit.
    assert helper_body["stream_options"] == {"include_usage": True}
    assert completion.usage is None
    assert completion.choices[0].message.content == ANSWER
    first, second = all_spans(captured)
    assert "token_usage" not in first
    assert second["token_usage"] == fake_chat_usage()


def test_tracing_parse_emits_no_warnings(traced: Capture, server: ScriptedServer) -> None:
    """Tracing never adds noise to the app: serializing a parsed completion must not warn."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with sync_client(server) as client:
            client.chat.completions.parse(
                model=MODEL,
                messages=[{"role": "user", "content": "json: hi"}],
                response_format=City,
            )
        span = only_span(traced)  # flushes: the export worker has serialized the span
    assert span["outputs"]["choices"][0]["message"]["parsed"] == CITY
    assert [str(w.message) for w in caught] == []
