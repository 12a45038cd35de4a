"""Propagation at the HTTP seam: a traced call's `traceparent` put on the HTTP request
the SDK builds while the call's span is current.

The traced call remembers its `traceparent` in a context variable, and a wrapper of
the SDK's request builder adds it to the headers of the request it returns, so the
SDK gets the call's arguments as the caller passed them. Handing the header over as a
call option instead (Gemini's `config.http_options`) makes google-genai convert the
call's whole config: up to +370 µs on a call that had none. (OpenAI and Anthropic
take theirs as the call option `extra_headers`, which with their current versions
costs less than this seam: see `_stainless._in_extra_headers`.)

The builder is a private SDK method, so a provider asks `remember()` first: False
(the method is missing in this SDK version, or something replaced the patch) means
the call must carry the header as a call option, as before.

A stream whose SDK builds the request only when it is first read (google-genai's
generators) takes the remembered value along (`pending()`), and each read of it runs
with its value set in `reading`, so the requests built then (the first, and those of automatic
continuation or function calling) carry it although the span is no longer current.
"""

from __future__ import annotations

import sys
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import wrapt

from tracekit._context import current_span
from tracekit._guard import internal_error
from tracekit._propagation import TRACEPARENT, header
from tracekit.integrations._endpoint import Endpoint

if TYPE_CHECKING:
    from tracekit._span import Span

# `format_traceparent` writes "00-<32 hex trace id>-<16 hex span id>-<flags>".
_SPAN_ID = slice(36, 52)


class RequestSeam:
    """One SDK's request builder (`module.Class.method`), patched to add the
    `traceparent` of the traced call being made in this context.

    Args:
        name: the SDK, for the context variable's name and error reports.
        module: the module that defines the builder's class.
        target: `"Class.method"`: the builder, called with the call's span current
            and returning a request whose `headers` is a dict or an httpx `Headers`.
    """

    def __init__(self, name: str, module: str, target: str) -> None:
        self.name = name
        self.module = module
        self.target = target
        self._owner, _, self._method = target.rpartition(".")
        self._owner_class: Any = None
        # The span of the traced call being made in this context, and its value. Not
        # reset when the call returns (a retry builds its request again): the wrapper
        # only uses it while that very span is current, which it never is again once its
        # call has returned. So it holds one span per thread or task until the next call.
        self._outgoing: ContextVar[tuple[Span, str] | None] = ContextVar(
            f"tracekit_{name}_traceparent", default=None
        )
        # The value of a stream being read in this context: a traced stream sets it
        # around each read (`StreamSeam.reads`; a variable, not a method, per chunk).
        self.reading: ContextVar[str | None] = ContextVar(f"tracekit_{name}_reading", default=None)

    def endpoint(self) -> Endpoint:
        """The `raw` endpoint that patches the builder."""
        return Endpoint.raw(self.module, self.target, self.add_traceparent)

    def installed(self) -> bool:
        """Whether the builder is wrapped (by tracekit, perhaps under another wrapt
        wrapper): False for an SDK version without it, or after `revert()`."""
        owner = self._owner_class  # looked up once found: this runs on every traced call
        if owner is None:
            owner = getattr(sys.modules.get(self.module), self._owner, None)
            if owner is None:
                return False
            self._owner_class = owner
        method = getattr(owner, "__dict__", {}).get(self._method)
        return isinstance(method, wrapt.FunctionWrapper)

    def remember(self, value: str) -> bool:
        """Send `value`, which names the current span, on the requests built while that
        span is current. False when it cannot be done here: the caller passes it in the
        call instead. A `00` value (an unsampled remote caller's) names no span here."""
        span = current_span.get()
        if span is None or value[_SPAN_ID] != span.span_id or not self.installed():
            return False
        self._outgoing.set((span, value))
        return True

    def pending(self, span: Span) -> str | None:
        """The value `remember()` was given for `span` in this context, if any: a
        stream whose request is built when it is read keeps it for its reads (`reading`)."""
        outgoing = self._outgoing.get()
        return outgoing[1] if outgoing is not None and outgoing[0] is span else None

    def add_traceparent(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        """The builder's wrapper: the request it built, with the traced call's
        `traceparent` when the headers (the client's and the call's, merged by the SDK)
        have none. Only while the span that asked for it is current, or while its
        stream is read: a stale value (its call has returned) never reaches another
        request."""
        request = wrapped(*args, **kwargs)
        outgoing = self._outgoing.get()
        if outgoing is not None and outgoing[0] is current_span.get():
            value: str | None = outgoing[1]  # a traced call being made (also inside a read)
        else:
            value = self.reading.get()
            if value is None:
                return request
        try:
            headers = request.headers
            if isinstance(headers, dict):  # google-genai: a plain dict, any spelling
                if header(headers) is None:
                    headers[TRACEPARENT] = value
            elif headers.get(TRACEPARENT) is None:  # httpx Headers: case-insensitive
                headers[TRACEPARENT] = value
        except Exception as exc:
            internal_error(f"{self.name} traceparent", exc)
        return request
