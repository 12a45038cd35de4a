"""What an integration declares: one `Endpoint` per SDK seam, each built by a named constructor.

The engine (`_engine.Integration`) knows no SDK. A provider module says, per method it
patches, which of five behaviours applies and hands over its mappers:

- `Endpoint.call`: a method that makes one request and returns its result, plain or
  streamed (the stream may also sit inside the result, as botocore's does).
- `Endpoint.stream_manager`: a method returning a stream helper whose request goes
  through another traced method (OpenAI's `chat.completions.stream()`).
- `Endpoint.helper_stream`: a method returning a context manager that makes the request
  itself on enter and yields a helper stream (Anthropic's `messages.stream()`).
- `Endpoint.raw`: a wrapt wrapper patched as it is, with no span of its own, for a seam
  below the public methods (Gemini puts `traceparent` on the HTTP request there).
- `Endpoint.factory`: a function that creates clients at run time (botocore generates
  its client classes; Speakeasy SDKs take event hooks on the client): `instrument`
  is called with each object it returns and may patch that object's class through
  `Integration.patch` (undone by `revert()`) or register the SDK's own hooks.

SDK-family conventions (how a Stainless SDK asks for a raw response, where it keeps
request options) are passed in, never assumed: see `_stainless.py`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tracekit._span import Span
    from tracekit.integrations._common import Request
    from tracekit.integrations._engine import Integration
    from tracekit.integrations._request_seam import RequestSeam
    from tracekit.integrations._streams import Accumulator

RequestMapper = Callable[[Any, Mapping[str, Any]], "Request"]
ResponseMapper = Callable[["Span", Any], None]
# (instance, kwargs to send, traceparent value, the value a traced outer call put there,
# which may be replaced) -> None. Assigns new objects into the kwargs dict; never mutates
# the caller's.
Injector = Callable[[Any, dict[str, Any], str, "str | None"], None]
Wrapper = Callable[[Any, Any, Any, Any], Any]


class Kind(enum.Enum):
    """The five behaviours an endpoint can have (see the module docstring)."""

    CALL = "call"
    STREAM_MANAGER = "stream_manager"
    HELPER_STREAM = "helper_stream"
    RAW = "raw"
    FACTORY = "factory"


@dataclass(frozen=True, kw_only=True)
class StreamSeam:
    """How a call's streamed result is recognised, read and handed back.

    Attributes:
        is_stream: tells a streamed result from a plain one.
        accumulator: makes the accumulator that reads the chunks.
        take: the stream inside the result (default: the result is the stream).
        put: the result handed to the caller with the traced stream in place of
            `take(result)` (default: the traced stream itself).
        reads: the SDK builds the stream's request when the stream is read (after the
            call returned): the `traceparent` the call remembered through this seam
            goes on the requests built during its reads.
    """

    is_stream: Callable[[Any], bool]
    accumulator: Callable[[Request], Accumulator]
    take: Callable[[Any], Any] | None = None
    put: Callable[[Any, Any], Any] | None = None
    reads: RequestSeam | None = None


@dataclass(frozen=True, kw_only=True)
class RawResponses:
    """How an SDK family asks for the raw HTTP response instead of the parsed result.

    Attributes:
        mode: the call's raw-response mode from its keyword arguments, None for a
            normal call.
        parseable: the modes whose result has a `.parse()` that returns (and caches)
            the parsed response, which is then recorded.
    """

    mode: Callable[[Mapping[str, Any]], str | None]
    parseable: frozenset[str]


@dataclass(frozen=True)
class Prepared:
    """An opt-in change to the request, and how to hide its effect from the caller."""

    kwargs: dict[str, Any]
    hide: Callable[[Any], bool]  # chunks the caller would not have received


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    """One SDK seam to patch and how to map it; build it with a named constructor.

    Attributes:
        module: the module that defines the target (patched when it is imported).
        target: `"Class.method"` (or a function name) inside `module`.
        kind: which behaviour the engine gives the patched method.
        is_async: the method returns an awaitable (choose by class, not inspect).
        request: maps (instance, keyword view of the call) to a `Request`; with
            `head`, on the export worker (from a shallow copy of the call's keyword
            arguments, see `_call.snapshot`), else on the caller's thread.
        head: the part of the request the caller needs at once, cheaply: the span's
            name and type, the stream flag, and attributes read while the call runs
            (a `Request` without inputs). The rest of `request` is mapped later.
        response: records a non-streamed result on the span (on the export worker).
        stream: how a streamed result is recognised and read (`call` only).
        prepare: an opt-in request change (e.g. asking for stream usage).
        helper: makes the accumulator that reads a helper stream (`helper_stream`).
        positional: names of positional parameters, for `request`.
        when: trace only when this holds at call time.
        inject: puts a `traceparent` on the request (see `Injector`).
        raw_responses: the SDK family's raw-response convention, if it has one.
        wrapper: the wrapt wrapper of a `raw` endpoint.
        instrument: called with each object a `factory` endpoint returns.
        through: (wrapped, instance) -> the callable a traced call is made through
            instead of `wrapped` (Anthropic: the same method on a client copy without
            the SDK's own OpenTelemetry spans).
    """

    module: str
    target: str
    kind: Kind = Kind.CALL
    is_async: bool = False
    request: RequestMapper | None = None
    head: RequestMapper | None = None
    response: ResponseMapper | None = None
    stream: StreamSeam | None = None
    prepare: Callable[[Mapping[str, Any], dict[str, Any]], Prepared | None] | None = None
    helper: Callable[[Any], Accumulator] | None = None
    positional: tuple[str, ...] = ()
    when: Callable[[], bool] | None = None
    inject: Injector | None = None
    raw_responses: RawResponses | None = None
    wrapper: Wrapper | None = None
    instrument: Callable[[Any, Integration], None] | None = None
    through: Callable[[Any, Any], Callable[..., Any]] | None = None

    @classmethod
    def call(
        cls,
        module: str,
        target: str,
        *,
        request: RequestMapper,
        head: RequestMapper | None = None,
        response: ResponseMapper | None = None,
        stream: StreamSeam | None = None,
        is_async: bool = False,
        prepare: Callable[[Mapping[str, Any], dict[str, Any]], Prepared | None] | None = None,
        positional: tuple[str, ...] = (),
        when: Callable[[], bool] | None = None,
        inject: Injector | None = None,
        raw_responses: RawResponses | None = None,
    ) -> Endpoint:
        """A method that makes one request and returns its result, plain or streamed."""
        return cls(
            module=module,
            target=target,
            is_async=is_async,
            request=request,
            head=head,
            response=response,
            stream=stream,
            prepare=prepare,
            positional=positional,
            when=when,
            inject=inject,
            raw_responses=raw_responses,
        )

    @classmethod
    def stream_manager(cls, module: str, target: str) -> Endpoint:
        """A stream helper whose request goes through another traced method."""
        return cls(module=module, target=target, kind=Kind.STREAM_MANAGER)

    @classmethod
    def helper_stream(
        cls,
        module: str,
        target: str,
        *,
        request: RequestMapper,
        helper: Callable[[Any], Accumulator],
        inject: Injector | None = None,
        head: RequestMapper | None = None,
    ) -> Endpoint:
        """A context manager that makes the request on enter and yields a helper stream.

        The span starts when the method is called (the request, headers included, is
        built then) and ends once: the stream read to the end, closed, dropped, the
        block left, or the helper dropped without being entered.
        """
        return cls(
            module=module,
            target=target,
            kind=Kind.HELPER_STREAM,
            request=request,
            head=head,
            helper=helper,
            inject=inject,
        )

    @classmethod
    def raw(cls, module: str, target: str, wrapper: Wrapper) -> Endpoint:
        """A wrapt wrapper patched as it is (no span of its own)."""
        return cls(module=module, target=target, kind=Kind.RAW, wrapper=wrapper)

    @classmethod
    def factory(
        cls, module: str, target: str, *, instrument: Callable[[Any, Integration], None]
    ) -> Endpoint:
        """A function that creates clients at run time; `instrument(obj, integration)`
        sees each one (errors in it are reported, never raised into the app)."""
        return cls(module=module, target=target, kind=Kind.FACTORY, instrument=instrument)
