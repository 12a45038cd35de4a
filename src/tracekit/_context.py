"""The context: one ContextVar for the current span, one for suppression."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tracekit._span import Span

current_span: ContextVar[Span | None] = ContextVar("tracekit_current_span", default=None)
_suppressed: ContextVar[bool] = ContextVar("tracekit_suppressed", default=False)


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
