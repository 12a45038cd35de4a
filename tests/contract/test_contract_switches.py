"""The contract every provider keeps, beyond its streams' exits, for every adapter.

`autolog(disable=True)` and `log_traces=False` record nothing (and do not proxy the
SDK's streams), `revert()` really unpatches and `autolog()` patches again once,
API keys and auth headers never reach the record, and many concurrent async
calls nest under one parent.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from tests.contract.adapters import ADAPTERS, ANSWER, MISSING, QUESTION, Adapter, question
from tests.contract.checks import summed_usage

import tracekit
from tracekit._fake_server import FakeProviderServer
from tracekit.testing import Capture

BY_ADAPTER = [pytest.param(a, id=a.id) for a in ADAPTERS]


def read_untraced(a: Adapter, client: Any) -> None:
    """The SDK's own stream, not even proxied, read to the end."""
    opened = a.open_sync(client, QUESTION, a.model)
    assert type(opened) in a.sdk_stream_types()
    if a.style == "helper":
        with opened as stream:
            assert type(stream) in a.sdk_stream_types()
            assert list(stream)
    else:
        assert "".join(a.text_of_item(item) for item in opened) == ANSWER


async def calls_async(a: Adapter, server: FakeProviderServer) -> None:
    async with a.async_client(server, "test-key") as client:
        assert await a.call_async(client, QUESTION, a.model) == ANSWER
        assert await a.answer_async(client) == ANSWER


@pytest.mark.parametrize("adapter", BY_ADAPTER)
def test_autolog_disable_records_nothing(
    adapter: Adapter, traced: Capture, server: FakeProviderServer
) -> None:
    adapter.autolog(disable=True)
    with adapter.sync_client(server, "test-key") as client:
        assert adapter.call_sync(client, QUESTION, adapter.model) == ANSWER
        read_untraced(adapter, client)
        adapter.other_calls(client)
        asyncio.run(calls_async(adapter, server))
        adapter.autolog(log_traces=False)
        assert adapter.call_sync(client, QUESTION, adapter.model) == ANSWER
        assert traced.traces == []

        adapter.autolog()  # on again: the same client is traced, without patching twice
        assert adapter.answer_sync(client) == ANSWER
    (trace,) = traced.traces
    (span,) = trace["spans"]
    assert span["name"] == adapter.span_name


@pytest.mark.parametrize("adapter", BY_ADAPTER)
def test_revert_unpatches_and_autolog_patches_once_again(
    adapter: Adapter, traced: Capture, server: FakeProviderServer
) -> None:
    adapter.integration.revert()
    assert not adapter.integration.active()
    with adapter.sync_client(server, "test-key") as client:
        assert adapter.call_sync(client, QUESTION, adapter.model) == ANSWER
        read_untraced(adapter, client)
        asyncio.run(calls_async(adapter, server))
        assert traced.traces == []

        adapter.autolog()
        adapter.autolog()  # twice: still one patch, one span per call
        assert adapter.answer_sync(client) == ANSWER
        asyncio.run(calls_async(adapter, server))
    traces = traced.traces
    assert [len(t["spans"]) for t in traces] == [1, 1, 1]
    assert {t["spans"][0]["name"] for t in traces} == {adapter.span_name}


@pytest.mark.parametrize("adapter", BY_ADAPTER)
def test_api_keys_and_auth_headers_are_never_recorded(
    adapter: Adapter, traced: Capture, server: FakeProviderServer
) -> None:
    key = "sk-ant-api03-SECRET-KEY-123"
    bearer = "Bearer SECRET-TOKEN-456"
    headers = {"x-api-key": key, "x-goog-api-key": key, "authorization": bearer}
    with adapter.sync_client(server, key) as client:
        adapter.call_sync(client, QUESTION, adapter.model)
        # The key really went over the wire (so its absence below means something).
        assert any(key in value for value in server.requests[-1]["headers"].values())
        expected = 1 + adapter.other_calls(client)
        for option in adapter.headers_options(headers):
            adapter.call_sync(client, QUESTION, adapter.model, **option)
            adapter.answer_sync(client, **option)
            with pytest.raises(adapter.not_found()):
                adapter.call_sync(client, QUESTION, MISSING, **option)
            with pytest.raises(adapter.not_found()):
                adapter.answer_sync(client, model=MISSING, **option)
            expected += 4
        sent = {k.lower(): v for k, v in server.requests[-1]["headers"].items()}
        assert sent["authorization"] == bearer

    async def main() -> None:
        async with adapter.async_client(server, key) as client:
            option = adapter.headers_options(headers)[0]
            await adapter.call_async(client, QUESTION, adapter.model, **option)
            await adapter.answer_async(client, **option)

    asyncio.run(main())
    records = traced.traces
    assert len(records) == expected + 2
    dumped = json.dumps(records).lower()
    for secret in (key, bearer, "secret", "x-api-key", "x-goog-api-key", "authorization"):
        assert secret.lower() not in dumped, secret


@pytest.mark.parametrize("adapter", BY_ADAPTER)
def test_50_concurrent_async_calls_under_one_parent(
    adapter: Adapter, captured_realtime: Capture, server: FakeProviderServer
) -> None:
    """Half streamed, half plain, all at once on one client: 50 children of one span."""

    async def ask(client: Any, i: int) -> str:
        if i % 2:
            return await adapter.call_async(client, question(i), adapter.model)
        return await adapter.answer_async(client, question(i))

    @tracekit.trace
    async def fan_out() -> list[str]:
        async with adapter.async_client(server, "test-key") as client:
            return await asyncio.gather(*(ask(client, i) for i in range(50)))

    adapter.autolog()
    try:
        assert asyncio.run(fan_out()) == [f"You asked: {question(i)}" for i in range(50)]
        (record,) = captured_realtime.traces
    finally:
        adapter.integration.revert()
    (root,) = [s for s in record["spans"] if s["name"] == "fan_out"]
    children = [s for s in record["spans"] if s["parent_id"] == root["span_id"]]
    assert len(record["spans"]) == 51
    assert len(children) == 50
    seen = set()
    for span in children:
        i = int(adapter.question_of(span).split()[-1])
        seen.add(i)
        assert span["name"] == adapter.span_name
        assert span["status"] == {"code": "OK", "message": ""}
        assert span["end_time_ns"] >= span["start_time_ns"]
        attributes = span["attributes"]
        assert attributes.get("tracekit.stream", False) is (i % 2 == 0)
        assert "tracekit.stream.ended_by" not in attributes
        assert adapter.text_of(span) == f"You asked: {question(i)}"
        assert span["token_usage"]["output_tokens"] == adapter.usage["output_tokens"]
    assert seen == set(range(50))
    assert record["token_usage"] == summed_usage(children)
    assert record["token_usage"]["output_tokens"] == 50 * adapter.usage["output_tokens"]
