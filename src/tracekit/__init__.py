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

if TYPE_CHECKING:  # loaded on first use (`_LAZY_NAMES`), typed for checkers
    from tracekit._autolog import autolog
    from tracekit._entities import Assessment, AssessmentSource, Trace, TraceInfo
    from tracekit._feedback import log_expectation, log_feedback
    from tracekit._read import get_current_trace_id, get_trace, search_traces

__all__ = [
    "Assessment",
    "AssessmentSource",
    "Span",
    "SpanStatus",
    "SpanType",
    "Trace",
    "TraceInfo",
    "__version__",
    "autolog",
    "configure",
    "continue_trace",
    "flush",
    "get_current_span",
    "get_current_trace_id",
    "get_last_trace_id",
    "get_stats",
    "get_trace",
    "get_tracing_headers",
    "log_expectation",
    "log_feedback",
    "search_traces",
    "shutdown",
    "start_span",
    "trace",
    "update_current_trace",
]

_LAZY_SUBMODULES = frozenset({"exporters", "testing", "wsgi", "asgi"})


# Public names whose modules load on first use: name -> module.
_LAZY_NAMES = {
    "autolog": "tracekit._autolog",
    "Assessment": "tracekit._entities",
    "AssessmentSource": "tracekit._entities",
    "Trace": "tracekit._entities",
    "TraceInfo": "tracekit._entities",
    "get_current_trace_id": "tracekit._read",
    "get_trace": "tracekit._read",
    "search_traces": "tracekit._read",
    "log_feedback": "tracekit._feedback",
    "log_expectation": "tracekit._feedback",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBMODULES or _is_face(name):
        return importlib.import_module(f"tracekit.{name}")
    if name in _LAZY_NAMES:
        value = getattr(importlib.import_module(_LAZY_NAMES[name]), name)
        globals()[name] = value  # found directly from now on
        return value
    raise AttributeError(f"module 'tracekit' has no attribute {name!r}")


def _is_face(name: str) -> bool:
    """Whether `tracekit.NAME` is an integration's public face (`tracekit.openai` ...)."""
    from tracekit.integrations._registry import INTEGRATIONS

    return any(spec.face == f"tracekit.{name}" for spec in INTEGRATIONS)
