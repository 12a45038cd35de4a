"""The contract every provider stream keeps, written once for every adapter.

Sync and async: every exit ends the span exactly once with what arrived (the
whole record compared with its snapshot); the span is never current between
chunks, so the caller's own spans nest where they should and the stream's span
nests under the caller's; an error on open reaches the caller unchanged and is
one ERROR span.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections import Counter
from typing import Any

import pytest
from tests.contract.adapters import ADAPTERS, ANSWER, MISSING, QUESTION, Adapter
from tests.contract.checks import check_error, check_stream_span, summed_usage
from tests.contract.exits import exit_functions
from tests.contract.outcome import Outcome
from tests.contract.snapshots import Snapshots, record
from tests.trace_checks import only_span

import tracekit
from tracekit._fake_server import FakeProviderServer
from tracekit.testing import Capture

EXITS = [pytest.param(a, e, id=f"{a.id}-{e}") for a in ADAPTERS for e in a.exits]
BY_ADAPTER = [pytest.param(a, id=a.id) for a in ADAPTERS]


def check_exit(
    a: Adapter,
    mode: str,
    name: str,
    outcome: Outcome,
    traced: Capture,
    finishes: Counter[str],
    snapshots: Snapshots,
) -> None:
    check_stream_span(a, traced, finishes, outcome)
    # Run to run, only the helper's read-ahead and which of two exits wins may vary.
    vary = {"tracekit.stream.ended_by"} if isinstance(outcome.ended_by, set) else set()
    if outcome.partial and a.reads_ahead and a.style == "helper":
        vary.add("tracekit.stream.chunks")
    # Sync and async record the same (one snapshot for both), except where the
    # event loop's timing decides.
    key = f"{a.id} {mode} {name}" if vary else f"{a.id} {name}"
    whole = {"items": outcome.items, "trace": record(traced.traces[0], frozenset(vary))}
    snapshots.check(a.provider, key, whole)
    gc.collect()  # a later collection changes nothing
    assert finishes == {a.span_name: 1}


def check_requests(a: Adapter, server: FakeProviderServer, before: int, outcome: Outcome) -> None:
    """One request per stream; none for a lazy stream never iterated."""
    sent = [r["path"] for r in server.requests[before:]]
    if a.style == "generator":
        assert len(sent) == outcome.requests, sent
    else:  # (a request of an earlier test's stream may land late on the shared server)
        assert len(sent) >= outcome.requests, sent


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(("adapter", "name"), EXITS)
def test_stream_exit_ends_the_span_once(
    adapter: Adapter,
    name: str,
    mode: str,
    traced: Capture,
    finishes: Counter[str],
    server: FakeProviderServer,
    dropping: FakeProviderServer,
    snapshots: Snapshots,
) -> None:
    target = dropping if name == "error_mid_stream" else server
    before = len(target.requests)
    sync_exit, async_exit = exit_functions(adapter, name)
    if mode == "sync":
        with adapter.sync_client(target, "test-key") as client:
            outcome = sync_exit(adapter, client, traced)
    else:

        async def main() -> Outcome:
            async with adapter.async_client(target, "test-key") as client:
                outcome: Outcome = await async_exit(adapter, client, traced)
                await asyncio.sleep(0)  # let the loop close abandoned async generators
                return outcome

        outcome = asyncio.run(main())
    check_requests(adapter, target, before, outcome)
    check_exit(adapter, mode, name, outcome, traced, finishes, snapshots)


# -- context: never current between chunks, nested under the caller --------------------


def check_nested(a: Adapter, traced: Capture, caller: str) -> None:
    """A plain call, then the stream: both children of the caller's span."""
    (trace,) = traced.traces
    root, plain, llm = trace["spans"]
    assert root["name"] == caller
    assert root["parent_id"] is None
    assert plain["name"] == llm["name"] == a.span_name
    assert plain["parent_id"] == llm["parent_id"] == root["span_id"]
    assert plain["status"] == llm["status"] == {"code": "OK", "message": ""}
    assert "tracekit.stream" not in plain["attributes"]
    assert a.text_of(plain) == a.text_of(llm) == ANSWER
    assert llm["attributes"]["tracekit.stream.chunks"] == a.full_chunks
    assert llm["attributes"]["tracekit.time_to_first_chunk_s"] > 0
    assert root["start_time_ns"] <= llm["start_time_ns"] <= llm["end_time_ns"]
    assert llm["end_time_ns"] <= root["end_time_ns"]
    assert llm["token_usage"] == a.usage
    assert trace["token_usage"] == summed_usage([plain, llm])  # the trace sums its calls


def scope(a: Adapter, opened: Any) -> Any:
    """What `with` takes: the stream or its manager (a generator has no `with`)."""
    return contextlib.nullcontext(opened) if a.style == "generator" else opened


@pytest.mark.parametrize("adapter", BY_ADAPTER)
def test_sync_span_is_not_current_between_chunks(
    adapter: Adapter, traced: Capture, server: FakeProviderServer
) -> None:
    def read(client: Any) -> str:
        parent = tracekit.get_current_span()
        parts = []
        opened = adapter.open_sync(client, QUESTION, adapter.model)
        assert tracekit.get_current_span() is parent
        with scope(adapter, opened) as stream:
            assert tracekit.get_current_span() is parent
            for item in stream:
                assert tracekit.get_current_span() is parent
                parts.append(adapter.text_of_item(item))
        assert tracekit.get_current_span() is parent
        return "".join(parts)

    @tracekit.trace
    def caller(client: Any) -> str:
        assert adapter.call_sync(client, QUESTION, adapter.model) == ANSWER
        return read(client)

    with adapter.sync_client(server, "test-key") as client:
        assert read(client) == ANSWER  # no parent: none is current between chunks
        traced.clear()
        assert caller(client) == ANSWER
    check_nested(adapter, traced, "caller")


@pytest.mark.parametrize("adapter", BY_ADAPTER)
def test_async_span_is_not_current_between_chunks(
    adapter: Adapter, traced: Capture, server: FakeProviderServer
) -> None:
    async def read(client: Any) -> str:
        parent = tracekit.get_current_span()
        parts = []
        opened = await adapter.open_async(client, QUESTION, adapter.model)
        assert tracekit.get_current_span() is parent
        async with scope(adapter, opened) as stream:
            assert tracekit.get_current_span() is parent
            async for item in stream:
                assert tracekit.get_current_span() is parent
                parts.append(adapter.text_of_item(item))
        assert tracekit.get_current_span() is parent
        return "".join(parts)

    @tracekit.trace
    async def caller(client: Any) -> str:
        assert await adapter.call_async(client, QUESTION, adapter.model) == ANSWER
        return await read(client)

    async def main() -> None:
        async with adapter.async_client(server, "test-key") as client:
            assert await read(client) == ANSWER
            traced.clear()
            assert await caller(client) == ANSWER

    asyncio.run(main())
    check_nested(adapter, traced, "caller")


# -- errors on open --------------------------------------------------------------------


def check_error_on_open(
    a: Adapter,
    exc: BaseException,
    traced: Capture,
    finishes: Counter[str],
    snapshots: Snapshots,
) -> None:
    """The SDK's own exception; one ERROR span with the HTTP status, ended once."""
    assert type(exc) is a.not_found()
    span = only_span(traced)
    assert span["name"] == f"{a.operation} {MISSING}"
    assert finishes == {span["name"]: 1}
    check_error(span, exc)
    assert span["attributes"]["http.response.status_code"] == 404
    assert span["attributes"]["error.type"] == type(exc).__qualname__
    assert "token_usage" not in span
    snapshots.check(a.provider, f"{a.id} error_on_open", record(traced.traces[0]))


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("adapter", BY_ADAPTER)
def test_error_on_open_reaches_the_caller(
    adapter: Adapter,
    mode: str,
    traced: Capture,
    finishes: Counter[str],
    server: FakeProviderServer,
    snapshots: Snapshots,
) -> None:
    seen: list[Any] = []

    async def main() -> None:
        async with adapter.async_client(server, "test-key") as client:
            await adapter.read_async(client, seen, model=MISSING)

    def read() -> None:
        if mode == "async":
            asyncio.run(main())
            return
        with adapter.sync_client(server, "test-key") as client:
            adapter.read_sync(client, seen, model=MISSING)

    with pytest.raises(adapter.not_found()) as info:
        read()
    assert seen == []
    check_error_on_open(adapter, info.value, traced, finishes, snapshots)
