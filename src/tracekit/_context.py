"""The context: one ContextVar for the current span, one for suppression, one for a
remote parent (a trace continued from another process)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tracekit._span import Span

current_span: ContextVar[Span | None] = ContextVar("tracekit_current_span", default=None)
_suppressed: ContextVar[bool] = ContextVar("tracekit_suppressed", default=False)
# (trace id, span id) of a span in another process that new root spans nest under
# (`tracekit.continue_trace`); the local current span, when there is one, wins.
remote_parent: ContextVar[tuple[str, str] | None] = ContextVar(
    "tracekit_remote_parent", default=None
)


# A framework that keeps its own notion of the running step (LangChain) can name it;
# it is used when it started later than the current span, i.e. is nested deeper.
parent_resolver: Callable[[], Span | None] | None = None


def current_parent() -> Span | None:
    """The span new spans nest under: the current span, or a framework's running
    step when that is deeper."""
    span = current_span.get()
    resolver = parent_resolver
    if resolver is None:
        return span
    other = resolver()
    if other is None or other is span or other.end_time_ns is not None:
        return span
    if span is None or other.start_time_ns >= span.start_time_ns:
        return other
    return span


def is_suppressed() -> bool:
    """True inside `suppress_instrumentation()` (tracekit's own I/O)."""
    return _suppressed.get()


@contextmanager
def suppress_instrumentation() -> Iterator[None]:
    """Run a block whose SDK calls are not traced (used by exporters)."""
    token = _suppressed.set(True)
    try:
        yield
    finally:
        _suppressed.reset(token)
