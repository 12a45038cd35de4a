"""Delivery guarantees for remote destinations, as exporters that wrap exporters.

    SpoolingExporter(CircuitBreakerExporter(RetryingExporter(remote)), spool)

- `RetryingExporter` (in `base`) retries a failed batch a few times with
  backoff and jitter, honouring `Retry-After`.
- `CircuitBreakerExporter` stops calling a destination that keeps failing:
  while it is open every batch fails at once, so a dead destination costs
  nothing; after a cooldown (doubling up to a minute, never shorter than
  the destination's `Retry-After`) one batch probes it.
- `SpoolingExporter` keeps what could not be delivered in a `Spool` on disk
  and a background thread delivers it, oldest first, once the destination
  answers again; a new process delivers what an earlier one left. It logs
  one line when the destination starts failing and one when it is back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from tracekit import _context, _stats
from tracekit._guard import guard
from tracekit.exporters.base import (
    SUCCESS,
    BaseExporter,
    Exporter,
    ExportResult,
    TraceRecord,
    _safe_export,
)
from tracekit.exporters.spool import Spool

logger = logging.getLogger("tracekit")


class CircuitBreakerExporter(BaseExporter):
    """Fails fast while a destination is known to be down.

    Args:
        exporter: the exporter to protect.
        failure_threshold: consecutive failed batches that open the circuit.
        cooldown: seconds the circuit stays open the first time; doubles on
            every failed probe up to `max_cooldown`.
    """

    def __init__(
        self,
        exporter: Exporter,
        *,
        failure_threshold: int = 1,
        cooldown: float = 1.0,
        max_cooldown: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.exporter = exporter
        self.failure_threshold = failure_threshold
        self.initial_cooldown = cooldown
        self.max_cooldown = max_cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._cooldown = cooldown
        self._open_until: float | None = None
        self._probing = False
        self._last = ExportResult(ok=False, retryable=True, message="circuit open")

    @property
    def is_open(self) -> bool:
        return self._open_until is not None

    def ready_in(self) -> float:
        """Seconds until a batch would be let through (0 when closed or due to probe)."""
        with self._lock:
            if self._open_until is None:
                return 0.0
            return max(0.0, self._open_until - self._clock())

    def export(self, traces: Sequence[TraceRecord]) -> ExportResult:
        with self._lock:
            if self._open_until is not None:
                if self._probing or self._clock() < self._open_until:
                    return self._last
                self._probing = True  # half-open: this batch is the probe
        try:
            result = _safe_export(self.exporter, traces)
        finally:
            with self._lock:
                self._probing = False
        with self._lock:
            if result.ok:
                self._failures = 0
                self._cooldown = self.initial_cooldown
                self._open_until = None
                return result
            self._failures += 1
            self._last = ExportResult(
                ok=False,
                retryable=result.retryable,
                retry_after=result.retry_after,
                message=result.message,
                status=result.status,
            )
            if self._failures >= self.failure_threshold:
                wait = max(self._cooldown, result.retry_after or 0.0)
                if self._open_until is not None:  # a failed probe: back off further
                    self._cooldown = min(self._cooldown * 2, self.max_cooldown)
                self._open_until = self._clock() + wait
        return result

    def force_flush(self, timeout: float | None = None) -> bool:
        return self.exporter.force_flush(timeout)

    def shutdown(self, timeout: float | None = None) -> None:
        self.exporter.shutdown(timeout)


class SpoolingExporter(BaseExporter):
    """Spools what its exporter could not deliver and delivers it later.

    Args:
        exporter: usually a `CircuitBreakerExporter` (its `ready_in()` paces
            the background delivery).
        spool: where undeliverable batches wait.
        destination: how the destination is named in log lines.
    """

    def __init__(self, exporter: Exporter, spool: Spool, destination: str) -> None:
        self.exporter = exporter
        self.spool = spool
        self.destination = destination
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._inflight: Sequence[TraceRecord] | None = None
        self._drainer: threading.Thread | None = None
        self._stopped = False
        self._failing = False
        if self.spool.pending():
            self._start_drainer()  # what an earlier run left behind

    def export(self, traces: Sequence[TraceRecord]) -> ExportResult:
        if not traces:
            return SUCCESS
        with self._lock:
            self._inflight = traces
        result = _safe_export(self.exporter, traces)
        with self._lock:
            mine, self._inflight = self._inflight is traces, None
        if result.ok:
            self._recovered()
            if self._drainer is not None:
                with self._wake:
                    self._wake.notify()
            return result
        self._failed(result)
        if not mine:  # shutdown() spooled it meanwhile
            return SUCCESS
        return self.keep(traces)

    def keep(self, traces: Sequence[TraceRecord]) -> ExportResult:
        """Spool a batch without trying to deliver it (the exit path uses this)."""
        if not self.spool.put(traces):
            _stats.count("spool_full", len(traces))
            return ExportResult(
                ok=False, message=f"the spool {self.spool.directory} is full or not writable"
            )
        _stats.note("spooled", len(traces))
        self._start_drainer()
        return SUCCESS

    def _failed(self, result: ExportResult) -> None:
        with self._lock:
            first, self._failing = not self._failing, True
        if first:
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
        if was:
            logger.warning(
                "tracekit: %s answers again; delivering spooled traces", self.destination
            )

    # -- background delivery of the spool ---------------------------------------

    def _start_drainer(self) -> None:
        with self._lock:
            if self._stopped or (self._drainer is not None and self._drainer.is_alive()):
                return
            self._drainer = threading.Thread(target=self._drain, name="tracekit-spool", daemon=True)
            self._drainer.start()

    def _pause(self, seconds: float) -> bool:
        """Wait (woken early by a delivered batch or shutdown); False once stopped."""
        with self._wake:
            if not self._stopped and seconds > 0:
                self._wake.wait(seconds)
            return not self._stopped

    def _drain(self) -> None:
        _context._suppressed.set(True)  # never trace our own I/O
        idle_rounds = 0
        while not self._stopped:
            ready_in = getattr(self.exporter, "ready_in", None)
            wait = ready_in() if callable(ready_in) else 0.0
            if wait and not self._pause(wait + 0.01):
                return
            delivered = failed = False
            with guard("spool delivery"):
                for claim in self.spool.claims():
                    if self._stopped:
                        claim.release()
                        return
                    result = _safe_export(self.exporter, claim.records)
                    if result.ok:
                        claim.done()
                        delivered = True
                        _stats.note("delivered_from_spool", len(claim.records))
                        self._recovered()
                        continue
                    claim.release()
                    self._failed(result)
                    failed = True
                    break
            if failed:
                if not callable(ready_in) and not self._pause(5.0):
                    return
                continue
            if delivered:
                idle_rounds = 0
                continue
            idle_rounds += 1  # nothing left: linger briefly for batches spooled meanwhile
            if idle_rounds > 2 or not self._pause(1.0):
                return

    def force_flush(self, timeout: float | None = None) -> bool:
        return self.exporter.force_flush(timeout)

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop delivering; a batch still in flight is spooled, not lost."""
        with self._wake:
            self._stopped = True
            inflight, self._inflight = self._inflight, None
            self._wake.notify_all()
        if inflight is not None:
            if self.spool.put(inflight):
                _stats.note("spooled", len(inflight))
            else:
                _stats.count("spool_full", len(inflight))
        self.exporter.shutdown(timeout)
        drainer = self._drainer
        if drainer is not None and drainer is not threading.current_thread():
            drainer.join(min(timeout or 0.0, 1.0))
