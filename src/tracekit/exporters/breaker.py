"""A circuit breaker for a remote destination: fail fast while it is known to be down."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from tracekit.exporters.base import BaseExporter, Exporter, ExportResult, TraceRecord, _safe_export


class CircuitBreakerExporter(BaseExporter):
    """Fails fast while a destination is known to be down.

    Every failure counts except a batch the destination answered and refused
    (`ExportResult.rejected`): the destination is up then; nor does a batch
    the exporter raised on (`ExportResult.raised`): it was not the destination. While the circuit
    is open, `export()` returns the last failure without calling the
    exporter. Once the cooldown has passed, one batch (the probe) goes
    through while the others still fail fast; a failed probe doubles the
    cooldown, a delivered one closes the circuit.

    Args:
        exporter: the exporter to protect.
        failure_threshold: consecutive failed batches that open the circuit.
        cooldown: seconds the circuit stays open the first time; doubles on
            every failed probe up to `max_cooldown`. A longer `Retry-After`
            keeps it open longer.
        clock: monotonic seconds (tests pass a fake one).
    """

    #: What `ready_in()` says while a probe is on its way (its outcome decides).
    PROBE_POLL = 0.25
    #: The longest `Retry-After` honoured, in seconds.
    MAX_RETRY_AFTER = 900.0

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
            if self._probing:
                return self.PROBE_POLL
            return max(0.0, self._open_until - self._clock())

    def export(self, traces: Sequence[TraceRecord]) -> ExportResult:
        probe = False
        with self._lock:
            if self._open_until is not None:
                if self._probing or self._clock() < self._open_until:
                    return self._last
                self._probing = probe = True  # half-open: this batch is the probe
        try:
            result = _safe_export(self.exporter, traces)
        finally:
            if probe:
                with self._lock:
                    self._probing = False
        with self._lock:
            if result.ok or result.refused_alone:  # it answered, or was not to blame
                self._failures = 0
                self._cooldown = self.initial_cooldown
                self._open_until = None
                return result
            self._failures += 1
            self._last = result
            if probe:  # a failed probe: back off further
                self._cooldown = min(self._cooldown * 2, self.max_cooldown)
            if self._failures >= self.failure_threshold:
                # Honour Retry-After, but not beyond MAX_RETRY_AFTER (the spool is bounded).
                wait = max(self._cooldown, min(result.retry_after or 0.0, self.MAX_RETRY_AFTER))
                self._open_until = self._clock() + wait
        return result

    def force_flush(self, timeout: float | None = None) -> bool:
        return self.exporter.force_flush(timeout)

    def shutdown(self, timeout: float | None = None) -> None:
        self.exporter.shutdown(timeout)
