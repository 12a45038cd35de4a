"""The trace buffer's bounds and the export pipeline: orphans, limits, stalls, failures."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import tracekit
from tracekit import _stats
from tracekit._state import program_name
from tracekit.exporters import (
    SUCCESS,
    BaseExporter,
    ExportResult,
    FanoutExporter,
    RetryingExporter,
)
from tracekit.exporters.memory import InMemoryExporter
from tracekit.testing import START_NS, STEP_NS, capture

REASON = "still open after the root span ended"


def t(n: int) -> int:
    return START_NS + n * STEP_NS


def wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


@tracekit.trace
def stream(n):
    yield from range(n)


# -- spans outliving their root ---------------------------------------------------------


def _orphan_record() -> dict[str, Any]:
    return {
        "schema": "tracekit.trace/1",
        "trace_id": f"{1:032x}",
        "name": "root",
        "status": "OK",
        "start_time_ns": t(0),
        "end_time_ns": t(2),
        "tags": {},
        "metadata": {"tracekit.incomplete": f"1 span(s) force-ended: {REASON}"},
        "resource": {
            **({"service.name": program_name()} if program_name() else {}),
            "telemetry.sdk.name": "tracekit",
            "telemetry.sdk.language": "python",
            "telemetry.sdk.version": tracekit.__version__,
        },
        "spans": [
            {
                "span_id": f"{1:016x}",
                "parent_id": None,
                "name": "root",
                "span_type": "UNKNOWN",
                "start_time_ns": t(0),
                "end_time_ns": t(2),
                "status": {"code": "OK", "message": ""},
                "inputs": None,
                "outputs": None,
                "attributes": {},
                "events": [],
            },
            {
                "span_id": f"{2:016x}",
                "parent_id": f"{1:016x}",
                "name": "stream",
                "span_type": "UNKNOWN",
                "start_time_ns": t(1),
                "end_time_ns": t(3),
                "status": {"code": "UNSET", "message": ""},
                "inputs": {"n": 5},
                "outputs": None,
                "attributes": {"tracekit.force_ended": REASON},
                "events": [],
            },
        ],
    }


def test_orphan_child_force_ended_after_grace_period():
    """The only trace of the process: its root ended while a stream was still open."""
    with capture(orphan_timeout=0.05, export_interval=0.02) as captured:
        with tracekit.start_span("root"):
            abandoned = stream(5)
            assert next(abandoned) == 0
        try:
            assert wait_for(lambda: tracekit.get_stats()["traces_in_flight"] == 0, 3.0)
            assert captured.traces == [_orphan_record()]
        finally:
            abandoned.close()  # the late end is ignored (and nothing leaks into other tests)
        assert captured.traces == [_orphan_record()]
    assert _stats.snapshot().get("force_ended_spans") == 1


def test_orphan_child_force_ended_while_exporting_other_traces():
    with capture(orphan_timeout=0.05, export_interval=0.02) as captured:
        with tracekit.start_span("warm-up"):
            pass
        assert len(captured.traces) == 1
        captured.clear()
        with tracekit.start_span("root"):
            abandoned = stream(5)
            assert next(abandoned) == 0
        assert wait_for(lambda: len(captured.exporter.traces) == 1, 3.0)
        (record,) = captured.traces
        assert record["metadata"] == {"tracekit.incomplete": f"1 span(s) force-ended: {REASON}"}
        assert [(s["name"], s["attributes"]) for s in record["spans"]] == [
            ("root", {}),
            ("stream", {"tracekit.force_ended": REASON}),
        ]
        assert record["spans"][1]["end_time_ns"] > record["spans"][0]["end_time_ns"]
        abandoned.close()
        assert next(abandoned, "exhausted") == "exhausted"
        assert len(captured.traces) == 1
        assert tracekit.get_stats()["traces_in_flight"] == 0


def test_late_end_from_a_runaway_thread_is_ignored():
    release = threading.Event()
    started = threading.Event()

    def slow_child() -> str:
        with tracekit.start_span("slow child") as span:
            started.set()
            release.wait(10)
            span.set_attribute("late", True)
            span.set_outputs("late output")
        return "done"

    with capture(orphan_timeout=0.05, export_interval=0.02) as captured:
        with tracekit.start_span("warm-up"):
            pass
        assert len(captured.traces) == 1
        captured.clear()
        with ThreadPoolExecutor(1) as pool:
            with tracekit.start_span("root"):
                future = pool.submit(slow_child)
                assert started.wait(5)
            assert wait_for(lambda: len(captured.exporter.traces) == 1, 3.0)
            release.set()
            assert future.result(5) == "done"
        (record,) = captured.traces  # still one: nothing re-exported
        child = record["spans"][1]
        assert child["name"] == "slow child"
        assert child["parent_id"] == record["spans"][0]["span_id"]
        assert child["attributes"] == {"tracekit.force_ended": REASON}
        assert child["outputs"] is None
        assert "tracekit.incomplete" in record["metadata"]


def test_shutdown_ends_open_spans_and_exports_them_marked():
    with capture() as captured:
        with tracekit.start_span("root"):
            abandoned = stream(3)
            assert next(abandoned) == 0
        try:
            tracekit.shutdown()
            records = captured.exporter.traces
        finally:
            abandoned.close()
    (record,) = records
    reason = "the process exited before it ended"
    assert record["metadata"] == {"tracekit.incomplete": f"1 span(s) force-ended: {reason}"}
    assert [(s["name"], s["attributes"]) for s in record["spans"]] == [
        ("root", {}),
        ("stream", {"tracekit.force_ended": reason}),
    ]
    assert captured.exporter.traces == records  # the late close changed nothing


# -- bounds ---------------------------------------------------------------------------


def test_max_spans_per_trace():
    with capture(max_spans_per_trace=3) as small:

        @tracekit.trace
        def child(i):
            current = tracekit.get_current_span()
            return current.is_recording

        @tracekit.trace
        def root():
            return [child(i) for i in range(5)]

        assert root() == [True, True, False, False, False]
        (record,) = small.traces
    assert [s["name"] for s in record["spans"]] == ["root", "child", "child"]
    assert [s["inputs"] for s in record["spans"]] == [{}, {"i": 0}, {"i": 1}]
    assert record["metadata"] == {"tracekit.dropped_spans": 3}
    assert tracekit.get_stats()["spans_per_trace"] == 3


def test_max_in_flight_traces():
    with capture(max_in_flight_traces=2) as small:
        open_streams = [stream(3), stream(3)]
        for s in open_streams:
            assert next(s) == 0  # two roots open
        assert tracekit.get_stats()["traces_in_flight"] == 2
        assert list(stream(2)) == [0, 1]  # a third root: not recorded, still works
        for s in open_streams:
            assert list(s) == [1, 2]
        assert len(small.traces) == 2
        assert list(stream(1)) == [0]  # room again
        assert len(small.traces) == 3
        assert tracekit.get_stats()["in_flight_traces"] == 1


def test_in_flight_drops_are_reported_by_get_stats():
    """get_stats() shows the drop count (`in_flight_traces`) beside the gauge."""
    with capture(max_in_flight_traces=1) as small:
        held = stream(2)
        next(held)
        assert tracekit.get_stats()["traces_in_flight"] == 1
        assert list(stream(2)) == [0, 1]  # dropped
        list(held)
        assert len(small.traces) == 1
        stats = tracekit.get_stats()
    assert stats["in_flight_traces"] == 1
    assert stats["traces_in_flight"] == 0


# -- a stalled or failing destination ---------------------------------------------------


class StalledExporter(BaseExporter):
    """Blocks in export() until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.records: list[dict[str, Any]] = []

    def export(self, traces: Sequence[dict[str, Any]]) -> ExportResult:
        self.entered.set()
        self.release.wait(30)
        self.records.extend(traces)
        return SUCCESS


@pytest.fixture
def stalled(captured) -> Iterator[StalledExporter]:
    exporter = StalledExporter()
    try:
        yield exporter
    finally:
        exporter.release.set()


@tracekit.trace
def work(i):
    return i


def test_queue_overflow_drops_the_oldest_and_never_blocks(stalled):
    tracekit.configure(
        exporter=stalled, max_queued_spans=5, export_batch_spans=1, export_interval=0.05
    )
    work(-1)
    assert stalled.entered.wait(5)  # the worker is stuck exporting the first trace
    started = time.perf_counter()
    for i in range(100):
        assert work(i) == i
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0
    stats = tracekit.get_stats()
    assert stats["queue_full"] == 95
    assert stats["traces_queued"] == 5

    started = time.perf_counter()
    assert tracekit.flush(timeout=0.2) is False
    assert time.perf_counter() - started < 1.0

    stalled.release.set()
    assert tracekit.flush(timeout=10) is True
    assert [r["spans"][0]["inputs"]["i"] for r in stalled.records] == [-1, 95, 96, 97, 98, 99]
    assert tracekit.get_stats()["traces_queued"] == 0


def test_flush_timeout_with_stalled_exporter(stalled):
    tracekit.configure(exporter=stalled)
    work(1)
    assert tracekit.flush(timeout=0.1) is False
    assert stalled.entered.is_set()
    stalled.release.set()
    assert tracekit.flush(timeout=10) is True
    assert len(stalled.records) == 1


def test_shutdown_with_stalled_exporter_is_bounded(stalled):
    tracekit.configure(exporter=stalled, shutdown_timeout=0.3, export_interval=0.02)
    work(1)
    assert stalled.entered.wait(5)
    work(2)
    started = time.perf_counter()
    tracekit.shutdown()
    assert time.perf_counter() - started < 1.0
    assert tracekit.get_stats()["not_exported_at_exit"] >= 1
    assert work(3) == 3  # still callable after shutdown


class RaisingExporter(BaseExporter):
    def __init__(self) -> None:
        self.calls = 0

    def export(self, traces: Sequence[dict[str, Any]]) -> ExportResult:
        self.calls += 1
        raise ConnectionError("backend down")


class FailingExporter(BaseExporter):
    def __init__(self) -> None:
        self.calls = 0

    def export(self, traces: Sequence[dict[str, Any]]) -> ExportResult:
        self.calls += 1
        return ExportResult(ok=False, message="rejected")


@pytest.mark.parametrize("exporter_class", [RaisingExporter, FailingExporter])
def test_failing_exporter_does_not_break_the_app(captured, exporter_class):
    bad = exporter_class()
    memory = InMemoryExporter()
    tracekit.configure(exporter=[bad, memory])
    for i in range(3):
        assert work(i) == i
        assert tracekit.flush(10) is True
    assert bad.calls == 3
    assert [r["spans"][0]["outputs"] for r in memory.traces] == [0, 1, 2]
    assert tracekit.get_stats()["export_failed"] == 3


def test_exporter_failing_alone_is_counted(captured):
    bad = RaisingExporter()
    tracekit.configure(exporter=bad)
    assert work(1) == 1
    assert tracekit.flush(10) is True
    assert bad.calls == 1
    assert tracekit.get_stats()["export_failed"] == 1


def test_exporter_with_raising_flush_and_shutdown(captured, monkeypatch):
    monkeypatch.setenv("TRACEKIT_TESTING", "0")  # production mode: errors are swallowed

    class Clumsy(InMemoryExporter):
        def force_flush(self, timeout: float | None = None) -> bool:
            raise RuntimeError("flush bug")

        def shutdown(self, timeout: float | None = None) -> None:
            raise RuntimeError("shutdown bug")

    clumsy = Clumsy()
    tracekit.configure(exporter=clumsy)
    assert work(1) == 1
    tracekit.flush(5)
    assert work(2) == 2
    tracekit.flush(5)
    assert [r["name"] for r in clumsy.traces] == ["work", "work"]
    tracekit.configure(exporter=InMemoryExporter())  # shuts the clumsy one down


def test_exporter_returning_none_counts_as_success(captured):
    class Sloppy(BaseExporter):
        def __init__(self) -> None:
            self.records: list[dict[str, Any]] = []

        def export(self, traces):  # type: ignore[override]
            self.records.extend(traces)

    sloppy = Sloppy()
    tracekit.configure(exporter=sloppy)
    work(1)
    assert tracekit.flush(10)
    assert len(sloppy.records) == 1
    assert "export_failed" not in tracekit.get_stats()


# -- FanoutExporter -----------------------------------------------------------------------


def test_fanout_one_failing_does_not_stop_the_others():
    class Recording(InMemoryExporter):
        def __init__(self) -> None:
            super().__init__()
            self.flushed = 0
            self.shut = 0

        def force_flush(self, timeout: float | None = None) -> bool:
            self.flushed += 1
            return True

        def shutdown(self, timeout: float | None = None) -> None:
            self.shut += 1

    class BadShutdown(RaisingExporter):
        def shutdown(self, timeout: float | None = None) -> None:
            raise RuntimeError("cannot close")

    first, last = Recording(), Recording()
    raising, failing = BadShutdown(), FailingExporter()
    fanout = FanoutExporter([first, raising, failing, last])
    records = [{"trace_id": "a"}, {"trace_id": "b"}]
    result = fanout.export(records)
    assert not result.ok
    assert "backend down" in result.message
    assert "rejected" in result.message
    assert first.traces == records
    assert last.traces == records
    assert raising.calls == failing.calls == 1

    assert fanout.force_flush(1.0) is True
    assert first.flushed == last.flushed == 1
    fanout.shutdown(1.0)
    assert first.shut == last.shut == 1

    assert FanoutExporter([first, last]).export(records) == SUCCESS


# -- RetryingExporter ------------------------------------------------------------------------


class Scripted(BaseExporter):
    """Returns (or raises) the scripted outcomes in turn, then succeeds."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.times: list[float] = []
        self.shut = False

    def export(self, traces: Sequence[dict[str, Any]]) -> ExportResult:
        self.times.append(time.monotonic())
        outcome = self.outcomes.pop(0) if self.outcomes else SUCCESS
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def shutdown(self, timeout: float | None = None) -> None:
        self.shut = True


RETRYABLE = ExportResult(ok=False, retryable=True, message="503")


def test_retrying_retries_retryable_failures():
    inner = Scripted(RETRYABLE, ConnectionError("reset"), RETRYABLE)
    retrying = RetryingExporter(inner, max_attempts=5, initial_backoff=0.01)
    assert retrying.export([{"trace_id": "a"}]).ok
    assert len(inner.times) == 4


def test_retrying_does_not_retry_permanent_failures():
    permanent = ExportResult(ok=False, retryable=False, message="400")
    inner = Scripted(permanent)
    retrying = RetryingExporter(inner, max_attempts=5, initial_backoff=0.01)
    assert retrying.export([{}]) == permanent
    assert len(inner.times) == 1


def test_retrying_backs_off_exponentially():
    inner = Scripted(RETRYABLE, RETRYABLE, RETRYABLE)
    retrying = RetryingExporter(inner, max_attempts=5, initial_backoff=0.04)
    assert retrying.export([{}]).ok
    gaps = [b - a for a, b in zip(inner.times, inner.times[1:], strict=False)]
    # 0.04, 0.08, 0.16 with jitter in [0.5, 1.5)
    assert 0.018 <= gaps[0] <= 0.2
    assert 0.038 <= gaps[1] <= 0.3
    assert 0.078 <= gaps[2] <= 0.5
    assert sum(gaps) >= 0.14


def test_retrying_honours_retry_after():
    inner = Scripted(ExportResult(ok=False, retryable=True, retry_after=0.3, message="429"))
    retrying = RetryingExporter(inner, max_attempts=3, initial_backoff=0.001)
    assert retrying.export([{}]).ok
    (gap,) = [b - a for a, b in zip(inner.times, inner.times[1:], strict=False)]
    assert 0.29 <= gap < 1.0


def test_retrying_gives_up_after_max_attempts():
    last = ExportResult(ok=False, retryable=True, message="still 503")
    inner = Scripted(RETRYABLE, RETRYABLE, last, RETRYABLE)
    retrying = RetryingExporter(inner, max_attempts=3, initial_backoff=0.001)
    assert retrying.export([{}]) == last
    assert len(inner.times) == 3


def test_retrying_gives_up_when_the_wait_would_exceed_max_elapsed():
    wait_long = ExportResult(ok=False, retryable=True, retry_after=30, message="429")
    inner = Scripted(wait_long)
    retrying = RetryingExporter(inner, max_attempts=5, max_elapsed=1.0)
    started = time.monotonic()
    assert retrying.export([{}]) == wait_long
    assert time.monotonic() - started < 0.5
    assert len(inner.times) == 1


def test_retrying_shutdown_cuts_the_wait_short():
    wait_long = ExportResult(ok=False, retryable=True, retry_after=20, message="429")
    inner = Scripted(wait_long)
    retrying = RetryingExporter(inner, max_attempts=5, max_backoff=30, max_elapsed=60)
    results: list[ExportResult] = []
    thread = threading.Thread(target=lambda: results.append(retrying.export([{}])))
    started = time.monotonic()
    thread.start()
    assert wait_for(lambda: len(inner.times) == 1)
    time.sleep(0.05)
    retrying.shutdown(1.0)
    thread.join(5)
    assert not thread.is_alive()
    assert time.monotonic() - started < 3.0
    assert results == [wait_long]
    assert inner.shut
