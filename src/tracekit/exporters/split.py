"""Refusals of one batch, handled by splitting it: the rest flows, the poison is set aside.

A destination that refuses a batch as such (HTTP 413 behind a body-size
limit, a 400/422 for one malformed record) or an exporter that raises on it
would, if the batch were simply dropped or retried, lose or block everything
in it. `SplittingExporter` sends the halves instead, down to single records:
what goes through is delivered, and a record refused (or raised on) alone is
poison, handed to `set_aside` (`SpoolingExporter.set_aside` keeps it in a
`*.rejected` file beside the spooled batches and counts it; `tracekit upload`
reports it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from tracekit.exporters.base import (
    SUCCESS,
    BaseExporter,
    Exporter,
    ExportResult,
    TraceRecord,
    _safe_export,
)

SetAside = Callable[[Sequence[TraceRecord], ExportResult], "Path | None"]


class SplittingExporter(BaseExporter):
    """Splits a refused batch in halves and resends them; sets aside a record refused alone.

    Args:
        exporter: the exporter to send through (usually a circuit breaker).
        set_aside: keeps (and counts, and reports) a poison record and returns
            where (None: it could not). Without it, a poison record's refusal is
            returned, after the rest of the batch was delivered.
    """

    def __init__(self, exporter: Exporter, set_aside: SetAside | None = None) -> None:
        self.exporter = exporter
        self.set_aside = set_aside
        self.set_aside_traces = 0  # records set aside so far (`export()` reports them as ok)
        # The pacing of the breaker inside, for the spool's delivery (absent if it has none).
        ready_in = getattr(exporter, "ready_in", None)
        if callable(ready_in):
            self.ready_in: Callable[[], float] = ready_in

    def export(self, traces: Sequence[TraceRecord]) -> ExportResult:
        result = _safe_export(self.exporter, traces)
        if result.ok or not result.refused_alone:
            return result
        if len(traces) == 1:
            return self._poison(traces, result)
        refusal: ExportResult | None = None
        # Iterative, oldest first: a stack of pieces still to send.
        half = len(traces) // 2
        pending: list[Sequence[TraceRecord]] = [traces[half:], traces[:half]]
        while pending:
            piece = pending.pop()
            result = _safe_export(self.exporter, piece)
            if result.ok:
                continue
            if not result.refused_alone:  # the destination went away meanwhile: keep the rest
                rest = [record for part in (piece, *reversed(pending)) for record in part]
                return ExportResult(
                    ok=False,
                    retryable=result.retryable,
                    retry_after=result.retry_after,
                    message=result.message,
                    status=result.status,
                    configuration=result.configuration,
                    undelivered=rest,
                )
            if len(piece) == 1:
                poison = self._poison(piece, result)
                if not poison.ok:
                    refusal = poison
                continue
            half = len(piece) // 2
            pending += [piece[half:], piece[:half]]
        return refusal or SUCCESS

    def _poison(self, records: Sequence[TraceRecord], result: ExportResult) -> ExportResult:
        where = self.set_aside(records, result) if self.set_aside is not None else None
        if where is None:
            return result
        self.set_aside_traces += len(records)
        return SUCCESS

    def force_flush(self, timeout: float | None = None) -> bool:
        return self.exporter.force_flush(timeout)

    def shutdown(self, timeout: float | None = None) -> None:
        self.exporter.shutdown(timeout)
