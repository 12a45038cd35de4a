"""The exporter protocol and small exporters that wrap exporters.

An exporter receives finished traces as `tracekit.trace/1` records (JSON-safe
dicts), in batches, on the export worker thread. It returns an
`ExportResult`; it should not raise (the pipeline guards it anyway).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from tracekit._guard import report_internal_error, warn_limited

logger = logging.getLogger("tracekit")

TraceRecord = dict[str, Any]


@dataclass(frozen=True)
class ExportResult:
    """The outcome of one `export()` call.

    Attributes:
        ok: the batch was delivered.
        retryable: a later attempt may succeed (network error, 429, 5xx).
        retry_after: seconds the destination asked us to wait, if it said.
        message: what went wrong, for the log.
        status: the HTTP status of a failed request, when there was one.
        counted: the exporter already counted the batch's traces as dropped in
            `tracekit.get_stats()` (the pipeline does not count them again).
        configuration: the destination refused tracekit's configuration, not the
            batch (an experiment id it does not know, a token that is not a valid
            header): the traces are kept until the setting named in `message` is fixed.
        raised: the exporter raised on this batch; unless it was an I/O error
            (`retryable`), sending the same records again would raise again (a
            bug, or a record it cannot map).
        undelivered: after a partial delivery, the records still to deliver
            (None: the whole batch).
    """

    ok: bool
    retryable: bool = False
    retry_after: float | None = None
    message: str = ""
    status: int | None = None
    counted: bool = False
    configuration: bool = False
    raised: bool = False
    undelivered: Sequence[TraceRecord] | None = None

    @property
    def rejected(self) -> bool:
        """The destination answered and refused this batch itself (e.g. HTTP 400 or 413).

        Sending the same batch again cannot succeed, unlike after a network
        error, a 429/5xx, an authentication failure (401/403) or a configuration
        error, all fixed by waiting or by configuration.
        """
        return (
            not self.ok
            and not self.retryable
            and not self.configuration
            and self.status in _REJECTED_STATUS
        )

    @property
    def refused_alone(self) -> bool:
        """Worth splitting the batch for: the destination refused it, or the exporter
        raised on it; sent alone, a record that is refused again is poison."""
        return self.rejected or (self.raised and not self.retryable)


SUCCESS = ExportResult(ok=True)
_REJECTED_STATUS = frozenset({400, 413, 415, 422})


@runtime_checkable
class Exporter(Protocol):
    """Where finished traces go."""

    def export(self, traces: Sequence[TraceRecord]) -> ExportResult:
        """Deliver a batch of trace records."""
        ...

    def force_flush(self, timeout: float | None = None) -> bool:
        """Push out anything buffered inside the exporter."""
        ...

    def shutdown(self, timeout: float | None = None) -> None:
        """Release resources; no export follows."""
        ...


class EncodedRecord(dict[str, Any]):
    """A record already written as its JSON line (`Encoding.encoded_record`), empty as a dict.

    The export worker makes a trace's record soon after the trace ends, and the record
    then waits up to the export interval for its batch: as one line of bytes it is one
    object the garbage collector tracks, not dozens of dicts and lists, whose number
    would set off collections (and promote them to the old generation) on whichever
    thread allocates next, usually a traced call.
    """

    __slots__ = ("line",)

    def __init__(self, line: bytes) -> None:
        super().__init__()
        self.line = line


@runtime_checkable
class Encoding(Protocol):
    """An exporter that writes records as JSON lines and takes them encoded early:
    the pipeline keeps `encoded_record(record)` (an `EncodedRecord`) in place of the record
    while it waits for its batch, and `export()` gets those."""

    def encoded_record(self, record: TraceRecord) -> TraceRecord:
        """The record in the form the exporter's `export` takes and the pipeline keeps."""
        ...


class BaseExporter:
    """Convenience base with no-op `force_flush` and `shutdown`."""

    def export(self, traces: Sequence[TraceRecord]) -> ExportResult:
        raise NotImplementedError

    def force_flush(self, timeout: float | None = None) -> bool:
        return True

    def shutdown(self, timeout: float | None = None) -> None:
        return None


class FanoutExporter(BaseExporter):
    """Sends each batch to several exporters; one failing does not stop the others."""

    def __init__(self, exporters: Sequence[Exporter]) -> None:
        self.exporters = list(exporters)

    def export(self, traces: Sequence[TraceRecord]) -> ExportResult:
        failures = [r for r in (_safe_export(e, traces) for e in self.exporters) if not r.ok]
        if not failures:
            return SUCCESS
        return ExportResult(
            ok=False,
            message="; ".join(f.message for f in failures),
            counted=all(f.counted for f in failures),
        )

    def force_flush(self, timeout: float | None = None) -> bool:
        return all(e.force_flush(timeout) for e in self.exporters)

    def keep(self, traces: Sequence[TraceRecord]) -> ExportResult:
        """At exit: each exporter that can keep traces locally (spool, file) keeps them.

        Fails (the pipeline counts the traces as not exported) unless every
        exporter kept them: an exporter without `keep()` loses them.
        """
        kept = True
        for exporter in self.exporters:
            keep = getattr(exporter, "keep", None)
            if not callable(keep):
                kept = False
                continue
            try:
                result = keep(traces)
            except Exception as exc:
                report_internal_error(f"keep {type(exporter).__name__}", exc)
                result = None
            kept = kept and isinstance(result, ExportResult) and result.ok
        if kept:
            return SUCCESS
        return ExportResult(ok=False, message="not every destination could keep the traces")

    def shutdown(self, timeout: float | None = None) -> None:
        # One deadline for all: each gets what is left of it, not the whole timeout again.
        deadline = None if timeout is None else time.monotonic() + timeout
        for exporter in self.exporters:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                exporter.shutdown(left)
            except Exception as exc:  # one bad exporter must not keep others open
                report_internal_error(f"shutdown {type(exporter).__name__}", exc)


class RetryingExporter(BaseExporter):
    """Retries retryable failures with exponential backoff, jitter and `Retry-After`.

    Gives up after `max_attempts`, once `max_elapsed` seconds have passed, or
    when the destination asks for a longer wait than `max_backoff`, returning
    the last failure (a circuit breaker and a spool outside take it from there).
    `shutdown()` cuts a wait short: the export returns its last failure at once.

    Args:
        exporter: the exporter to retry.
        max_attempts: attempts per batch, the first included.
        initial_backoff: seconds before the second attempt; doubles after
            each further failure, up to `max_backoff`, times `jitter()`.
        max_backoff: the longest backoff (before jitter); a longer `Retry-After`
            gives up at once.
        max_elapsed: no attempt starts later than this many seconds after the first.
        jitter: the factor each backoff is multiplied by (default: 0.5 to 1.5,
            at random; tests pass a constant).
        stall_after: an attempt that took at least this many seconds (it ran
            into the request timeout) is not repeated: a stalled destination
            would hold the worker for another timeout per attempt.
    """

    def __init__(
        self,
        exporter: Exporter,
        *,
        max_attempts: int = 5,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_elapsed: float = 60.0,
        jitter: Callable[[], float] | None = None,
        stall_after: float | None = None,
    ) -> None:
        self.exporter = exporter
        self.stall_after = stall_after
        self.max_attempts = max_attempts
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_elapsed = max_elapsed
        self._jitter = jitter or _jitter
        self._stopped = threading.Event()

    def export(self, traces: Sequence[TraceRecord]) -> ExportResult:
        start = time.monotonic()
        backoff = self.initial_backoff
        result = ExportResult(ok=False, message="not attempted")
        for attempt in range(1, self.max_attempts + 1):
            began = time.monotonic()
            result = _safe_export(self.exporter, traces)
            if result.ok or not result.retryable or attempt == self.max_attempts:
                return result
            if self.stall_after is not None and time.monotonic() - began >= self.stall_after:
                return result  # it hung until the timeout: the breaker and the spool take over
            if result.retry_after is not None:
                if result.retry_after > self.max_backoff:
                    return result  # longer than we wait here: a circuit breaker outside honours it
                delay = result.retry_after
            else:
                delay = min(backoff, self.max_backoff) * self._jitter()
            if time.monotonic() - start + delay > self.max_elapsed:
                return result
            logger.debug(
                "tracekit: export attempt %d failed (%s); retrying in %.2fs",
                attempt,
                result.message,
                delay,
            )
            if self._stopped.wait(delay):
                return result
            backoff = min(backoff * 2, self.max_backoff)
        return result

    def force_flush(self, timeout: float | None = None) -> bool:
        return self.exporter.force_flush(timeout)

    def shutdown(self, timeout: float | None = None) -> None:
        self._stopped.set()
        self.exporter.shutdown(timeout)


def _jitter() -> float:
    return 0.5 + random.random()  # noqa: S311 - backoff jitter, not security


def _safe_export(exporter: Exporter, traces: Sequence[TraceRecord]) -> ExportResult:
    try:
        result = exporter.export(traces)
    except Exception as exc:
        report_internal_error(f"export {type(exporter).__name__}", exc)
        # An I/O error is worth another attempt; anything else (a KeyError on a record
        # it cannot map) would be raised again: a poison record, split off by the delivery.
        return ExportResult(
            ok=False,
            retryable=isinstance(exc, OSError),
            raised=True,
            message=f"{type(exc).__name__}: {exc}",
        )
    if not isinstance(result, ExportResult):
        warn_limited(
            "bad-result",
            "tracekit: %s.export() returned %r, not an ExportResult; assuming success",
            type(exporter).__name__,
            result,
        )
        return SUCCESS
    return result
