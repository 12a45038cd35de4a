"""Carry the caller's context into thread pools.

`ThreadPoolExecutor.submit` (and so `map`, `loop.run_in_executor` and
`asyncio.to_thread`) runs the callable in a copy of the submitting context,
so spans created in the worker thread nest under the span that submitted the
work. Installed once, when the first span starts; switched per call by
`configure(propagate_context_to_threads=...)` / `TRACEKIT_THREAD_CONTEXT`.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

from tracekit._context import current_span

_installed = False
enabled = True


def _submit(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if not enabled or not args or current_span.get() is None:
        return wrapped(*args, **kwargs)
    fn, *rest = args
    return wrapped(contextvars.copy_context().run, fn, *rest, **kwargs)


def install() -> None:
    """Patch `ThreadPoolExecutor.submit` once (idempotent).

    A plain function, not wrapt: this runs when the first span starts, and
    importing wrapt (which imports asyncio) would hold that first traced call
    for tens to hundreds of milliseconds. `submit` is a plain method of a
    plain class, so a function with its signature and `__wrapped__` is all
    the wrapping it needs.
    """
    global _installed
    if _installed:
        return
    _installed = True
    import concurrent.futures.thread
    import functools

    executor = concurrent.futures.thread.ThreadPoolExecutor
    original: Callable[..., Any] = executor.submit

    @functools.wraps(original)
    def submit(self: Any, /, *args: Any, **kwargs: Any) -> Any:
        return _submit(functools.partial(original, self), self, args, kwargs)

    executor.submit = submit  # type: ignore[method-assign]
