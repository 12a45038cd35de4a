"""An exporter that keeps trace records in memory (tests, notebooks)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from tracekit.exporters.base import SUCCESS, BaseExporter, ExportResult, TraceRecord


class InMemoryExporter(BaseExporter):
    """Keeps every exported trace record, in export order.

    Example:
        exporter = InMemoryExporter()
        tracekit.configure(exporter=exporter)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._traces: list[TraceRecord] = []

    def export(self, traces: Sequence[TraceRecord]) -> ExportResult:
        with self._lock:
            self._traces.extend(traces)
        return SUCCESS

    def keep(self, traces: Sequence[TraceRecord]) -> ExportResult:
        """At exit, what the worker did not reach: this costs nothing, so take it."""
        return self.export(traces)

    @property
    def traces(self) -> list[TraceRecord]:
        """A copy of the list of records exported so far."""
        with self._lock:
            return list(self._traces)

    def clear(self) -> None:
        with self._lock:
            self._traces.clear()


_default = InMemoryExporter()


def default_exporter() -> InMemoryExporter:
    """The process-wide exporter behind the `memory` destination.

    Example:
        tracekit.configure(tracking_uri="memory")
        ...
        records = tracekit.exporters.memory.default_exporter().traces
    """
    return _default
