"""An exporter that prints each trace as an indented tree."""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from typing import TextIO

from tracekit._render import render_trace
from tracekit.exporters.base import SUCCESS, BaseExporter, ExportResult, TraceRecord


class ConsoleExporter(BaseExporter):
    """Prints every finished trace to `stream` (standard output by default)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def keep(self, traces: Sequence[TraceRecord]) -> ExportResult:
        """At exit, what the worker did not reach: this costs nothing, so take it."""
        return self.export(traces)

    def export(self, traces: Sequence[TraceRecord]) -> ExportResult:
        stream = self._stream or sys.stdout
        text = "".join(render_trace(record) + "\n" for record in traces)
        with self._lock:
            stream.write(text)
            stream.flush()
        return SUCCESS
