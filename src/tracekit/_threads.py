"""Carry the caller's context into thread pools.

`ThreadPoolExecutor.submit` (and so `map`, `loop.run_in_executor` and
`asyncio.to_thread`) runs the callable in a copy of the submitting context,
so spans created in the worker thread nest under the span that submitted the
work. Installed once, when the first span starts; switched per call by
`configure(propagate_context_to_threads=...)` / `TRACEKIT_THREAD_CONTEXT`.
"""

from __future__ import annotations

import contextvars
import sys
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

    When the application has not imported `concurrent.futures.thread` yet and an
    autolog has loaded wrapt, the patch waits for that import (wrapt's post-import
    hook, which the integrations already use): the import costs about 2 ms (its
    `_queue` extension), which the first traced call would otherwise pay for pools
    the application may never make. `concurrent.futures` loads the module only when
    `ThreadPoolExecutor` is first named (asyncio's default executor too), and the
    hook patches it before that name is handed out.
    """
    global _installed
    if _installed:
        return
    _installed = True
    wrapt = sys.modules.get("wrapt")
    if "concurrent.futures.thread" not in sys.modules and wrapt is not None:
        wrapt.register_post_import_hook(_patch, "concurrent.futures.thread")
        return
    import concurrent.futures.thread

    _patch(concurrent.futures.thread)


def _patch(module: Any) -> None:
    """Patch `module.ThreadPoolExecutor.submit` (`concurrent.futures.thread`)."""
    import functools

    executor = module.ThreadPoolExecutor
    original: Callable[..., Any] = executor.submit

    @functools.wraps(original)
    def submit(self: Any, /, *args: Any, **kwargs: Any) -> Any:
        return _submit(functools.partial(original, self), self, args, kwargs)

    executor.submit = submit
