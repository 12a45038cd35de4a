"""tracekit: client-side tracing for LLM applications.

Example:
    import tracekit

    @tracekit.trace
    def answer(question: str) -> str:
        ...

`import tracekit` is cheap: it imports no SDK and no HTTP library, starts no
thread and opens no file. Integrations (`tracekit.openai`, ...) load on
first attribute access.
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

if TYPE_CHECKING:  # loaded on first use (`_LAZY_NAMES`), typed for checkers
    from tracekit._entities import Assessment, AssessmentSource, Trace, TraceInfo
    from tracekit._feedback import log_expectation, log_feedback
    from tracekit._read import get_current_trace_id, get_trace, search_traces

__version__ = "0.1.0"

__all__ = [
    "Assessment",
    "AssessmentSource",
    "Span",
    "SpanStatus",
    "SpanType",
    "Trace",
    "TraceInfo",
    "__version__",
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

_LAZY_SUBMODULES = frozenset(
    {"exporters", "testing", "openai", "anthropic", "gemini", "langchain", "wsgi", "asgi"}
)


# Public names whose modules load on first use: name -> module.
_LAZY_NAMES = {
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
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"tracekit.{name}")
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    raise AttributeError(f"module 'tracekit' has no attribute {name!r}")
