"""User feedback and expectations on traces: `log_feedback`, `log_expectation`.

An assessment goes to every configured destination that can store one:

- a file store: one JSON line appended to `assessments.jsonl` beside the
  traces (append-only; `tracekit show` and `get_trace` merge it when read);
- an MLflow tracking server or Databricks: MLflow's assessments REST API, so
  its UI shows it. The assessment is first written to a spool of its own
  (`<TRACEKIT_SPOOL_DIR>/assessments/<destination>/`) and delivered by the
  spool's background thread, with the traces' guarantees: retried, kept
  across outages and restarts, stored once (see `exporters/assessments.py`).

The caller's thread only validates and appends a line to a local file: no
network, no waiting on a server. OTLP backends, the console and memory have
no place for feedback: it is skipped there with one warning.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tracekit import _state
from tracekit._config import DEFAULT_STORE
from tracekit._entities import Assessment, AssessmentSource
from tracekit._guard import warn_limited
from tracekit._read import ASSESSMENTS_FILE

_SOURCE_TYPES = ("HUMAN", "LLM_JUDGE", "CODE")


def _check_value(value: Any, where: str = "value", depth: int = 0) -> None:
    """Values MLflow stores: bool, number, string, and lists and dicts of them."""
    if value is None or isinstance(value, (bool, str, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} must be a finite number, not {value!r}")
        return
    if depth < 16 and isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_value(item, f"{where}[{i}]", depth + 1)
        return
    if depth < 16 and isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} keys must be strings, not {key!r}")
            _check_value(item, f"{where}[{key!r}]", depth + 1)
        return
    raise TypeError(
        f"{where} must be a bool, a number, a string, or a list or dict of them; "
        f"got {type(value).__name__}"
    )


def _source(source: AssessmentSource | Mapping[str, str] | str | None) -> dict[str, str]:
    if source is None:
        return AssessmentSource().to_dict()
    if isinstance(source, str):
        return AssessmentSource("HUMAN", source).to_dict()
    if isinstance(source, AssessmentSource):
        found = source.to_dict()
    elif isinstance(source, Mapping):
        found = {
            "source_type": str(source.get("source_type", "HUMAN")),
            "source_id": str(source.get("source_id", "default")),
        }
    else:  # e.g. MLflow's own AssessmentSource
        found = {
            "source_type": str(getattr(source, "source_type", "HUMAN")),
            "source_id": str(getattr(source, "source_id", "default")),
        }
    if found["source_type"] not in _SOURCE_TYPES:
        raise ValueError(f"source_type must be one of {', '.join(_SOURCE_TYPES)}")
    return found


def _error(error: BaseException | Mapping[str, Any] | str | None) -> dict[str, str] | None:
    if error is None:
        return None
    if isinstance(error, BaseException):
        return {"error_code": type(error).__name__, "error_message": str(error)}
    if isinstance(error, Mapping):
        return {
            "error_code": str(error.get("error_code", "ERROR")),
            "error_message": str(error.get("error_message", "")),
        }
    return {"error_code": "ERROR", "error_message": str(error)}


def _record(
    kind: str,
    trace_id: str,
    name: str,
    value: Any,
    source: Any,
    rationale: str | None,
    metadata: Mapping[str, Any] | None,
    span_id: str | None,
    error: Any = None,
) -> dict[str, Any]:
    if not isinstance(trace_id, str) or not trace_id.strip():
        raise ValueError("trace_id must be a trace id (e.g. tracekit.get_last_trace_id())")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("name must be a non-empty string, e.g. 'thumbs_up'")
    _check_value(value)
    if value is None and (kind == "expectation" or error is None):
        raise ValueError("value is required (None only for a feedback that carries an error)")
    if rationale is not None and not isinstance(rationale, str):
        raise TypeError("rationale must be a string")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise TypeError("metadata must be a dict of strings")
    record: dict[str, Any] = {
        "schema": "tracekit.assessment/1",
        "trace_id": trace_id.strip().lower().removeprefix("tr-"),
        "assessment_id": "a-" + uuid.uuid4().hex,
        "kind": kind,
        "name": name,
        "value": list(value) if isinstance(value, tuple) else value,
        "source": _source(source),
        "create_time_ms": time.time_ns() // 1_000_000,
    }
    if rationale:
        record["rationale"] = rationale
    if metadata:  # MLflow keeps metadata as strings
        record["metadata"] = {
            str(k): v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()
        }
    if span_id:
        record["span_id"] = str(span_id)
    if error is not None:
        record["error"] = _error(error)
    return record


# -- where it goes --------------------------------------------------------------------


_file_lock = threading.Lock()


def _append(directory: Path, record: dict[str, Any]) -> None:
    """One line, one `write` with O_APPEND (whole lines, across processes too)."""
    from tracekit.exporters.file import encode

    directory.mkdir(parents=True, exist_ok=True)
    data = encode(record)
    with _file_lock:
        fd = os.open(directory / ASSESSMENTS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)


_senders: dict[tuple[str, Any], Any] = {}
_senders_lock = threading.Lock()
_atexit_registered = False


def _after_fork_in_child() -> None:
    """A forked child starts without the parent's senders: their delivery threads do
    not exist here, their locks may be held, their HTTP connections are the parent's,
    and their state (a failing destination, the batches the parent wrote) is not the
    child's. The spool on disk is shared: what the parent logged stays there for the
    parent (or whichever process claims it first) to deliver, once."""
    global _senders, _senders_lock, _file_lock
    _senders = {}
    _senders_lock = threading.Lock()
    _file_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _sender(uri: str) -> Any:
    """The spooling delivery of assessments to one remote destination (built once)."""
    config = _state.config()
    key = (uri, (config.experiment_id, config.experiment_name, config.spool_dir))
    with _senders_lock:
        if key not in _senders:
            from tracekit.exporters import remote
            from tracekit.exporters.assessments import AssessmentExporter
            from tracekit.exporters.base import RetryingExporter
            from tracekit.exporters.delivery import CircuitBreakerExporter, SpoolingExporter
            from tracekit.exporters.spool import Spool, destination_key

            exporter, destination, experiment = remote.direct(uri, config)
            retrying = RetryingExporter(
                AssessmentExporter(exporter.client, destination),  # type: ignore[attr-defined]
                max_attempts=3,
                initial_backoff=0.5,
                max_backoff=5.0,
                max_elapsed=max(config.export_timeout, remote.RETRY_BUDGET_S),
                stall_after=config.export_timeout * 0.9,
            )
            breaker = CircuitBreakerExporter(retrying, cooldown=1.0, max_cooldown=60.0)
            # Not under the traces' spool root: `tracekit upload` must not take these for traces.
            spool = Spool(
                remote.spool_root(config)
                / "assessments"
                / destination_key(destination, experiment),
                int(config.spool_max_mb * 1024 * 1024),
                {"uri": destination, "kind": "assessments"},
            )
            # Counted as `feedback_*` in get_stats(), never as traces.
            sender = SpoolingExporter(
                breaker, spool, f"{destination} (feedback)", stats="feedback_"
            )
            global _atexit_registered
            if not _atexit_registered:  # once per interpreter (a forked child inherits it)
                atexit.register(_at_exit)
                _atexit_registered = True
            _senders[key] = sender
        return _senders[key]


def flush(timeout: float | None = None) -> bool:
    """Wait until the feedback this process logged is delivered, or `timeout` seconds
    passed (`tracekit.flush()` calls it). A destination that keeps failing (its circuit
    breaker open) is not waited for: its feedback stays spooled. True if none is left.
    Feedback other processes left in the same spool is not waited for."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with _senders_lock:
        senders = list(_senders.values())

    def waiting() -> bool:
        return any(s.undelivered() and s.exporter.ready_in() == 0.0 for s in senders)

    while waiting():
        if deadline is not None and time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    return not any(s.undelivered() for s in senders)


def _at_exit() -> None:
    """Give the background delivery up to TRACEKIT_SHUTDOWN_TIMEOUT to send what was logged
    (a short script that logs feedback and exits), then stop; the rest stays spooled for
    the next process that logs feedback to the same destination."""
    deadline = time.monotonic() + _state.config().shutdown_timeout
    flush(_state.config().shutdown_timeout)
    with _senders_lock:
        senders = list(_senders.values())
    for sender in senders:
        sender.shutdown(max(0.0, deadline - time.monotonic()))


def _spooled(record: dict[str, Any]) -> dict[str, Any]:
    # The spool keeps trace-shaped lines (`spans` a list): an assessment has none.
    return {**record, "spans": []}


def _send(record: dict[str, Any]) -> None:
    from tracekit.exporters import remote, store_directory

    stored = False
    for uri in _state.config().tracking_uris or (DEFAULT_STORE,):
        directory = store_directory(uri)
        try:
            if directory is not None:
                _append(directory, record)
                stored = True
            elif remote.scheme_of(uri) in ("http", "https", "databricks"):
                result = _sender(uri).deliver_later([_spooled(record)])
                stored = stored or result.ok
                if not result.ok:
                    warn_limited(
                        "feedback-spool", "tracekit: feedback not kept: %s", result.message
                    )
        except Exception as exc:  # a full disk, a bad URI: the app goes on
            warn_limited(
                "feedback:" + uri,
                "tracekit: could not keep feedback for %s (%s: %s)",
                uri,
                type(exc).__name__,
                exc,
            )
    if not stored:
        warn_limited(
            "feedback-nowhere",
            "tracekit: feedback and expectations are stored in a file store, an MLflow tracking "
            "server or Databricks; none is configured (TRACEKIT_TRACKING_URI=%s), so they are "
            "dropped",
            ",".join(_state.config().tracking_uris),
        )


def log_feedback(
    *,
    trace_id: str,
    name: str,
    value: Any,
    source: AssessmentSource | Mapping[str, str] | str | None = None,
    rationale: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    span_id: str | None = None,
    error: BaseException | Mapping[str, Any] | str | None = None,
) -> Assessment:
    """Attach feedback (a rating, a score, a label) to a trace, as MLflow's `log_feedback`.

    Args:
        trace_id: the trace's id (`tracekit.get_last_trace_id()`,
            `tracekit.get_current_trace_id()`, or one your API returned earlier).
        name: what is assessed, e.g. `"thumbs_up"`, `"relevance"`.
        value: a bool, number or string, or a list or dict of them.
        source: who assessed: an `AssessmentSource(source_type, source_id)`
            (`HUMAN`, `LLM_JUDGE`, `CODE`), or a string (a human's id).
        rationale: why, in words.
        metadata: string keys and values kept with it.
        span_id: a span of the trace the feedback is about.
        error: an exception (or `{"error_code", "error_message"}`) when the
            assessment itself failed (then `value` may be None).

    Returns:
        The `Assessment` as logged (its `assessment_id` is the one stored).

    Raises:
        TypeError, ValueError: a value or argument MLflow could not store.

    Example:
        tracekit.log_feedback(trace_id=trace_id, name="thumbs_up", value=True,
                              source="user-42", rationale="answered my question")
    """
    record = _record("feedback", trace_id, name, value, source, rationale, metadata, span_id, error)
    _send(record)
    return Assessment.from_record(record)


def log_expectation(
    *,
    trace_id: str,
    name: str,
    value: Any,
    source: AssessmentSource | Mapping[str, str] | str | None = None,
    metadata: Mapping[str, Any] | None = None,
    span_id: str | None = None,
) -> Assessment:
    """Attach an expectation (the ground truth, e.g. the expected answer) to a trace,
    as MLflow's `log_expectation`. Arguments as for `log_feedback`.

    Example:
        tracekit.log_expectation(trace_id=trace_id, name="expected_answer",
                                 value="Paris", source="reviewer-7")
    """
    record = _record("expectation", trace_id, name, value, source, None, metadata, span_id)
    _send(record)
    return Assessment.from_record(record)
