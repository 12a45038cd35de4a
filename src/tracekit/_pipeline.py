"""The export pipeline: a bounded queue of finished traces and one daemon worker.

The traced call only appends a finished trace to the queue. The worker,
started on first use, wakes when a batch is full, when the export interval
passes, or on flush/shutdown; it turns traces into their records soon after
they end (`_records.RecordMaker`: serialized, seen by the span processors) and
hands each batch to the exporter, all with instrumentation suppressed. When the
queue is full the oldest traces are written to disk by the caller that overflowed
it (`_spill`), or dropped and counted when the destination cannot keep them.

Before its first batch the worker builds the exporter, which imports the exporters'
package and what serializing and exporting need (`tracekit.exporters.build`) under
a lock that a fork waits for (`tracekit._importguard`: a fork while the worker held
an import lock would leave the child hanging on it); after that nothing is imported
on the worker, and the traced call that finished the first trace imported none of it.
"""

from __future__ import annotations

import logging  # noqa: F401 - the worker's warnings must not import it (see above)
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from tracekit import _context, _stats
from tracekit._buffer import TraceState
from tracekit._config import Config
from tracekit._guard import guard, warn_limited

if TYPE_CHECKING:
    from tracekit._records import RecordMaker
    from tracekit.exporters.base import Exporter, TraceRecord

# What exports and makes records (`exporters.base`, `_records`) is imported once the
# exporter is built: on the worker, by the build, under the fork guard (`exporters.
# prepare`); the traced call that finishes the first trace imports neither.

SPILL_BUILD_WAIT_S = 2.0  # an overflowing caller waits this long for the exporter's build

# How long a finished trace waits before the worker turns it into its record and lets
# go of the SDK objects it holds (`TraceState.digested`): short enough that they die
# young (the garbage collector's old generation never sees them), long enough that the
# worker wakes for a few traces at a time rather than for each.
DIGEST_DELAY = 0.02
# How long the worker makes records before it gives the GIL up: well under the switch
# interval (5 ms), which is how long a caller would otherwise wait behind it.
DIGEST_SLICE = 0.001
# Records are made this many traces at a time, step by step (`RecordMaker.digest`): a
# group takes under a millisecond, so the worker still gives the GIL up within about
# two slices.
DIGEST_GROUP = 8


class ExportPipeline:
    """Moves finished traces from the buffer to an exporter, off the caller's thread."""

    def __init__(
        self,
        exporter: Exporter | Callable[[], Exporter],
        config: Config,
        resource: Mapping[str, Any],
        sweep: Callable[[], object] = lambda: None,
    ) -> None:
        # A factory is called on first use, normally on the worker: building a
        # remote exporter imports an HTTP stack and looks at the spool, which
        # the traced call that finished the first trace should not wait for.
        self._exporter: Exporter | None = None
        self._factory: Callable[[], Exporter] | None = None
        self._config = config
        self._resource = resource
        self._records: RecordMaker | None = None  # made with the exporter (`_built`)
        if callable(getattr(exporter, "export", None)):  # an exporter, not its factory
            self._exporter = exporter  # type: ignore[assignment]
            self._records = _record_maker(config, resource)
        else:
            self._factory = exporter  # type: ignore[assignment]
        self._build_lock = threading.Lock()
        self._sweep = sweep
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._queue: deque[TraceState] = deque()
        self._queued_spans = 0
        self._waiters: list[threading.Event] = []
        self._worker: threading.Thread | None = None
        self._alive = False  # the worker is running (cheaper to read than is_alive())
        self._stopping = False
        self._closed = False
        self._exporting = 0  # traces taken by the worker and not yet exported
        self._handed = False  # ...and already passed to the exporter (which may keep them)
        self._max_queued_spans = config.max_queued_spans
        self._batch_spans = config.export_batch_spans
        self._spill_pause = 0.0  # until then an overflow is dropped, not spilled (see _spill)
        self._busy_until = 0.0  # traces arrived lately: the worker looks for more (`_wait`)

    @property
    def exporter(self) -> Exporter:
        """The exporter, built on first use if a factory was given."""
        exporter = self._built(None)
        assert exporter is not None
        return exporter

    def _built(self, timeout: float | None) -> Exporter | None:
        """The exporter, built if need be; None if another thread is still building
        it after `timeout` seconds (exit must not wait for a stuck build)."""
        exporter = self._exporter
        if exporter is not None:
            return exporter
        if not self._build_lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            return None
        try:
            if self._exporter is None:
                assert self._factory is not None
                exporter = self._factory()
                self._records = _record_maker(self._config, self._resource)
                self._exporter = exporter
            return self._exporter
        finally:
            self._build_lock.release()

    def _maker(self) -> RecordMaker:
        """The record maker, made with the exporter (every caller has built it)."""
        records = self._records
        assert records is not None
        return records

    # -- called by traced code -------------------------------------------------

    def enqueue(self, trace: TraceState) -> None:
        """Queue a finished trace (no I/O, unless it overflows the queue: see `_spill`)."""
        dropped: list[TraceState] = []
        spill = False
        with self._lock:
            if self._closed:
                dropped.append(trace)
            else:
                self._queue.append(trace)
                self._queued_spans += trace.size
                if self._queued_spans > self._max_queued_spans:
                    dropped, spill = self._overflow()
                if not self._alive:
                    self._start()  # first use, or the worker died of an internal error
                if self._queued_spans >= self._batch_spans:
                    self._cond.notify()
        if dropped and dropped[0] is trace:
            _stats.count("not_exported_at_exit")
            trace.release()
        elif dropped:
            self._spill(dropped, spill)

    # -- a burst beyond the queue --------------------------------------------------

    def _overflow(self) -> tuple[list[TraceState], bool]:
        """Take the oldest traces out of the overflowing queue (the newest stays), called
        with the lock held: a batch's worth when they can be spilled to disk, else just
        enough to fit (to be dropped); and whether to spill them."""
        exporter = self._exporter  # not built yet: `_spill` waits for it
        spill = exporter is None or callable(getattr(exporter, "keep", None))
        spill = spill and time.monotonic() >= self._spill_pause
        fits = self._max_queued_spans - (self._batch_spans if spill else 0)
        taken: list[TraceState] = []
        while self._queued_spans > max(0, fits) and len(self._queue) > 1:
            old = self._queue.popleft()
            self._queued_spans -= old.size
            taken.append(old)
        return taken, spill

    def _spill(self, traces: list[TraceState], spill: bool = True) -> None:
        """Write traces the queue could not hold to disk, on this (the caller's) thread.

        A burst that outruns the worker pays for itself here, a batch at a time,
        rather than losing traces: the destination's `keep()` writes them to a
        remote destination's spool (delivered from there like any spooled batch)
        or appends them to a file store. What it cannot keep (the spool is full)
        is counted, and spilling pauses for a second so that later overflows are
        dropped at no cost. Before the exporter is built this waits for its build
        (at most `SPILL_BUILD_WAIT_S`). With `spill` False they are dropped.
        """
        records: list[TraceRecord] = []
        result: object = None
        keep = None
        with _context.suppress_instrumentation(), guard("spill"):
            # The worker may still be building the exporter (a burst from the start).
            keep = getattr(self._built(SPILL_BUILD_WAIT_S), "keep", None) if spill else None
            if callable(keep):
                for trace in traces:
                    self._maker().take(trace, records)  # releases the trace
                result = keep(records) if records else _base().SUCCESS
        if not callable(keep):  # not to spill, no build in time, or a destination without keep
            _stats.count("queue_full", len(traces))
            for trace in traces:
                trace.release()
        elif result is not None and (not isinstance(result, _base().ExportResult) or result.ok):
            if records:
                _stats.note("spilled", len(records))
        else:  # keep() failed or raised (an internal error, reported by the guard)
            self._spill_pause = time.monotonic() + 1.0
            if not (isinstance(result, _base().ExportResult) and result.counted):
                _stats.count("queue_full", len(records))

    def flush(self, timeout: float | None = None) -> bool:
        """Export everything queued so far; False if `timeout` passed first."""
        done = threading.Event()
        with self._lock:
            if self._closed:
                return not self._queue
            if self._worker is None:
                if not self._queue:
                    if self._exporter is None:
                        return True  # nothing was ever exported
                    return bool(self._exporter.force_flush(timeout))
                self._start()
            self._waiters.append(done)
            self._cond.notify()
        deadline = None if timeout is None else time.monotonic() + timeout
        if not done.wait(timeout):
            return False
        # The exporters push out what they hold (a remote destination delivers what it
        # wrote ahead to its spool) on this thread: the worker goes on meanwhile.
        exporter = self._exporter
        if exporter is None:
            return True
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        with guard("force_flush"):
            return bool(exporter.force_flush(left))
        return False

    def shutdown(self, timeout: float) -> bool:
        """Export what is queued within `timeout` seconds, then close the exporter."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._closed:
                return True
            self._stopping = True
            self._cond.notify()
            worker = self._worker
        needed = self._exporter is not None or self._queue or worker is not None
        exporter = self._built(deadline - time.monotonic()) if needed else None
        keep = getattr(exporter, "keep", None)
        # A spooling exporter can keep what is left on disk: leave time for that.
        reserve = min(1.0, timeout * 0.25) if callable(keep) else 0.0
        if worker is not None:
            worker.join(max(0.0, deadline - reserve - time.monotonic()))
        with self._lock:
            self._closed = True
            leftovers = list(self._queue)
            busy = self._exporting if worker and worker.is_alive() else 0
            if busy and self._handed and callable(keep):
                busy = 0  # the exporter's shutdown spools the batch it is sending
            self._queue.clear()
            self._queued_spans = 0
        if leftovers and callable(keep):
            lost = self._keep(leftovers, keep, deadline)
        else:
            lost = len(leftovers)
        left = lost + busy
        if left:
            _stats.count("not_exported_at_exit", left)
        if self._exporter is None:
            return left == 0  # never built (or its build is stuck): nothing to close
        with guard("exporter shutdown"):
            # One deadline for both: what force_flush spent is not given to shutdown again.
            self._exporter.force_flush(max(0.0, deadline - time.monotonic()))
            self._exporter.shutdown(max(0.0, deadline - time.monotonic()))
        return left == 0

    def _keep(
        self, traces: list[TraceState], keep: Callable[[list[TraceRecord]], object], deadline: float
    ) -> int:
        """Serialize what the worker did not reach and hand it to `keep`; return how many
        traces were not kept (no time left to serialize them, or `keep` failed)."""
        records: list[TraceRecord] = []
        while traces and time.monotonic() < deadline:
            trace = traces.pop(0)
            self._maker().take(trace, records)
        kept = False
        if records:
            with guard("keep"):
                result = keep(records)
                kept = not isinstance(result, _base().ExportResult) or result.ok
        for trace in traces:
            trace.release()
        # What was serialized but not kept is lost too.
        return len(traces) + (0 if kept else len(records))

    def start(self) -> None:
        """Start the worker if it is not running (it sweeps orphans as well)."""
        with self._lock:
            if self._worker is None and not self._closed:
                self._start()

    def queued(self) -> int:
        with self._lock:
            return len(self._queue)

    # -- the worker --------------------------------------------------------------

    def _start(self) -> None:
        self._worker = threading.Thread(target=self._run, name="tracekit-export", daemon=True)
        self._alive = True
        try:
            self._worker.start()
        except BaseException:
            self._alive = False
            raise

    def _run(self) -> None:
        try:
            with _context.suppress_instrumentation():  # never trace our own I/O
                self._loop()
        finally:
            self._alive = False

    def _loop(self) -> None:
        interval = self._config.export_interval
        batch_spans = self._config.export_batch_spans
        due = time.monotonic() + interval
        with self._cond:
            # The trace that started the worker was finished by a traced call that is
            # still returning: the worker's first work (building the exporter imports
            # tens of milliseconds of modules) would take the GIL from it for up to a
            # switch interval. It waits `DIGEST_DELAY` first, as it does for any trace;
            # a flush or a shutdown wakes it at once.
            if not self._waiters and not self._stopping:
                self._cond.wait(DIGEST_DELAY)
        while True:
            with self._cond:
                fresh = self._wait(due, batch_spans)
                if not fresh:
                    batch, drained, waiters, stopping = self._take(batch_spans)
            if fresh:
                self._digest(fresh)
                continue
            if time.monotonic() >= due:
                due = time.monotonic() + interval
                with guard("sweep"):
                    self._sweep()
            try:
                if batch:
                    self._export(batch)
            finally:  # an internal error raised under tests must not hang flush()
                self._exporting = 0
                self._handed = False
                for waiter in waiters:
                    waiter.set()
            if stopping and drained:
                return

    def _take(self, batch_spans: int) -> tuple[list[TraceState], bool, list[threading.Event], bool]:
        """Under the lock: the next batch, whether it empties the queue, the flushes
        it completes, and whether the pipeline is stopping."""
        batch: list[TraceState] = []
        spans = 0
        while self._queue and spans < batch_spans:
            trace = self._queue.popleft()
            batch.append(trace)
            spans += trace.size
        self._queued_spans -= spans
        self._exporting = len(batch)
        if batch:  # traces are coming: look for the next ones every DIGEST_DELAY (`_wait`)
            self._busy_until = time.monotonic() + self._config.export_interval
        drained = not self._queue
        waiters = self._waiters if drained else []
        if drained:
            self._waiters = []
        return batch, drained, waiters, self._stopping

    def _wait(self, due: float, batch_spans: int) -> list[TraceState]:
        """Under the lock: wait until a batch is due (returns []) or traces are there
        to digest (returns those not digested yet, oldest first). While traces are
        queued, or were in the last export interval, the worker looks every
        `DIGEST_DELAY`; idle longer, it sleeps until the export interval passes or a
        batch fills (`enqueue` wakes it only then), and a trace that arrives meanwhile
        is exported with that batch.

        (Sleeping through the interval whenever the queue was empty left every trace of
        a steady load waiting up to the interval with its SDK objects, which then
        reached the old generation of the garbage collector.)"""
        while self._queued_spans < batch_spans and not self._waiters and not self._stopping:
            now = time.monotonic()
            remaining = due - now
            if remaining <= 0:
                return []
            if not self._queue:
                busy = now < self._busy_until
                self._cond.wait(min(remaining, DIGEST_DELAY) if busy else remaining)
                continue
            self._busy_until = now + self._config.export_interval
            if self._queue[-1].record is None:  # the undigested are the newest
                fresh = []
                for trace in reversed(self._queue):
                    if trace.record is not None:
                        break
                    fresh.append(trace)
                fresh.reverse()
                return fresh
            self._cond.wait(min(remaining, DIGEST_DELAY))
        return []

    def _digest(self, traces: list[TraceState]) -> None:
        """Make the records of traces waiting for their batch (`TraceState.digested`),
        giving the GIL up every `DIGEST_SLICE`: a caller never waits behind the whole
        group, and the worker, which gets the GIL back only after a busy caller's switch
        interval, makes more than one record per turn (one per turn fell behind a caller
        that runs Python all the time, and the traces waited for the batch's export).

        An exporter that writes JSON lines (`Encoding`: the file store) gets each record
        encoded at once: kept as one object until its batch goes, not as the dozens of
        dicts and lists whose number sets off the garbage collector on the callers.

        The exporter is built first: its build imports, under the fork guard, what
        making a record needs (`exporters.prepare`), so nothing is imported unguarded."""
        exporter = self._built(None)
        encoded = exporter.encoded_record if isinstance(exporter, _base().Encoding) else None
        clock = time.perf_counter
        turn = clock() + DIGEST_SLICE
        for start in range(0, len(traces), DIGEST_GROUP):
            self._maker().digest(traces[start : start + DIGEST_GROUP], encoded)
            if clock() >= turn:
                time.sleep(0)  # the callers' turn
                turn = clock() + DIGEST_SLICE

    def _export(self, batch: list[TraceState]) -> None:
        # Built before serializing: the build imports (under a fork guard) what
        # serializing needs too, so that nothing is imported unguarded here.
        exporter = self.exporter
        # What a worker behind a busy caller did not digest yet is digested here the same
        # way, giving the GIL up every DIGEST_SLICE: a batch of 512 traces serialized in
        # one go held it for tens of milliseconds, a switch interval at a time.
        self._digest(batch)
        records: list[TraceRecord] = []
        for trace in batch:
            self._maker().take(trace, records)
        if not records:
            return
        self._handed = True
        result = _base()._safe_export(exporter, records)
        if not result.ok and not result.counted:
            lost = len(records) if result.undelivered is None else len(result.undelivered)
            _stats.count("export_failed", lost)
            warn_limited(
                "export-failed",
                "tracekit: could not export %d trace(s) with %s: %s",
                lost,
                type(exporter).__name__,
                result.message,
            )


def _base() -> Any:
    """`tracekit.exporters.base`, imported by the exporter's build (or by whoever made
    the exporter given to the pipeline) before any caller of this runs."""
    return sys.modules["tracekit.exporters.base"]


def _record_maker(config: Config, resource: Mapping[str, Any]) -> RecordMaker:
    from tracekit._records import RecordMaker  # imported by the build (see above)

    return RecordMaker(config, resource)
