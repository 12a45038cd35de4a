"""tracekit: client-side tracing for LLM applications.

Example:
    import tracekit

    @tracekit.trace
    def answer(question: str) -> str:
        ...

`import tracekit` is cheap: it imports no SDK and no HTTP library, starts no
thread and opens no file. Integrations (`tracekit.openai`, ...) load on
first attribute access; `tracekit.autolog()` turns on all that are installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tracekit._api import (
    configure,
    continue_trace,
    flush,
    get_current_span,
    get_last_trace_id,
    get_stats,
    get_tracing_headers,
    shutdown,
    start_span,
    update_current_trace,
)
from tracekit._decorator import trace
from tracekit._span import Span, SpanStatus, SpanType
from tracekit._version import __version__

if TYPE_CHECKING:  # loaded on first use, with the integration registry it reads
    from tracekit._autolog import autolog

__all__ = [
    "Span",
    "SpanStatus",
    "SpanType",
    "__version__",
    "autolog",
    "configure",
    "continue_trace",
    "flush",
    "get_current_span",
    "get_last_trace_id",
    "get_stats",
    "get_tracing_headers",
    "shutdown",
    "start_span",
    "trace",
    "update_current_trace",
]

_LAZY_SUBMODULES = frozenset({"exporters", "testing", "wsgi", "asgi"})


def __getattr__(name: str) -> Any:
    if name == "autolog":
        from tracekit._autolog import autolog

        globals()["autolog"] = autolog  # found directly from now on
        return autolog
    if name in _LAZY_SUBMODULES or _is_face(name):
        return importlib.import_module(f"tracekit.{name}")
    raise AttributeError(f"module 'tracekit' has no attribute {name!r}")


def _is_face(name: str) -> bool:
    """Whether `tracekit.NAME` is an integration's public face (`tracekit.openai` ...)."""
    from tracekit.integrations._registry import INTEGRATIONS

    return any(spec.face == f"tracekit.{name}" for spec in INTEGRATIONS)
