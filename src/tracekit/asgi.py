"""ASGI middleware: each HTTP request becomes a span that continues the caller's trace.

Example:
    from tracekit.asgi import TracekitMiddleware

    app = TracekitMiddleware(app)   # FastAPI/Starlette: app.add_middleware(TracekitMiddleware)

Like `tracekit.wsgi`: the span (`"GET /items/{id}"` when the framework puts
its route in the scope, as Starlette does, else `"GET /items/1"`; type
`CHAIN`) continues an incoming W3C `traceparent`, takes its status from
`http.response.start` and ends when the last body message is sent (a
streamed response included), or when the app raises. Lifespan and websocket
scopes pass through untraced; at lifespan shutdown, what tracekit holds is
delivered before the app's `lifespan.shutdown.complete` goes out (uvicorn ends a
SIGTERM-stopped process without atexit). No framework is imported.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from tracekit._context import current_span
from tracekit._guard import guard
from tracekit._propagation import TRACEPARENT, continue_trace, header, remote_sampled
from tracekit._span import Span
from tracekit.wsgi import end_request_span, start_request_span

__all__ = ["TracekitMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def _route(scope: Scope) -> str | None:
    route = scope.get("route")  # Starlette/FastAPI set it once the router matched
    path = getattr(route, "path", None) or getattr(route, "path_format", None)
    return path if isinstance(path, str) and path else None


class TracekitMiddleware:
    """Wraps an ASGI application; see the module docstring."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") == "lifespan":
            await self.app(scope, receive, _flushing_at_shutdown(send))
            return
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        method = str(scope.get("method") or "GET")
        path = str(scope.get("root_path") or "") + str(scope.get("path") or "") or "/"
        traceparent = header(scope.get("headers"))
        span = start_request_span(method, path, traceparent)
        if not span.is_recording:
            if remote_sampled({TRACEPARENT: traceparent}) is False:
                # A caller that was not recording: nothing is recorded here either,
                # and the calls made from here say so.
                with continue_trace({TRACEPARENT: traceparent}):
                    await self.app(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        status: list[int | None] = [None]

        async def traced_send(message: Message) -> None:
            kind = message.get("type")
            if kind == "http.response.start":
                with guard("asgi response start"):
                    code = message.get("status")
                    status[0] = code if isinstance(code, int) else None
                    _set_route(span, scope)
            await send(message)
            if kind == "http.response.body" and not message.get("more_body", False):
                end_request_span(span, status[0], None)

        token = current_span.set(span)
        try:
            await self.app(scope, receive, traced_send)
        except BaseException as exc:
            _set_route(span, scope)
            end_request_span(span, status[0], exc)
            raise
        finally:
            try:
                current_span.reset(token)
            except ValueError:  # reset in another context
                current_span.set(None)
        _set_route(span, scope)
        end_request_span(span, status[0], None)  # no body sent (or ended already)


def _flushing_at_shutdown(send: Send) -> Send:
    """The lifespan `send`: before the app reports its shutdown done, deliver what
    tracekit holds (within TRACEKIT_SHUTDOWN_TIMEOUT, off the event loop). A
    server may end the process right after that message without running atexit
    (uvicorn re-raises the SIGTERM it caught)."""

    async def flushing_send(message: Message) -> None:
        if message.get("type") in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            with guard("asgi lifespan flush"):
                from tracekit import _state

                timeout = _state.config().shutdown_timeout
                await asyncio.get_running_loop().run_in_executor(None, _state.flush, timeout)
        await send(message)

    return flushing_send


def _set_route(span: Span, scope: Scope) -> None:
    if span.ended:
        return
    route = _route(scope)
    if route is not None:
        span.set_attribute("http.route", route)
