"""Stream proxies: the SDK's stream object, unchanged, with one idempotent end.

A proxy keeps the whole surface of the object it wraps (`isinstance`,
`.response`, `close()`, helpers) and overrides iteration explicitly. Its span
ends exactly once, from whichever exit comes first: exhaustion, an error,
`close()`/`aclose()`, `__exit__`/`__aexit__`, or garbage collection of a
stream the app dropped.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextvars import ContextVar
from types import TracebackType
from typing import Any, Protocol

import wrapt

from tracekit import _runtime
from tracekit._api import finish
from tracekit._guard import guard, internal_error
from tracekit._span import Span
from tracekit.integrations._common import record_error


class Accumulator(Protocol):
    """Folds a provider's chunks into the span's outputs, attributes and usage.

    By default the chunks are kept until the export worker folds them (`add`, then
    `finish`). Two class attributes change that: `immediate = True` folds each chunk
    as it arrives and finishes when the stream ends, on the caller (for state that is
    only valid then); `fold_now = True` folds each chunk as it arrives but finishes on
    the worker. `fold_now` suits SDKs whose chunks are big object graphs: kept until
    the worker runs, they survive young garbage-collector passes (Gemini: ~25 tracked
    objects a chunk, 350 young passes per 1,000 streams against 8-32 folded now),
    while `add` only takes a few fields of each. Where `add` costs more on the caller
    than the collector saves (OpenAI's and Anthropic's small chunks, measured with
    `benchmarks/hotpath.py --inproc`), chunks are kept for the worker.

    An accumulator may also have `compact(chunk)`, run on the caller for each chunk
    kept: the common chunk in a form the collector does not track (a tuple of strings
    and integers), anything else as it is; `add` then takes either. A kept OpenAI text
    chunk is a dozen tracked objects (the chunk, its choice and delta, their
    `__dict__`s, the choices list), all alive until the worker folds them.
    """

    def add(self, chunk: Any) -> None: ...

    def finish(self, span: Span) -> None: ...


MAX_PENDING_CHUNKS = 10_000
_FAST_CHUNKS = MAX_PENDING_CHUNKS - 1  # the last one goes through `chunk()`, which folds


class StreamCall:
    """The span of one streamed call and the accumulator of its chunks."""

    __slots__ = (
        "__weakref__",
        "accumulator",
        "chunks",
        "compact",
        "done",
        "hide",
        "pending",
        "reads",
        "span",
    )

    def __init__(
        self, span: Span, accumulator: Accumulator, hide: Callable[[Any], bool] | None = None
    ) -> None:
        self.span = span
        self.accumulator = accumulator
        self.hide = hide
        self.chunks = 0
        self.done = False
        # The SDK builds the request when the stream is read: each read runs with the
        # call's `traceparent` set in the request seam's variable (`StreamSeam.reads`).
        self.reads: tuple[ContextVar[str | None], str] | None = None
        # Chunks are kept by reference and folded on the export worker, unless the
        # accumulator must read live SDK state at the end (`immediate`) or folds each
        # chunk as it arrives (`fold_now`; its `finish` still runs on the worker).
        folds = getattr(accumulator, "immediate", False) or getattr(accumulator, "fold_now", False)
        self.pending: list[Any] | None = None if folds else []
        self.compact: Callable[[Any], Any] | None = getattr(accumulator, "compact", None)

    def chunk(self, item: Any) -> bool:
        """Record a chunk; True when the caller must not see it (an opt-in extra)."""
        try:  # runs per chunk: a plain `try` costs less than `guard`
            pending = self.pending
            if self.chunks == 0:
                ttfc = (_runtime.clock() - self.span.start_time_ns) / 1e9
                self.span.set_attribute("tracekit.time_to_first_chunk_s", ttfc)
            self.chunks += 1
            if pending is None:
                self.accumulator.add(item)
            else:
                compact = self.compact
                pending.append(item if compact is None else compact(item))
                if len(pending) >= MAX_PENDING_CHUNKS:  # a very long stream: fold as we go
                    self._fold()
                    self.pending = None
            hide = self.hide
            return hide is not None and hide(item)
        except Exception as exc:
            internal_error("stream chunk", exc)
        return False

    def end(self, exc: BaseException | None = None, how: str | None = None) -> None:
        """End the span once; later calls do nothing. `how` names an early exit."""
        if self.done:
            return
        self.done = True
        with guard("stream end"):
            span = self.span
            span.set_attributes({"tracekit.stream": True, "tracekit.stream.chunks": self.chunks})
            if how:
                span.set_attribute("tracekit.stream.ended_by", how)
            if exc is not None:
                record_error(span, exc)
            if getattr(self.accumulator, "immediate", False):
                self.accumulator.finish(span)
            else:
                span.defer(self._fold_and_finish)
            finish(span, exc)

    def _fold(self) -> None:
        for item in self.pending or ():
            self.accumulator.add(item)

    def _fold_and_finish(self) -> None:
        self._fold()
        self.pending = None
        self.accumulator.finish(self.span)


_capture: ContextVar[list[StreamCall] | None] = ContextVar("tracekit_stream_capture", default=None)


def _register(call: StreamCall) -> None:
    slot = _capture.get()
    if slot is not None:
        slot.append(call)


def _abandon(proxy: Any, finalizing: Callable[[], bool] = sys.is_finalizing) -> None:
    """A proxy the app dropped: end its span (nothing else). `__del__` rather than
    `weakref.finalize`, which costs 2 µs per stream; never at interpreter exit,
    where the buffer force-ends what is open."""
    try:
        call = proxy._self_call
    except AttributeError:  # a proxy whose __init__ failed: nothing to end
        return
    if not call.done and not finalizing():
        call.end(None, "garbage_collected")


class TracedStream(wrapt.ObjectProxy):  # type: ignore[misc,type-arg]
    """A synchronous SDK stream whose span ends exactly once."""

    def __init__(self, wrapped: Any, call: StreamCall) -> None:
        super().__init__(wrapped)
        self._self_call = call
        _register(call)

    def __del__(self) -> None:
        _abandon(self)

    def __iter__(self) -> TracedStream:
        return self

    def __next__(self) -> Any:
        return _advance(self._self_call, self.__wrapped__)

    def close(self) -> Any:
        try:
            return self.__wrapped__.close()
        finally:
            self._self_call.end(None, "close")

    def __enter__(self) -> TracedStream:
        self.__wrapped__.__enter__()
        return self

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Any:
        try:
            return self.__wrapped__.__exit__(et, exc, tb)
        finally:
            self._self_call.end(exc, "context_exit")


def _advance(call: StreamCall, iterator: Any) -> Any:
    """The next chunk the caller sees; the span ends with the iteration."""
    reads = call.reads
    while True:
        try:
            if reads is None:
                item = iterator.__next__()
            else:  # the SDK may build a request now: it carries the call's traceparent
                token = reads[0].set(reads[1])
                try:
                    item = iterator.__next__()
                finally:
                    reads[0].reset(token)
        except StopIteration:
            call.end(None)
            raise
        except BaseException as exc:
            call.end(exc)
            raise
        # The common chunk, inline (it runs per chunk): kept (compacted), not the first
        # (its time is recorded), none hidden, below the cap. Else `chunk()` decides.
        pending = call.pending
        if pending is not None and call.hide is None and 0 < call.chunks < _FAST_CHUNKS:
            compact = call.compact
            pending.append(item if compact is None else compact(item))
            call.chunks += 1
            return item
        if not call.chunk(item):
            return item


class TracedIterable(TracedStream):
    """A stream that is iterable but not an iterator (botocore's `EventStream`): its
    iterator is made on the first `next()`, the object itself stays what the caller has."""

    def __init__(self, wrapped: Any, call: StreamCall) -> None:
        super().__init__(wrapped, call)
        self._self_iterator: Any = None

    def __next__(self) -> Any:
        if self._self_iterator is None:
            self._self_iterator = iter(self.__wrapped__)
        return _advance(self._self_call, self._self_iterator)


class TracedAsyncStream(wrapt.ObjectProxy):  # type: ignore[misc,type-arg]
    """An asynchronous SDK stream whose span ends exactly once."""

    def __init__(self, wrapped: Any, call: StreamCall) -> None:
        super().__init__(wrapped)
        self._self_call = call
        _register(call)

    def __del__(self) -> None:
        _abandon(self)

    def __aiter__(self) -> TracedAsyncStream:
        return self

    async def __anext__(self) -> Any:
        call = self._self_call
        reads = call.reads
        while True:
            try:
                if reads is None:
                    item = await self.__wrapped__.__anext__()
                else:
                    token = reads[0].set(reads[1])
                    try:
                        item = await self.__wrapped__.__anext__()
                    finally:
                        reads[0].reset(token)
            except StopAsyncIteration:
                call.end(None)
                raise
            except BaseException as exc:
                call.end(exc)
                raise
            pending = call.pending  # the common chunk, inline (see `_advance`)
            if pending is not None and call.hide is None and 0 < call.chunks < _FAST_CHUNKS:
                compact = call.compact
                pending.append(item if compact is None else compact(item))
                call.chunks += 1
                return item
            if not call.chunk(item):
                return item

    async def close(self) -> Any:
        try:
            return await self.__wrapped__.close()
        finally:
            self._self_call.end(None, "close")

    async def aclose(self) -> Any:
        try:
            return await self.__wrapped__.aclose()
        finally:
            self._self_call.end(None, "close")

    async def __aenter__(self) -> TracedAsyncStream:
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Any:
        try:
            return await self.__wrapped__.__aexit__(et, exc, tb)
        finally:
            self._self_call.end(exc, "context_exit")


class StreamManager(wrapt.ObjectProxy):  # type: ignore[misc,type-arg]
    """Wraps an SDK stream helper's context manager (`client.chat.completions.stream()`).

    The helper starts the request on `__enter__` (through the traced `create`)
    and closes the HTTP response on `__exit__` without closing the raw stream
    object, so the streams started inside are ended here.
    """

    def __init__(self, wrapped: Any) -> None:
        super().__init__(wrapped)
        self._self_calls: list[StreamCall] = []

    def _self_enter(self, enter: Callable[[], Any]) -> Any:
        token = _capture.set(self._self_calls)
        try:
            return enter()
        finally:
            _capture.reset(token)

    def _self_end(self, exc: BaseException | None) -> None:
        for call in self._self_calls:
            call.end(exc, "context_exit")

    def __enter__(self) -> Any:
        return self._self_enter(self.__wrapped__.__enter__)

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Any:
        try:
            return self.__wrapped__.__exit__(et, exc, tb)
        finally:
            self._self_end(exc)

    async def __aenter__(self) -> Any:
        token = _capture.set(self._self_calls)
        try:
            return await self.__wrapped__.__aenter__()
        finally:
            _capture.reset(token)

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Any:
        try:
            return await self.__wrapped__.__aexit__(et, exc, tb)
        finally:
            self._self_end(exc)


def _ending(iterator: Any, call: StreamCall) -> Any:
    """Iterate an SDK helper's derived iterator (`text_stream`), ending the span with it."""
    try:
        for item in iterator:
            call.chunk(item)
            yield item
    except GeneratorExit:
        call.end(None, "close")
        raise
    except BaseException as exc:
        call.end(exc)
        raise
    call.end(None)


async def _aending(iterator: Any, call: StreamCall) -> Any:
    try:
        async for item in iterator:
            call.chunk(item)
            yield item
    except GeneratorExit:
        call.end(None, "close")
        raise
    except BaseException as exc:
        call.end(exc)
        raise
    call.end(None)


class HelperStream(TracedStream):
    """An SDK helper stream (Anthropic's `MessageStream`): also ends when a method
    that reads it to the end returns, or when its `text_stream` is exhausted."""

    @property
    def text_stream(self) -> Any:
        return _ending(self.__wrapped__.text_stream, self._self_call)

    def _self_consume(self, name: str, args: Any, kwargs: Any) -> Any:
        for _ in self:  # read the rest through the proxy, so chunks are counted
            pass
        try:
            result = getattr(self.__wrapped__, name)(*args, **kwargs)
        except BaseException as exc:
            self._self_call.end(exc)
            raise
        self._self_call.end(None)
        return result

    def get_final_message(self, *args: Any, **kwargs: Any) -> Any:
        return self._self_consume("get_final_message", args, kwargs)

    def get_final_text(self, *args: Any, **kwargs: Any) -> Any:
        return self._self_consume("get_final_text", args, kwargs)

    def until_done(self, *args: Any, **kwargs: Any) -> Any:
        return self._self_consume("until_done", args, kwargs)


class AsyncHelperStream(TracedAsyncStream):
    """The asynchronous twin of `HelperStream`."""

    @property
    def text_stream(self) -> Any:
        return _aending(self.__wrapped__.text_stream, self._self_call)

    async def _self_consume(self, name: str, args: Any, kwargs: Any) -> Any:
        async for _ in self:  # read the rest through the proxy, so chunks are counted
            pass
        try:
            result = await getattr(self.__wrapped__, name)(*args, **kwargs)
        except BaseException as exc:
            self._self_call.end(exc)
            raise
        self._self_call.end(None)
        return result

    async def get_final_message(self, *args: Any, **kwargs: Any) -> Any:
        return await self._self_consume("get_final_message", args, kwargs)

    async def get_final_text(self, *args: Any, **kwargs: Any) -> Any:
        return await self._self_consume("get_final_text", args, kwargs)

    async def until_done(self, *args: Any, **kwargs: Any) -> Any:
        return await self._self_consume("until_done", args, kwargs)
