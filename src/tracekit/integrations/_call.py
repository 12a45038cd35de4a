"""One traced SDK call, and the helper-stream manager, as the engine runs them.

`_Call` owns a call's span from the moment its request is mapped until its result is
handed back (or a stream proxy takes the span over); `HelperManager` does the same for
a helper stream whose request is made when its block is entered.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

import wrapt

from tracekit import _api, _otel, _state, _tracer
from tracekit._context import current_parent, current_span
from tracekit._guard import internal_error
from tracekit._propagation import format_traceparent, unsampled_traceparent
from tracekit._span import NON_RECORDING, Span
from tracekit.integrations._common import Request, record_error
from tracekit.integrations._endpoint import Endpoint, Prepared, StreamSeam
from tracekit.integrations._streams import (
    AsyncHelperStream,
    HelperStream,
    StreamCall,
    TracedAsyncStream,
    TracedIterable,
    TracedStream,
)


def named(endpoint: Endpoint, args: Any, kwargs: Any) -> Any:
    """Keyword view of a call for the request mapper (most SDK methods are keyword-only)."""
    if not args or not endpoint.positional:
        return kwargs
    return {**dict(zip(endpoint.positional, args, strict=False)), **kwargs}


def snapshot(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """What a request mapper run later reads of a call's keyword arguments: a copy of
    the dict, and of each list or dict in it (one level).

    How we decide what to copy: the caller may change what it passed once the call
    returned, and the mapping runs later, on the export worker. What is commonly
    changed is a container passed at the top level: `messages.append(reply)` right
    after the call, a `config` dict reused with one key changed. Those are copied
    (shallowly, as `Span.set_inputs` does). Deeper objects (a message dict edited in
    place, an SDK model) are kept by reference, as `set_inputs` keeps them: copying
    them deeply would cost the call what mapping later saves."""
    return {k: (v.copy() if type(v) in (list, dict) else v) for k, v in kwargs.items()}


_NO_RESPONSE: Any = object()  # a call that has no response to map (yet)
# What a call that returned holds in place of its `Request`, which it needed only then.
_RETURNED = Request("", "", None)


def _map_request(endpoint: Endpoint, instance: Any, kwargs: dict[str, Any], span: Span) -> None:
    """The request's inputs and attributes, mapped on the export worker (`_Call`)."""
    assert endpoint.request is not None
    request = endpoint.request(instance, kwargs)
    if span._trace.capture_content:  # its own copy already: no second snapshot
        span.inputs = request.inputs
    span.set_attributes(request.attributes)


def unrecorded(endpoint: Endpoint, instance: Any, kwargs: Any) -> Any:
    """The kwargs of a call that is not recorded: under a remote caller that did not
    record its span (flags 00), its `traceparent` goes on, so that a gateway that
    traces server-side drops the trace too (as OpenTelemetry's parent-based sampler
    does); otherwise the caller's kwargs as they are."""
    if endpoint.inject is None:
        return kwargs
    value = unsampled_traceparent()
    if value is None or not _state.config().propagate_context:
        return kwargs
    try:
        sent = dict(kwargs)
        endpoint.inject(instance, sent, value, None)
        return sent
    except Exception as exc:
        internal_error(f"{endpoint.target} traceparent", exc)
        return kwargs


class _Call:
    """One traced SDK call: its span, made current only while the SDK runs, and the
    record of what the span maps on the export worker.

    The call is its span's deferred mapping (`Span.defer`; `__call__` runs it): the
    request, from a `snapshot` of the keyword arguments, then the response once the
    call has one. One object a call's span keeps until the worker runs it, where two
    `functools.partial`s, their argument tuples and a list held the same: every object
    kept is one more the garbage collector walks, and promotes when the worker is
    behind. What the call needed only while it ran (its keyword arguments, its
    `Request`, the context token) is let go when it returns.
    """

    __slots__ = (
        "endpoint",
        "instance",
        "kwargs",
        "otel",
        "raw",
        "request",
        "response",
        "snapshot",
        "span",
        "token",
    )

    def __init__(self, endpoint: Endpoint, request: Request, span: Span, kwargs: Any) -> None:
        self.endpoint = endpoint
        self.request = request
        self.span = span
        self.kwargs = kwargs
        raw = endpoint.raw_responses
        # The raw-response mode, read once: a raw result is recorded differently.
        self.raw = raw.mode(kwargs) if raw is not None else None
        self.token: Any = current_span.set(span)
        self.otel = _otel.enter(span)
        # For the worker: the SDK resource the call was made on and the request's
        # `snapshot` (None: mapped on the caller), then the response to map.
        self.instance: Any = None
        self.snapshot: dict[str, Any] | None = None
        self.response: Any = _NO_RESPONSE

    @classmethod
    def begin(cls, endpoint: Endpoint, instance: Any, kwargs: Any) -> _Call | None:
        """Start the call's span. With a `head` mapper the caller only records: the
        span's name, the stream flag and what must be read during the call; the
        request's inputs and attributes are mapped on the export worker, from a
        `snapshot` of the keyword arguments, before the response is."""
        try:
            head = endpoint.head
            if head is not None:
                request = head(instance, kwargs)
            else:
                assert endpoint.request is not None
                request = endpoint.request(instance, kwargs)
            # `_api.start`, two calls shorter for a root span (the common SDK call).
            parent = current_parent()
            if parent is None:
                span = _tracer.start_span(request.name, request.span_type, None, _state.config())
            else:
                span = _api.start_under(request.name, request.span_type, parent)
            if span is NON_RECORDING:
                return None
            if head is not None:
                if request.attributes:
                    span.set_attributes(request.attributes)
                call = cls(endpoint, request, span, kwargs)
                call.instance = instance
                call.snapshot = snapshot(kwargs)
                span.defer(call)
                return call
            span.set_inputs(request.inputs)
            if span.attributes is None:  # a fresh span: take the mapper's new dict as is
                span.attributes = request.attributes
            else:
                span.set_attributes(request.attributes)
            return cls(endpoint, request, span, kwargs)
        except Exception as exc:
            internal_error(f"{endpoint.target} request", exc)
            return None

    def detach(self) -> None:
        if self.otel is not None:
            _otel.leave(self.otel)
            self.otel = None
        token, self.token = self.token, None  # a token holds its context: not kept
        if token is None:
            return
        try:  # noqa: SIM105 - per call: a plain `try` costs less than contextlib.suppress
            current_span.reset(token)
        except ValueError:  # resumed in another context: leave the variable to that context
            pass

    def prepare(self, options: Mapping[str, Any]) -> Prepared | None:
        """The opt-in request change, if any (never the original kwargs object)."""
        if not options or self.endpoint.prepare is None:
            return None
        try:
            return self.endpoint.prepare(options, dict(self.kwargs))
        except Exception as exc:
            internal_error(f"{self.endpoint.target} prepare", exc)
            return None

    def propagate(self, instance: Any, kwargs: Any) -> Any:
        """The kwargs to send: with a `traceparent` naming this span, when the
        endpoint can carry one and `propagate_context` is on (a copy, never the
        caller's objects)."""
        inject = self.endpoint.inject
        if inject is None or not _state.config().propagate_context:
            return kwargs
        try:
            span = self.span
            sent = dict(kwargs)
            outer = format_traceparent(span.trace_id, span.parent_id) if span.parent_id else None
            inject(instance, sent, format_traceparent(span.trace_id, span.span_id), outer)
            return sent
        except Exception as exc:
            internal_error(f"{self.endpoint.target} traceparent", exc)
            return kwargs

    def fail(self, exc: BaseException) -> None:
        self.detach()
        self.kwargs, self.request = None, _RETURNED
        try:
            record_error(self.span, exc)
            _api.finish(self.span, exc)
        except Exception as error:
            internal_error(f"{self.endpoint.target} error", error)

    def parse_raw(self, result: Any) -> Any:
        """For `with_raw_response` calls (not streamed): the parsed response, which the
        SDK caches, so the caller's own `.parse()` gets the same object."""
        raw = self.endpoint.raw_responses
        if self.raw is None or self.request.stream or raw is None or self.raw not in raw.parseable:
            return None
        try:
            return result.parse()
        except Exception as exc:
            internal_error(f"{self.endpoint.target} raw parse", exc)
            return None

    def succeed(
        self,
        result: Any,
        *,
        is_async: bool,
        prepared: Prepared | None = None,
        parsed: Any = None,
    ) -> Any:
        self.detach()
        try:
            endpoint = self.endpoint
            seam = endpoint.stream
            if self.raw is not None:
                if parsed is not None and endpoint.response is not None:
                    self._respond(parsed)
                else:
                    self.span.set_attribute("tracekit.raw_response", self.raw)
            elif seam is not None and seam.is_stream(result):
                return self._stream(seam, result, is_async, prepared)
            elif endpoint.response is not None:
                if self.snapshot is None:  # the request was mapped on the caller
                    self.span.defer(self)
                self.response = result
            self.kwargs, self.request = None, _RETURNED
            _api.finish(self.span, None)
        except Exception as error:
            internal_error(f"{self.endpoint.target} response", error)
            self.span.end()
        return result

    def _respond(self, response: Any) -> None:
        """Have `response` mapped on the export worker, after the request."""
        if self.snapshot is None:
            self.span.defer(self)
        self.response = response

    def __call__(self) -> None:
        """The deferred mapping, on the export worker: the request, then the response."""
        span = self.span
        if self.snapshot is not None:
            try:  # a request that fails to map leaves the response to be mapped
                _map_request(self.endpoint, self.instance, self.snapshot, span)
            except Exception as exc:
                internal_error(f"deferred mapping of {span.name!r}", exc)
        response = self.endpoint.response
        if self.response is not _NO_RESPONSE and response is not None:
            response(span, self.response)

    def _stream(
        self, seam: StreamSeam, result: Any, is_async: bool, prepared: Prepared | None
    ) -> Any:
        """The result with its stream traced: the span ends when the stream does."""
        hide = prepared.hide if prepared else None
        call = StreamCall(self.span, seam.accumulator(self.request), hide)
        if seam.reads is not None:
            value = seam.reads.pending(self.span)
            if value is not None:
                call.reads = (seam.reads.reading, value)
        stream = seam.take(result) if seam.take is not None else result
        self.kwargs, self.request = None, _RETURNED
        if is_async:
            proxy: Any = TracedAsyncStream(stream, call)
        elif hasattr(type(stream), "__next__"):
            proxy = TracedStream(stream, call)
        else:
            proxy = TracedIterable(stream, call)
        return seam.put(result, proxy) if seam.put is not None else proxy


def _never_entered(pending: list[_Call]) -> None:
    """A helper dropped without entering its block made no request: end its span."""
    for call in pending:
        call.span.set_attribute("tracekit.stream.ended_by", "never_entered")
        call.span.end()


class HelperManager(wrapt.ObjectProxy):  # type: ignore[misc,type-arg]
    """Wraps a stream helper's context manager that makes its request on enter.

    The span starts when the helper is called (its request is built then) and is
    current again while the block is entered (the request is made then); it ends
    exactly once: when the helper stream is read to the end, closed, dropped, or
    when the block exits.
    """

    def __init__(self, wrapped: Any, endpoint: Endpoint, call: _Call) -> None:
        super().__init__(wrapped)
        self._self_endpoint = endpoint
        self._self_pending = [call]  # until entered
        self._self_call: StreamCall | None = None
        weakref.finalize(self, _never_entered, self._self_pending).atexit = False

    def _self_begin(self) -> _Call | None:
        """The call whose request the first enter makes, current until it is made."""
        if not self._self_pending:
            return None
        call = self._self_pending.pop()
        call.token = current_span.set(call.span)
        call.otel = _otel.enter(call.span)
        return call

    def _self_wrap(self, call: _Call, stream: Any, is_async: bool) -> Any:
        try:
            assert self._self_endpoint.helper is not None
            self._self_call = StreamCall(call.span, self._self_endpoint.helper(stream))
            proxy = AsyncHelperStream if is_async else HelperStream
            return proxy(stream, self._self_call)
        except Exception as exc:
            internal_error(f"{self._self_endpoint.target} helper", exc)
            call.span.end()
            return stream

    def _self_end(self, exc: BaseException | None) -> None:
        if self._self_call is not None:
            self._self_call.end(exc, "context_exit")

    def __enter__(self) -> Any:
        call = self._self_begin()
        if call is None:
            return self.__wrapped__.__enter__()
        try:
            stream = self.__wrapped__.__enter__()
        except BaseException as exc:
            call.fail(exc)
            raise
        call.detach()
        return self._self_wrap(call, stream, is_async=False)

    def __exit__(self, et: Any, exc: BaseException | None, tb: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(et, exc, tb)
        finally:
            self._self_end(exc)

    async def __aenter__(self) -> Any:
        call = self._self_begin()
        if call is None:
            return await self.__wrapped__.__aenter__()
        try:
            stream = await self.__wrapped__.__aenter__()
        except BaseException as exc:
            call.fail(exc)
            raise
        call.detach()
        return self._self_wrap(call, stream, is_async=True)

    async def __aexit__(self, et: Any, exc: BaseException | None, tb: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(et, exc, tb)
        finally:
            self._self_end(exc)
