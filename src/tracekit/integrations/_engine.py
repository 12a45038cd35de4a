"""The one patch engine every SDK integration uses.

A provider module declares `Endpoint`s (what to patch, how to map a request,
a response and a stream) and an `Integration` patches them once with wrapt.
Whether a call is traced is decided at call time, so `autolog(disable=True)`
turns tracing off without unpatching; `Integration.revert()` really unpatches
(for tests). The original SDK call happens exactly once, outside any guard,
and its exceptions reach the caller unchanged.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import wrapt

from tracekit import _api, _state
from tracekit._context import current_span, is_suppressed
from tracekit._guard import internal_error
from tracekit._propagation import format_traceparent, unsampled_traceparent
from tracekit._span import NON_RECORDING, Span
from tracekit.integrations._base import BaseIntegration
from tracekit.integrations._common import Request, record_error
from tracekit.integrations._registry import IntegrationSpec
from tracekit.integrations._streams import (
    Accumulator,
    AsyncHelperStream,
    HelperStream,
    StreamCall,
    StreamManager,
    TracedAsyncStream,
    TracedStream,
)

logger = logging.getLogger("tracekit")


@dataclass(frozen=True)
class Endpoint:
    """One SDK method to patch and how to map it.

    Attributes:
        module: the module that defines the class (imported by `autolog`).
        target: `"Class.method"` (or a function name) inside `module`.
        is_async: the method returns an awaitable (choose by class, not inspect).
        request: maps (instance, kwargs) to a `Request`.
        response: records a non-streamed result on the span.
        accumulator: makes the accumulator for a streamed result.
        is_stream: tells a streamed result from a plain one.
        stream_manager: the method returns a stream helper context manager whose
            request goes through another traced method (OpenAI's `stream()`).
        helper: the method returns a context manager that makes the request itself
            on enter and yields a helper stream (Anthropic's `messages.stream()`);
            `helper(stream)` makes the accumulator that reads it at the end.
    """

    module: str
    target: str
    is_async: bool = False
    request: Callable[[Any, Mapping[str, Any]], Request] | None = None
    response: Callable[[Span, Any], None] | None = None
    accumulator: Callable[[Request], Accumulator] | None = None
    is_stream: Callable[[Any], bool] = lambda result: False
    stream_manager: bool = False
    prepare: Callable[[Mapping[str, Any], dict[str, Any]], Prepared | None] | None = None
    helper: Callable[[Any], Accumulator] | None = None
    positional: tuple[str, ...] = ()  # names of positional parameters, for `request`
    when: Callable[[], bool] | None = None  # trace only when this holds at call time
    # Puts a `traceparent` header on the request: (instance, kwargs to send, value,
    # the value a traced outer call put there, which may be replaced) -> None.
    # Assigns new objects into the kwargs dict; never mutates the caller's.
    inject: Callable[[Any, dict[str, Any], str, str | None], None] | None = None
    # A wrapt wrapper patched as it is (no span of its own), for a seam below the SDK's
    # public methods: Gemini puts `traceparent` on the HTTP request there.
    raw: Callable[[Any, Any, Any, Any], Any] | None = None


@dataclass(frozen=True)
class Prepared:
    """An opt-in change to the request, and how to hide its effect from the caller."""

    kwargs: dict[str, Any]
    hide: Callable[[Any], bool]  # chunks the caller would not have received


class Integration(BaseIntegration):
    """The patches of one SDK's methods, and whether they record (decided at call time)."""

    def __init__(self, spec: IntegrationSpec, endpoints: list[Endpoint]) -> None:
        super().__init__(spec)
        self.endpoints = endpoints
        self._patched: list[tuple[Any, str, Any]] = []
        self._generation = 0  # bumped by revert(): hooks registered before it do nothing

    def _patch(self) -> None:
        """Patch each endpoint when its module is imported: at once for a module the
        program already imported, else by a post-import hook. The SDKs import their
        resource modules lazily (OpenAI's Responses alone is ~45 ms); importing them
        all here would make `autolog()` cost what the program may never use."""
        generation = self._generation
        for endpoint in self.endpoints:
            if endpoint.module in sys.modules:
                self._patch_endpoint(endpoint, sys.modules[endpoint.module])
            else:
                wrapt.register_post_import_hook(
                    functools.partial(self._imported, endpoint, generation), endpoint.module
                )

    def _imported(self, endpoint: Endpoint, generation: int, module: Any) -> None:
        if generation == self._generation:  # not reverted since the hook was registered
            try:
                self._patch_endpoint(endpoint, module)
            except Exception as exc:  # never break the program's import
                internal_error(f"{endpoint.target} patch", exc)

    def _patch_endpoint(self, endpoint: Endpoint, module: Any) -> None:
        try:
            owner_name, _, method = endpoint.target.rpartition(".")
            owner = getattr(module, owner_name) if owner_name else module
            original = owner.__dict__[method]
        except (AttributeError, KeyError):
            logger.debug("tracekit: %s has no %s; skipped", endpoint.module, endpoint.target)
            return
        wrapt.wrap_function_wrapper(owner, method, self._wrapper(endpoint))
        self._patched.append((owner, method, original))

    def _unpatch(self) -> None:
        for owner, method, original in reversed(self._patched):
            setattr(owner, method, original)
        self._patched.clear()
        self._generation += 1

    def _wrapper(self, endpoint: Endpoint) -> Callable[..., Any]:
        if endpoint.raw is not None:
            return endpoint.raw
        if endpoint.stream_manager:
            return self._manager_wrapper()
        if endpoint.helper is not None:
            return self._helper_wrapper(endpoint)
        return self._async_wrapper(endpoint) if endpoint.is_async else self._sync_wrapper(endpoint)

    def _skip(self, endpoint: Endpoint | None = None) -> bool:
        # Runs on every call of a patched method, traced or not: `active()` inlined.
        if not self.enabled or not _state.config().enabled or is_suppressed():
            return True
        return endpoint is not None and endpoint.when is not None and not endpoint.when()

    def _manager_wrapper(self) -> Callable[..., Any]:
        def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            manager = wrapped(*args, **kwargs)
            if self._skip():
                return manager
            return StreamManager(manager)

        return wrapper

    def _helper_wrapper(self, endpoint: Endpoint) -> Callable[..., Any]:
        def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            if self._skip():
                return wrapped(*args, **kwargs)
            # The span starts now: the helper builds its request (headers included) now,
            # and the request names the span in its `traceparent`.
            call = _Call.begin(endpoint, instance, kwargs)
            if call is None:
                return wrapped(*args, **_unrecorded(endpoint, instance, kwargs))
            try:
                manager = wrapped(*args, **call.propagate(instance, kwargs))
            except BaseException as exc:
                call.fail(exc)
                raise
            call.detach()
            return HelperManager(manager, endpoint, call)

        return wrapper

    def _sync_wrapper(self, endpoint: Endpoint) -> Callable[..., Any]:
        def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            if self._skip(endpoint):
                return wrapped(*args, **kwargs)
            call = _Call.begin(endpoint, instance, _named(endpoint, args, kwargs))
            if call is None:
                return wrapped(*args, **_unrecorded(endpoint, instance, kwargs))
            prepared = call.prepare(self.options)
            sent = call.propagate(instance, prepared.kwargs if prepared else kwargs)
            try:
                result = wrapped(*args, **sent)
            except BaseException as exc:
                call.fail(exc)
                raise
            parsed = call.parse_raw(result)
            return call.succeed(result, is_async=False, prepared=prepared, parsed=parsed)

        return wrapper

    def _async_wrapper(self, endpoint: Endpoint) -> Callable[..., Any]:
        async def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            if self._skip(endpoint):
                return await wrapped(*args, **kwargs)
            call = _Call.begin(endpoint, instance, _named(endpoint, args, kwargs))
            if call is None:
                return await wrapped(*args, **_unrecorded(endpoint, instance, kwargs))
            prepared = call.prepare(self.options)
            sent = call.propagate(instance, prepared.kwargs if prepared else kwargs)
            try:
                result = await wrapped(*args, **sent)
            except BaseException as exc:
                call.fail(exc)
                raise
            parsed = call.parse_raw(result)
            if inspect.isawaitable(parsed):  # async raw responses parse with a coroutine
                try:
                    parsed = await parsed
                except Exception as exc:
                    internal_error(f"{endpoint.target} raw parse", exc)
                    parsed = None
            return call.succeed(result, is_async=True, prepared=prepared, parsed=parsed)

        return wrapper


def _named(endpoint: Endpoint, args: Any, kwargs: Any) -> Any:
    """Keyword view of a call for the request mapper (most SDK methods are keyword-only)."""
    if not args or not endpoint.positional:
        return kwargs
    return {**dict(zip(endpoint.positional, args, strict=False)), **kwargs}


_RAW_HEADER = "X-Stainless-Raw-Response"  # set by the SDKs' with_raw_response forms
_PARSEABLE_RAW = ("true", "raw")  # with_raw_response (OpenAI, Anthropic); not "stream"


def _unrecorded(endpoint: Endpoint, instance: Any, kwargs: Any) -> Any:
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
    """One traced SDK call: its span, made current only while the SDK runs."""

    __slots__ = ("endpoint", "kwargs", "request", "span", "token")

    def __init__(self, endpoint: Endpoint, request: Request, span: Span, kwargs: Any) -> None:
        self.endpoint = endpoint
        self.request = request
        self.span = span
        self.kwargs = kwargs
        self.token = current_span.set(span)

    @classmethod
    def begin(cls, endpoint: Endpoint, instance: Any, kwargs: Any) -> _Call | None:
        try:
            assert endpoint.request is not None
            request = endpoint.request(instance, kwargs)
            span = _api.start(request.name, request.span_type)
            if span is NON_RECORDING:
                return None
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
        try:  # noqa: SIM105 - per call: a plain `try` costs less than contextlib.suppress
            current_span.reset(self.token)
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
        try:
            record_error(self.span, exc)
            _api.finish(self.span, exc)
        except Exception as error:
            internal_error(f"{self.endpoint.target} error", error)

    def parse_raw(self, result: Any) -> Any:
        """For `with_raw_response` calls (not streamed): the parsed response, which the
        SDK caches, so the caller's own `.parse()` gets the same object."""
        if self.request.stream or _raw_mode(self.kwargs) not in _PARSEABLE_RAW:
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
            raw = _raw_mode(self.kwargs)
            if raw is not None:
                if parsed is not None and endpoint.response is not None:
                    self.span.defer(functools.partial(endpoint.response, self.span, parsed))
                else:
                    self.span.set_attribute("tracekit.raw_response", raw)
            elif endpoint.accumulator is not None and endpoint.is_stream(result):
                hide = prepared.hide if prepared else None
                call = StreamCall(self.span, endpoint.accumulator(self.request), hide)
                return TracedAsyncStream(result, call) if is_async else TracedStream(result, call)
            elif endpoint.response is not None:
                self.span.defer(functools.partial(endpoint.response, self.span, result))
            _api.finish(self.span, None)
        except Exception as error:
            internal_error(f"{self.endpoint.target} response", error)
            self.span.end()
        return result


def _raw_mode(kwargs: Mapping[str, Any]) -> str | None:
    headers = kwargs.get("extra_headers")
    if isinstance(headers, Mapping):
        value = headers.get(_RAW_HEADER)
        return str(value) if value is not None else None
    return None


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
