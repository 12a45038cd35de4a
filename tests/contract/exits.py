"""Every way a caller leaves a stream, by style, sync and async.

Each exit drives an adapter's stream and returns the Outcome the span must show.
`nothing_recorded_yet` is checked wherever the stream is still open: its span must
not end before the caller is done with it.
"""

from __future__ import annotations

import gc
from typing import Any

import pytest
from tests.contract.adapters import KEEP, QUESTION, Adapter
from tests.contract.outcome import Outcome, nothing_recorded_yet

from tracekit.testing import Capture


def _error(seen: list[Any], info: pytest.ExceptionInfo[BaseException]) -> Outcome:
    assert seen, "the caller got the chunks that arrived"
    assert not type(info.value).__module__.startswith("tracekit"), info.value
    return Outcome(None, KEEP, info.value, items=len(seen))


# -- sync ------------------------------------------------------------------------------


def exhausted(a: Adapter, client: Any, captured: Capture) -> Outcome:
    seen: list[Any] = []
    a.read_sync(client, seen)
    return Outcome(None, a.full_chunks, full=True, items=len(seen))


def break_in_with(a: Adapter, client: Any, captured: Capture) -> Outcome:
    with a.open_sync(client, QUESTION, a.model) as stream:
        for _ in stream:
            break
        nothing_recorded_yet(captured)
    return Outcome("context_exit", 1, partial=True)


def close(a: Adapter, client: Any, captured: Capture) -> Outcome:
    if a.style == "helper":
        with a.open_sync(client, QUESTION, a.model) as stream:
            next(stream)
            nothing_recorded_yet(captured)
            stream.close()
        return Outcome(a.helper_close_ends_by, 1, partial=True)
    stream = a.open_sync(client, QUESTION, a.model)
    for _ in stream:
        break
    nothing_recorded_yet(captured)
    stream.close()
    stream.close()  # twice: still one end
    return Outcome("close", 1, partial=True)


def dropped_partly_read(a: Adapter, client: Any, captured: Capture) -> Outcome:
    if a.style == "helper":
        manager = a.open_sync(client, QUESTION, a.model)
        stream = manager.__enter__()
        next(stream)
        nothing_recorded_yet(captured)
        del manager, stream
    else:
        stream = a.open_sync(client, QUESTION, a.model)
        next(stream)
        nothing_recorded_yet(captured)
        del stream
    gc.collect()
    return Outcome("garbage_collected", 1)


def error_mid_stream(a: Adapter, client: Any, captured: Capture) -> Outcome:
    """Against the dropping server: it hangs up after KEEP events."""
    seen: list[Any] = []
    with pytest.raises(Exception) as info:  # noqa: PT011 - whatever the SDK raises
        a.read_sync(client, seen)
    return _error(seen, info)


def dropped_unread(a: Adapter, client: Any, captured: Capture) -> Outcome:
    if a.style == "helper":
        with a.open_sync(client, QUESTION, a.model) as stream:
            nothing_recorded_yet(captured)  # (while the caller holds the stream)
            assert stream is not None
        return Outcome("context_exit", 0)
    stream = a.open_sync(client, QUESTION, a.model)
    nothing_recorded_yet(captured)
    del stream
    gc.collect()
    # A generator sends nothing until it is first iterated; its span still ends once.
    return Outcome("garbage_collected", 0, requests=0 if a.style == "generator" else 1)


# -- async -----------------------------------------------------------------------------


async def aexhausted(a: Adapter, client: Any, captured: Capture) -> Outcome:
    seen: list[Any] = []
    await a.read_async(client, seen)
    return Outcome(None, a.full_chunks, full=True, items=len(seen))


async def abreak_in_with(a: Adapter, client: Any, captured: Capture) -> Outcome:
    async with await a.open_async(client, QUESTION, a.model) as stream:
        async for _ in stream:
            break
        nothing_recorded_yet(captured)
    return Outcome("context_exit", 1, partial=True)


async def aclose(a: Adapter, client: Any, captured: Capture) -> Outcome:
    if a.style == "helper":
        async with await a.open_async(client, QUESTION, a.model) as stream:
            await stream.__anext__()
            nothing_recorded_yet(captured)
            await stream.close()
        return Outcome(a.helper_close_ends_by, 1, partial=True)
    stream = await a.open_async(client, QUESTION, a.model)
    async for _ in stream:
        break
    nothing_recorded_yet(captured)
    closing = stream.aclose if a.style == "generator" else stream.close
    await closing()
    await closing()  # twice: still one end
    return Outcome("close", 1, partial=True)


async def adropped_partly_read(a: Adapter, client: Any, captured: Capture) -> Outcome:
    if a.style == "helper":
        manager = await a.open_async(client, QUESTION, a.model)
        stream = await manager.__aenter__()
        await stream.__anext__()
        nothing_recorded_yet(captured)
        del manager, stream
    else:
        stream = await a.open_async(client, QUESTION, a.model)
        await stream.__anext__()
        nothing_recorded_yet(captured)
        del stream
    gc.collect()
    return Outcome("garbage_collected", 1)


async def aerror_mid_stream(a: Adapter, client: Any, captured: Capture) -> Outcome:
    seen: list[Any] = []
    with pytest.raises(Exception) as info:  # noqa: PT011 - whatever the SDK raises
        await a.read_async(client, seen)
    return _error(seen, info)


async def adropped_unread(a: Adapter, client: Any, captured: Capture) -> Outcome:
    if a.style == "helper":
        async with await a.open_async(client, QUESTION, a.model) as stream:
            nothing_recorded_yet(captured)
            assert stream is not None
        return Outcome("context_exit", 0)
    stream = await a.open_async(client, QUESTION, a.model)
    nothing_recorded_yet(captured)
    del stream
    gc.collect()
    return Outcome("garbage_collected", 0, requests=0 if a.style == "generator" else 1)


EXITS = {
    "exhausted": (exhausted, aexhausted),
    "break_in_with": (break_in_with, abreak_in_with),
    "close": (close, aclose),
    "dropped_partly_read": (dropped_partly_read, adropped_partly_read),
    "error_mid_stream": (error_mid_stream, aerror_mid_stream),
    "dropped_unread": (dropped_unread, adropped_unread),
}


def exit_functions(a: Adapter, name: str) -> tuple[Any, Any]:
    return EXITS.get(name) or a.extra_exits[name]
