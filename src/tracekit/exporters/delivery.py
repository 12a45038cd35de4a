"""Delivery guarantees for remote destinations, as exporters that wrap exporters.

    SpoolingExporter(SplittingExporter(CircuitBreakerExporter(RetryingExporter(remote))), spool)

- `RetryingExporter` (in `base`) retries a failed batch a few times with
  backoff and jitter, honouring `Retry-After`.
- `CircuitBreakerExporter` (in `breaker`) stops calling a destination that keeps failing:
  while it is open every batch fails at once, so a dead destination costs
  nothing; after a cooldown (doubling up to a minute, never shorter than
  the destination's `Retry-After`) one batch probes it.
- `SplittingExporter` (in `split`) sends the halves of a batch the destination
  refused as such (413, a poison record) and sets aside a record refused alone.
- `SpoolingExporter` writes every batch to a `Spool` on disk first (write-ahead)
  and a background thread delivers the spool, oldest first, removing a batch
  once the destination acknowledged it. So a SIGKILL loses at most what the
  export worker had not yet written (one export interval), the export worker
  never waits for the network (a stalled server never holds back a file store
  beside it), and a new process delivers what an earlier one left. It logs
  one line when the destination starts failing and one when it is back.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from tracekit import _context, _stats
from tracekit._guard import guard, warn_limited
from tracekit.exporters.base import (
    SUCCESS,
    BaseExporter,
    Exporter,
    ExportResult,
    TraceRecord,
    _safe_export,
)
from tracekit.exporters.breaker import CircuitBreakerExporter
from tracekit.exporters.spool import REJECTED_SUFFIX, Claim, Spool

__all__ = ["CircuitBreakerExporter", "SpoolingExporter"]

logger = logging.getLogger("tracekit")


class SpoolingExporter(BaseExporter):
    """Writes every batch to the spool first and delivers it from there.

    `export()` only writes the batch to the spool (write-ahead) and reports
    success: the batch is safe, whatever the destination does, and a SIGKILL
    loses only what was not yet handed over. A background thread,
    `tracekit-spool`, delivers the spool oldest first whenever the exporter's
    `ready_in()` (a circuit breaker's) says the destination may answer, and
    removes a batch once the destination acknowledged it; a batch the
    destination refused as such (`ExportResult.rejected`) is set aside, since
    sending it again cannot help. The thread runs while there is something
    to deliver, so a process that finds batches left by an earlier one
    delivers them from its first export on. What the spool cannot hold is
    sent at once on the caller's thread, as without a spool.

    `force_flush()` waits until what was written is delivered or is waiting
    on disk because the destination fails. `shutdown()` lets the background
    delivery go on until the deadline while the destination answers (so a
    short-lived process still delivers what it and an earlier one wrote),
    and never waits for a destination that does not; what is left stays in
    the spool.

    Args:
        exporter: usually a `CircuitBreakerExporter` (its `ready_in()` paces
            the background delivery).
        spool: where undeliverable batches wait.
        destination: how the destination is named in log lines.
        stats: the prefix of this exporter's keys in `tracekit.get_stats()`
            (`"feedback_"` for feedback: never counted as traces).
    """

    #: Seconds between delivery attempts when the exporter has no `ready_in()`.
    RETRY_PAUSE = 5.0
    #: Empty rounds, a second apart, before the delivery thread ends.
    IDLE_ROUNDS = 2

    def __init__(self, exporter: Exporter, spool: Spool, destination: str, stats: str = "") -> None:
        self.exporter = exporter
        self.spool = spool
        self.destination = destination
        self._stats = stats
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._ahead: dict[str, int] = {}  # batches written ahead, not yet attempted: traces
        self._own: set[str] = set()  # files of deliver_later() not yet seen delivered
        self._busy = 0  # traces in the claim the delivery thread is sending
        self._busy_ahead = False  # ...written ahead, not yet counted as spooled
        self._failures = 0  # failed deliveries so far (force_flush stops waiting on one)
        self._drainer: threading.Thread | None = None
        self._kept = False  # a batch was spooled since the delivery thread last looked
        self._finishing = False  # shutting down: deliver what is there, wait only till _finish_by
        self._finish_by: float | None = None
        self._set_aside = 0  # traces set aside so far (their batches still report success)
        self._stopped = False
        self._failing = False  # since the first failure, until the next success (the log lines)
        self._answered = False  # the destination answered the last batch sent (maybe a 503)
        if self.spool.pending():
            self._start_drainer()  # what an earlier run left behind

    def export(self, traces: Sequence[TraceRecord]) -> ExportResult:
        """Write the batch to the spool and wake the delivery thread (no network here).

        What the spool cannot hold (it is full, or the disk refuses) is sent at
        once instead, as without a spool.
        """
        if not traces:
            return SUCCESS
        with self._lock:
            closing = self._finishing or self._stopped
        if closing:  # after shutdown: no network, keep it for a later process
            return self.keep(traces)
        kept = self._write_ahead(traces)
        if kept == len(traces):
            return SUCCESS
        return self._send_now(traces[kept:])

    def _write_ahead(self, traces: Sequence[TraceRecord], own: bool = False) -> int:
        """Write a batch to the spool for the delivery thread; how many records fit.
        `own`: remember its file (see `undelivered()`)."""
        kept, name = self.spool.write(traces)
        if kept:
            with self._wake:
                if own:
                    self._own.add(name)
                if self._failing:  # nothing goes out now: it waits on disk for a while
                    self._note("spooled", kept)
                else:
                    self._ahead[name] = kept
                self._kept = True
                self._wake.notify_all()
            self._start_drainer()
        return kept

    def _send_now(self, traces: Sequence[TraceRecord]) -> ExportResult:
        """Deliver on the caller's thread what the spool could not take."""
        result = _safe_export(self.exporter, traces)
        if result.ok or result.rejected:  # rejected: the pipeline counts and reports it
            self._recovered()
            return result
        self._failed(result)
        self._count("spool_full", len(traces))
        return ExportResult(
            ok=False,
            message=f"{result.message}; the spool {self.spool.directory} is full or not writable",
            counted=True,
        )

    def keep(self, traces: Sequence[TraceRecord]) -> ExportResult:
        """Spool a batch without trying to deliver it now (the exit path uses this)."""
        if not traces:
            return SUCCESS
        kept = self._put(traces)
        if kept:
            with self._lock:
                self._kept = True
        if kept < len(traces):
            return ExportResult(
                ok=False,
                message=f"the spool {self.spool.directory} is full or not writable",
                counted=True,
            )
        return SUCCESS

    def deliver_later(self, traces: Sequence[TraceRecord]) -> ExportResult:
        """Spool a batch and let the background thread deliver it (no network here).

        For writes made on the caller's thread (feedback): durable at once, sent
        with the spool's retries and pacing, never blocking the caller. Counted as
        spooled only if it has to wait (the destination fails), like a batch of
        `export()`; `undelivered()` tells whether it is still in the spool.
        """
        if not traces:
            return SUCCESS
        with self._lock:
            closing = self._finishing or self._stopped
        kept = self._write_ahead(traces, own=True) if not closing else self._put(traces)
        if kept < len(traces):
            if not closing:
                self._count("spool_full", len(traces) - kept)
            return ExportResult(
                ok=False,
                message=f"the spool {self.spool.directory} is full or not writable",
                counted=True,
            )
        return SUCCESS

    def undelivered(self) -> bool:
        """Whether a batch this process gave `deliver_later()` is still in the spool,
        waiting or being sent (by this process or another one sharing the spool)."""
        with self._lock:
            own = set(self._own)
        if not own:
            return False
        try:
            names = os.listdir(self.spool.directory)
        except OSError:
            return False
        left = own & {name.split(".claimed-", 1)[0] for name in names}
        with self._lock:
            self._own -= own - left  # delivered (or set aside): forget them
        return bool(left)

    def set_aside(self, records: Sequence[TraceRecord], result: ExportResult) -> Path | None:
        """Keep records the destination refused on their own beside the spool (a
        `*.rejected` file), count them and say so; None if the spool had no room."""
        where = self.spool.set_aside(records)
        if where is None:
            return None  # the caller counts them as export_failed
        self._count("set_aside", len(records))
        self._set_aside += len(records)
        warn_limited(
            "set-aside",
            "tracekit: %s refused trace %s on its own (%s); set aside in %s (`tracekit upload` "
            "lists what is set aside)",
            self.destination,
            records[0].get("trace_id"),
            result.message,
            where,
        )
        return where

    def _put(self, traces: Sequence[TraceRecord]) -> int:
        kept = self.spool.put(traces)
        if kept:
            self._note("spooled", kept)
        if kept < len(traces):
            self._count("spool_full", len(traces) - kept)
        return kept

    def _failed(self, result: ExportResult) -> None:
        waiting = 0
        with self._lock:
            first, self._failing = not self._failing, True
            self._failures += 1
            # Batches written ahead now wait on disk until the destination answers.
            waiting = sum(self._ahead.values())
            self._ahead.clear()
            # The destination answered that it is busy (429, 5xx): worth waiting for at
            # exit, unlike one that does not answer or refuses our configuration.
            self._answered = result.status is not None and result.retryable
            self._wake.notify_all()
        if waiting:
            self._note("spooled", waiting)
        if first and result.configuration:
            logger.warning(
                "tracekit: %s refused tracekit's configuration: %s. The traces stay in %s "
                "and are delivered once that is fixed (this process retries; `tracekit "
                "upload` delivers them later)",
                self.destination,
                result.message,
                self.spool.directory,
            )
        elif first:
            logger.warning(
                "tracekit: cannot deliver traces to %s (%s); keeping them in %s and delivering "
                "them when it answers again",
                self.destination,
                result.message,
                self.spool.directory,
            )

    def _recovered(self) -> None:
        with self._lock:
            was, self._failing = self._failing, False
            self._answered = True
        if was:
            logger.warning(
                "tracekit: %s answers again; delivering spooled traces", self.destination
            )

    def _note(self, event: str, n: int) -> None:
        _stats.note(self._stats + event, n)

    def _count(self, reason: str, n: int) -> None:
        _stats.count(self._stats + reason, n)

    # -- background delivery of the spool ---------------------------------------

    def _running(self) -> bool:
        return self._drainer is not None and self._drainer.is_alive()

    def _start_drainer(self) -> None:
        with self._lock:
            if self._stopped or self._finishing or self._running():
                return
            self._drainer = threading.Thread(target=self._drain, name="tracekit-spool", daemon=True)
            self._drainer.start()

    def _nudge_drainer(self) -> None:
        """The destination took a batch: deliver the spool now, if there is one."""
        with self._wake:
            running = self._running()
            if running:
                self._wake.notify_all()  # cut a cooldown wait short
        if not running and self.spool.pending():  # left by another process, or by a race
            self._start_drainer()

    def _pause(self, seconds: float) -> bool:
        """Wait (woken early by a delivered batch or shutdown); False once stopped, or
        while shutting down if the wait would end after the shutdown's deadline."""
        with self._wake:
            if self._stopped:
                return False
            late = self._finish_by is None or time.monotonic() + seconds > self._finish_by
            if self._finishing and late:
                return False
            if seconds > 0:
                self._wake.wait(seconds)
            return not self._stopped

    def _ready_in(self) -> float | None:
        ready_in = getattr(self.exporter, "ready_in", None)
        return float(ready_in()) if callable(ready_in) else None

    def _drain(self) -> None:
        with _context.suppress_instrumentation():  # never trace our own I/O
            self._drain_spool()

    def _drain_spool(self) -> None:
        try:
            idle_rounds = 0
            while True:
                wait = self._ready_in()
                if wait and not self._pause(wait + 0.01):
                    return
                with self._lock:
                    self._kept = False
                outcome = _IDLE
                with guard("spool delivery"):
                    outcome = self._deliver_pending()
                if outcome == _STOPPED:
                    return
                if outcome == _FAILED:
                    if self._finishing and not self._answered:
                        return  # no answer at all: not worth the exit's time
                    if wait is None and not self._pause(self.RETRY_PAUSE):
                        return
                    continue
                if outcome == _DELIVERED:
                    idle_rounds = 0
                    continue
                idle_rounds += 1  # nothing left: linger briefly for batches spooled meanwhile
                if idle_rounds <= self.IDLE_ROUNDS and not self._finishing and self._pause(1.0):
                    continue
                with self._lock:
                    if self._kept and not self._stopped:
                        continue  # spooled while this thread was deciding to end
                    self._drainer = None
                    return
        finally:
            with self._lock:
                if self._drainer is threading.current_thread():
                    self._drainer = None

    def _deliver_pending(self) -> str:
        delivered = False
        for claim in self.spool.claims():
            if self._stopped:
                claim.release()
                return _STOPPED
            with self._wake:
                self._busy = len(claim.records)
                self._busy_ahead = self._ahead.pop(claim.original.name, None) is not None
            try:  # busy until the claim is settled: flush() waits for its file to go
                outcome = self._deliver(claim)
            finally:
                with self._wake:
                    self._busy = 0
                    self._busy_ahead = False
                    self._wake.notify_all()
            if outcome == _FAILED:
                return _FAILED
            delivered = True
        return _DELIVERED if delivered else _IDLE

    def _deliver(self, claim: Claim) -> str:
        before = self._set_aside
        result = _safe_export(self.exporter, claim.records)
        refused = self._set_aside - before
        with self._wake:
            ahead = self._busy_ahead  # shutdown may have counted it as spooled meanwhile
        if not result.ok and ahead:  # written ahead, and now it has to wait
            self._note("spooled", len(claim.records))
        if not result.ok and result.undelivered is not None:  # partly delivered
            claim.keep_only(result.undelivered)
            self._failed(result)
            return _FAILED
        if result.ok:
            claim.done()
            if len(claim.records) > refused and not ahead:
                self._note("delivered_from_spool", len(claim.records) - refused)
            self._recovered()
            return _DELIVERED
        if result.rejected:  # sending it again cannot help: set it aside
            claim.reject()
            self._count("export_failed", len(claim.records))
            warn_limited(
                "spool-rejected",
                "tracekit: %s refused %d spooled trace(s) (%s); kept aside in %s",
                self.destination,
                len(claim.records),
                result.message,
                claim.original.with_name(claim.original.name + REJECTED_SUFFIX),
            )
            self._recovered()
            return _DELIVERED
        claim.release()
        self._failed(result)
        return _FAILED

    def force_flush(self, timeout: float | None = None) -> bool:
        """Wait until what was written so far is delivered, or is safe on disk because
        the destination fails (True); False if `timeout` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._wake:
            failures = self._failures
            while self._ahead or self._busy:
                if self._failures != failures or self._failing or self._stopped:
                    break  # not deliverable now: it waits in the spool
                if not self._running():
                    break
                left = _left(deadline)
                if left is not None and left <= 0:
                    return False
                self._wake.wait(0.05 if left is None else min(0.05, left))
        return self.exporter.force_flush(_left(deadline))

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop delivering within `timeout` seconds; a batch still in flight is spooled."""
        deadline = None if timeout is None else time.monotonic() + timeout
        # The delivery may retry a destination that answers (a 503 with Retry-After
        # while resolving the experiment) within the shutdown's budget, rather than
        # leave a short run's traces on disk for a later one.
        reserve = min(0.25, (timeout or 0.0) * 0.1)
        with self._wake:
            self._finish_by = None if deadline is None else deadline - reserve
            self._finishing = True
            # Written ahead and never tried: worth the exit's time, as a batch the export
            # thread was sending used to be. One on its way (maybe in a retry wait) is not.
            answered = self._answered or (bool(self._ahead) and not self._failing)
            drainer = self._drainer if self._running() else None
            self._wake.notify_all()
        if drainer is threading.current_thread():
            drainer = None
        if drainer is not None and answered:
            # The destination answers (and is not slow): let the delivery go on for now.
            drainer.join(_left(deadline, reserve))
        with self._wake:
            self._stopped = True
            self._wake.notify_all()
            # What was written ahead and not delivered stays on disk for a later process.
            left = sum(self._ahead.values()) + (self._busy if self._busy_ahead else 0)
            self._ahead.clear()
            self._busy_ahead = False
        if left:
            self._note("spooled", left)
        # Closing the exporter also cuts its retry waits and requests short.
        closer = self._close(deadline)
        if drainer is not None:
            drainer.join(_left(deadline))
        if closer is not None:
            closer.join(_left(deadline))

    def _close(self, deadline: float | None) -> threading.Thread | None:
        if deadline is None:
            self.exporter.shutdown(None)
            return None

        # Closing an HTTP client may wait for a request still on its way (a
        # stalled destination): do it on a helper thread, waited for only
        # until the deadline.
        def close() -> None:
            with guard("exporter shutdown"):
                self.exporter.shutdown(_left(deadline))

        closer = threading.Thread(target=close, name="tracekit-close", daemon=True)
        closer.start()
        return closer


_IDLE, _DELIVERED, _FAILED, _STOPPED = "idle", "delivered", "failed", "stopped"


def _left(deadline: float | None, reserve: float = 0.0) -> float | None:
    """Seconds from now until `deadline` minus `reserve` (None: no deadline)."""
    if deadline is None:
        return None
    return max(0.0, deadline - reserve - time.monotonic())
