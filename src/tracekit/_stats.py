"""Counters of everything tracekit drops, each reported once when it first happens.

`REASONS` (losses, counted with `count()`) and `EVENTS` (not losses, counted with
`note()`) say what each key of `tracekit.get_stats()` means; the docs' tables follow
them. Feedback and expectations (`log_feedback`, `log_expectation`) have keys of
their own, `feedback_*`, so that they are never counted as traces.
"""

from __future__ import annotations

import threading

REASONS = {
    "spans_per_trace": "a trace reached max_spans_per_trace; further spans of it are not recorded",
    "in_flight_traces": "max_in_flight_traces traces were open at once; new traces are not "
    "recorded",
    "queue_full": "the export queue was full (the destination is too slow or down); the oldest "
    "finished traces were dropped",
    "export_failed": "an exporter failed to deliver traces",
    "not_exported_at_exit": "traces were still queued when the shutdown timeout ran out",
    "spool_full": "the spool (TRACEKIT_SPOOL_DIR, bounded by TRACEKIT_SPOOL_MAX_MB) was full or "
    "not writable while a destination was down; traces that did not fit were dropped",
    "set_aside": "a destination refused traces on their own (too large, or malformed) or its "
    "exporter raised on them; they were set aside beside the spool (*.rejected files, listed "
    "by `tracekit upload`) so that the rest flows",
    "serialize_failed": "a finished trace could not be turned into a record (an internal "
    "error, reported with its traceback); it was dropped",
    "feedback_spool_full": "the feedback spool (bounded by TRACEKIT_SPOOL_MAX_MB) was full or "
    "not writable; feedback and expectations that did not fit were dropped",
    "feedback_export_failed": "a tracking server refused feedback or expectations as such (for "
    "example their trace never arrived); they were set aside beside the feedback spool",
    "force_ended_spans": "spans were still open when their trace had to be exported (abandoned "
    "streams, runaway threads, or the process exiting); tracekit ended them and exported their "
    "traces marked incomplete",
}

#: What `note()` counts: things that happened that are not losses.
EVENTS = {
    "spooled": "traces that had to wait in a remote destination's spool on disk (it failed or "
    "was down); every batch is written there first, but one delivered at once is not counted",
    "delivered_from_spool": "spooled traces this process delivered later (also those an "
    "earlier process left)",
    "spilled": "finished traces that did not fit in the export queue (max_queued_spans) during "
    "a burst and were written to disk instead (a remote destination's spool, a file store)",
    "feedback_spooled": "feedback and expectations that had to wait in the feedback spool "
    "(the tracking server failed or was down)",
    "feedback_delivered_from_spool": "spooled feedback and expectations delivered later",
}

_lock = threading.Lock()
_counts: dict[str, int] = {}
_events: dict[str, int] = {}  # what happened that is not a loss (spooled, delivered later)


def count(reason: str, n: int = 1) -> None:
    """Count `n` drops for `reason`; the first one of each reason logs a warning."""
    with _lock:
        first = reason not in _counts
        _counts[reason] = _counts.get(reason, 0) + n
    if first:
        import logging  # not at import time: `import tracekit` stays cheap

        logging.getLogger("tracekit").warning(
            "tracekit: %s (counted from now on without further warnings; see tracekit.get_stats())",
            REASONS.get(reason, reason),
        )


def note(event: str, n: int = 1) -> None:
    """Count `n` occurrences of something that is not a loss (no warning)."""
    with _lock:
        _events[event] = _events.get(event, 0) + n


def events() -> dict[str, int]:
    """Counts of `note()`d events so far."""
    with _lock:
        return dict(_events)


def snapshot() -> dict[str, int]:
    """Counts so far, by reason."""
    with _lock:
        return dict(_counts)


def reset() -> None:
    with _lock:
        _counts.clear()
        _events.clear()


def after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()
    _counts.clear()
    _events.clear()
