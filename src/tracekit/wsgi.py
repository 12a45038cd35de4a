"""WSGI middleware: each request becomes a span that continues the caller's trace.

Example:
    from tracekit.wsgi import TracekitMiddleware

    app = TracekitMiddleware(app)   # Flask: app.wsgi_app = TracekitMiddleware(app.wsgi_app)

The span (`"GET /path"`, type `CHAIN`) is the parent of everything traced while
the request is handled, and a child of the span named by an incoming W3C
`traceparent` header (a client that sent `tracekit.get_tracing_headers()`).
WSGI has no route: an app that knows it may set the `http.route` attribute on
`tracekit.get_current_span()`, and the span is then named after the route.
No framework is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from tracekit import _api
from tracekit._context import current_span
from tracekit._guard import guard
from tracekit._propagation import TRACEPARENT, continue_trace, remote_sampled
from tracekit._span import NON_RECORDING, Span, SpanStatus, SpanType

__all__ = ["TracekitMiddleware"]

StartResponse = Callable[..., Any]


def start_request_span(method: str, path: str, traceparent: Any) -> Span:
    """The request's span, continuing `traceparent` when it is valid (never raises)."""
    with guard("request span"), continue_trace({TRACEPARENT: traceparent}):
        span = _api.start(f"{method} {path}", SpanType.CHAIN)
        span.set_attributes({"http.request.method": method, "url.path": path})
        return span
    return NON_RECORDING


def end_request_span(span: Span, status: int | None, exc: BaseException | None) -> None:
    """Status code, route name, `ERROR` on an exception or a 5xx, then end (once)."""
    if span.ended:
        return
    with guard("request span end"):
        if status is not None:
            span.set_attribute("http.response.status_code", status)
            if status >= 500 and exc is None:
                span.set_status(SpanStatus.ERROR, f"HTTP {status}")
        route = (span.attributes or {}).get("http.route")
        method = (span.attributes or {}).get("http.request.method")
        if isinstance(route, str) and route and method:
            span.name = f"{method} {route}"
    _api.finish(span, exc)


def _status_code(status: Any) -> int | None:
    try:
        return int(str(status).split(" ", 1)[0])
    except ValueError:
        return None


class TracekitMiddleware:
    """Wraps a WSGI application; see the module docstring."""

    def __init__(self, app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD") or "GET")
        path = str(environ.get("SCRIPT_NAME") or "") + str(environ.get("PATH_INFO") or "") or "/"
        traceparent = environ.get("HTTP_TRACEPARENT")
        span = start_request_span(method, path, traceparent)
        if not span.is_recording:
            if remote_sampled({TRACEPARENT: traceparent}) is False:
                return _unrecorded(self.app, environ, start_response, traceparent)
            return self.app(environ, start_response)
        status: list[int | None] = [None]

        def traced_start_response(code: str, headers: Any, exc_info: Any = None) -> Any:
            status[0] = _status_code(code)
            if exc_info is None:
                return start_response(code, headers)
            return start_response(code, headers, exc_info)

        token = current_span.set(span)
        try:
            result = self.app(environ, traced_start_response)
        except BaseException as exc:
            end_request_span(span, status[0], exc)
            raise
        finally:
            _reset(token)
        return _Body(result, span, status)


def _reset(token: Any) -> None:
    try:
        current_span.reset(token)
    except ValueError:  # reset in another context
        current_span.set(None)


class _Body:
    """The response body: iterated with the span current; the span ends on `close()`
    (which WSGI servers always call), or when iterating it raises."""

    def __init__(self, result: Iterable[bytes], span: Span, status: list[int | None]) -> None:
        self._result = result
        self._iterator: Iterator[bytes] | None = None
        self._span = span
        self._status = status

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        token = current_span.set(self._span)
        try:
            if self._iterator is None:
                self._iterator = iter(self._result)
            return next(self._iterator)
        except StopIteration:
            raise
        except BaseException as exc:
            end_request_span(self._span, self._status[0], exc)
            raise
        finally:
            _reset(token)

    def close(self) -> None:
        error: BaseException | None = None
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        except BaseException as exc:
            error = exc
            raise
        finally:
            end_request_span(self._span, self._status[0], error)


def _unrecorded(
    app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]],
    environ: dict[str, Any],
    start_response: StartResponse,
    traceparent: Any,
) -> Iterable[bytes]:
    """A request from a caller that was not recording: nothing is recorded while it is
    handled (its body included), and the calls made from it say so."""
    headers = {TRACEPARENT: traceparent}
    with continue_trace(headers):
        result = app(environ, start_response)
    return _UnrecordedBody(result, headers)


class _UnrecordedBody:
    """A response body iterated under the caller's unrecorded trace context."""

    def __init__(self, result: Iterable[bytes], headers: dict[str, str]) -> None:
        self._result = result
        self._iterator: Iterator[bytes] | None = None
        self._headers = headers

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        with continue_trace(self._headers):
            if self._iterator is None:
                self._iterator = iter(self._result)
            return next(self._iterator)

    def close(self) -> None:
        close = getattr(self._result, "close", None)
        if close is not None:
            close()
