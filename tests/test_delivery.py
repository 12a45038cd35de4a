"""Delivery to a remote destination that fails: retries, circuit breaker, spool, exit.

The first half runs the real wrappers (`RetryingExporter`, `CircuitBreakerExporter`,
`SpoolingExporter`) around small in-test destinations; the second half runs whole
applications against a real `mlflow server` behind the fault proxy (tests/conftest.py)
and reads what arrived back with MLflow's own client.

Helpers used by tests/test_spool_upload.py live here too (`Remote`, `run_app`, ...).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from tests.fault_proxy import FaultProxy
from tests.mlflow_server import MlflowServer, read_traces

import tracekit
from tracekit import _state, _stats
from tracekit.exporters.base import (
    SUCCESS,
    BaseExporter,
    ExportResult,
    RetryingExporter,
    TraceRecord,
)
from tracekit.exporters.delivery import CircuitBreakerExporter, SpoolingExporter
from tracekit.exporters.memory import InMemoryExporter
from tracekit.exporters.spool import Spool

pytestmark = pytest.mark.timeout(600)

DOWN = ExportResult(ok=False, retryable=True, message="connection refused")


# -- in-test destinations (doubles of the remote end, not of tracekit) ---------------------


class Destination(BaseExporter):
    """Answers each export with the next scripted result (the last one repeats).

    Records every call (monotonic time, trace ids); `gate`, when set, makes calls
    wait for it (a stalled destination).
    """

    def __init__(self, *results: ExportResult) -> None:
        self.results = list(results) or [SUCCESS]
        self.calls: list[tuple[float, list[str]]] = []
        self.delivered: list[str] = []
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.closed = False
        self._lock = threading.Lock()

    def export(self, traces: Sequence[TraceRecord]) -> ExportResult:
        with self._lock:
            self.calls.append((time.monotonic(), [t["trace_id"] for t in traces]))
            result = self.results.pop(0) if len(self.results) > 1 else self.results[0]
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(30)
        if result.ok:
            with self._lock:
                self.delivered.extend(t["trace_id"] for t in traces)
        return result

    def answer(self, *results: ExportResult) -> None:
        with self._lock:
            self.results = list(results)

    def shutdown(self, timeout: float | None = None) -> None:
        self.closed = True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def records(*ids: str, spans: int = 1) -> list[TraceRecord]:
    """Minimal well-formed trace records."""
    out = []
    for trace_id in ids:
        out.append(
            {
                "schema": "tracekit.trace/1",
                "trace_id": trace_id,
                "name": "t",
                "start_time_ns": 1,
                "end_time_ns": 2,
                "spans": [
                    {"span_id": f"{trace_id[:12]}{i:04d}", "parent_id": None, "name": "s"}
                    for i in range(spans)
                ],
            }
        )
    return out


def wait_until(condition: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        time.sleep(0.02)


def jsonl_ids(directory: Path, pattern: str = "*.jsonl") -> list[str]:
    """Trace ids in the spool files under `directory` (every destination), with repeats.

    `*.jsonl*` means pending and claimed batches (a delivery on its way renames a file
    while it sends it), not the ones set aside."""
    for _ in range(20):  # a file renamed between listing and reading: look again
        ids = []
        try:
            for path in sorted(directory.rglob(pattern)):
                if pattern != "*.rejected" and path.name.endswith(".rejected"):
                    continue
                for line in path.read_text().splitlines():
                    if line.strip():
                        ids.append(json.loads(line)["trace_id"])
        except FileNotFoundError:
            time.sleep(0.01)
            continue
        return ids
    raise AssertionError("the spool kept changing")


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool" / "dest", 1 << 30, {"uri": "test://dest"})


@pytest.fixture
def stopper() -> Iterator[list[SpoolingExporter]]:
    """Spooling exporters made by a test, shut down afterwards (their threads end)."""
    made: list[SpoolingExporter] = []
    yield made
    for exporter in made:
        exporter.shutdown(2)


def spooling(
    destination: Destination, spool: Spool, made: list[SpoolingExporter], cooldown: float = 0.05
) -> tuple[SpoolingExporter, CircuitBreakerExporter]:
    breaker = CircuitBreakerExporter(destination, cooldown=cooldown, max_cooldown=0.2)
    exporter = SpoolingExporter(breaker, spool, "test://dest")
    made.append(exporter)
    return exporter, breaker


# -- RetryingExporter ----------------------------------------------------------------------


def test_retry_backoff_doubles_up_to_the_maximum(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="tracekit")
    destination = Destination(DOWN, DOWN, DOWN, DOWN, SUCCESS)
    retrying = RetryingExporter(
        destination, max_attempts=6, initial_backoff=0.02, max_backoff=0.05, jitter=lambda: 1.0
    )
    assert retrying.export(records("a" * 32)).ok
    waits = [r.getMessage().rsplit(" ", 1)[-1] for r in caplog.records if "retrying" in r.msg]
    assert waits == ["0.02s", "0.04s", "0.05s", "0.05s"]
    times = [t for t, _ in destination.calls]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) == 4
    assert all(
        gap >= wait - 0.005 for gap, wait in zip(gaps, [0.02, 0.04, 0.05, 0.05], strict=True)
    )


def test_retry_gives_up_after_max_attempts_and_on_non_retryable() -> None:
    destination = Destination(DOWN)
    retrying = RetryingExporter(destination, max_attempts=3, initial_backoff=0.01)
    assert retrying.export(records("a" * 32)) == DOWN
    assert len(destination.calls) == 3

    bad = ExportResult(ok=False, retryable=False, message="HTTP 400", status=400)
    destination = Destination(bad)
    assert RetryingExporter(destination, initial_backoff=0.01).export(records("b" * 32)) == bad
    assert len(destination.calls) == 1


def test_retry_honours_retry_after() -> None:
    busy = ExportResult(ok=False, retryable=True, retry_after=0.3, message="HTTP 503", status=503)
    destination = Destination(busy, SUCCESS)
    retrying = RetryingExporter(destination, initial_backoff=0.01, max_backoff=1.0)
    assert retrying.export(records("a" * 32)).ok
    (first, _), (second, _) = destination.calls
    assert second - first >= 0.29

    # Longer than we would wait: give up at once, the circuit breaker outside honours it.
    later = ExportResult(ok=False, retryable=True, retry_after=30, message="HTTP 429", status=429)
    destination = Destination(later, SUCCESS)
    started = time.monotonic()
    assert RetryingExporter(destination, max_backoff=5.0).export(records("b" * 32)) == later
    assert time.monotonic() - started < 0.5
    assert len(destination.calls) == 1


def test_retry_stops_when_the_time_budget_is_spent() -> None:
    destination = Destination(DOWN)
    retrying = RetryingExporter(
        destination, max_attempts=10, initial_backoff=0.1, max_elapsed=0.25, jitter=lambda: 1.0
    )
    assert retrying.export(records("a" * 32)) == DOWN
    assert len(destination.calls) == 2  # 0 s, 0.1 s; a third at 0.3 s would pass the budget


def test_retry_shutdown_cuts_the_wait_short() -> None:
    destination = Destination(DOWN)
    retrying = RetryingExporter(destination, max_attempts=3, initial_backoff=10, jitter=lambda: 1.0)
    outcome: list[ExportResult] = []
    worker = threading.Thread(target=lambda: outcome.append(retrying.export(records("a" * 32))))
    worker.start()
    wait_until(destination.entered.is_set)
    time.sleep(0.05)
    started = time.monotonic()
    retrying.shutdown(1)
    worker.join(2)
    assert not worker.is_alive()
    assert time.monotonic() - started < 0.5
    assert outcome == [DOWN]
    assert len(destination.calls) == 1
    assert destination.closed


# -- CircuitBreakerExporter ----------------------------------------------------------------


def test_breaker_opens_fails_fast_and_doubles_its_cooldown() -> None:
    clock = Clock()
    destination = Destination(DOWN)
    breaker = CircuitBreakerExporter(destination, cooldown=1.0, max_cooldown=8.0, clock=clock)
    batch = records("a" * 32)
    assert breaker.ready_in() == 0
    assert not breaker.is_open

    assert not breaker.export(batch).ok
    assert breaker.is_open
    assert len(destination.calls) == 1
    cooldowns = []
    for _ in range(6):
        wait = breaker.ready_in()
        cooldowns.append(wait)
        for _ in range(5):  # while open: nothing reaches the destination
            assert breaker.export(batch) == DOWN
        assert len(destination.calls) == 1 + len(cooldowns) - 1
        clock.now += wait
        assert breaker.ready_in() == 0
        assert not breaker.export(batch).ok  # the probe fails
    assert cooldowns == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]

    destination.answer(SUCCESS)
    clock.now += breaker.ready_in()
    assert breaker.export(batch).ok  # the probe gets through: closed again, cooldown reset
    assert not breaker.is_open
    assert breaker.ready_in() == 0
    destination.answer(DOWN)
    assert not breaker.export(batch).ok
    assert breaker.ready_in() == 1.0


def test_breaker_stays_open_for_a_longer_retry_after() -> None:
    clock = Clock()
    later = ExportResult(ok=False, retryable=True, retry_after=30, message="HTTP 429", status=429)
    destination = Destination(later)
    breaker = CircuitBreakerExporter(destination, cooldown=1.0, clock=clock)
    assert breaker.export(records("a" * 32)) == later
    assert breaker.ready_in() == 30
    clock.now += 29.9
    assert not breaker.export(records("a" * 32)).ok
    assert len(destination.calls) == 1


def test_breaker_a_rejected_batch_does_not_open_it() -> None:
    rejected = ExportResult(ok=False, retryable=False, message="HTTP 400", status=400)
    assert rejected.rejected
    assert not DOWN.rejected
    assert not ExportResult(ok=False, message="HTTP 401", status=401).rejected
    destination = Destination(rejected)
    breaker = CircuitBreakerExporter(destination, clock=Clock())
    assert breaker.export(records("a" * 32)) == rejected
    assert not breaker.is_open


def test_breaker_half_open_lets_exactly_one_probe_through() -> None:
    clock = Clock()
    destination = Destination(DOWN)
    breaker = CircuitBreakerExporter(destination, cooldown=1.0, clock=clock)
    breaker.export(records("a" * 32))
    clock.now += 1.0
    destination.answer(SUCCESS)
    destination.gate = threading.Event()  # the probe hangs until we let it go
    destination.entered.clear()
    probe = threading.Thread(target=breaker.export, args=(records("b" * 32),))
    probe.start()
    wait_until(destination.entered.is_set)
    try:
        for i in range(20):  # meanwhile: every other batch fails fast
            assert breaker.export(records(f"{i:032x}")) == DOWN
        assert breaker.ready_in() == CircuitBreakerExporter.PROBE_POLL
        assert len(destination.calls) == 2
    finally:
        destination.gate.set()
    probe.join(5)
    assert not breaker.is_open
    destination.gate = None
    assert breaker.export(records("c" * 32)).ok
    assert destination.delivered == ["b" * 32, "c" * 32]


# -- SpoolingExporter ----------------------------------------------------------------------


def test_spooling_keeps_failed_batches_and_delivers_them_oldest_first(
    spool: Spool, stopper: list[SpoolingExporter], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tracekit")
    destination = Destination(DOWN)
    exporter, _ = spooling(destination, spool, stopper)
    ids = [f"{i:032x}" for i in range(1, 21)]
    for trace_id in ids:
        assert exporter.export(records(trace_id)).ok  # written ahead: the batch is safe
    assert sorted(jsonl_ids(spool.directory, "*.jsonl*")) == ids  # pending or being tried
    # Counted as spooled once tried and failed, or when written while the destination fails.
    wait_until(lambda: _stats.events().get("spooled") == 20)
    assert len(destination.calls) < 20  # the circuit opened: most batches never tried

    destination.answer(SUCCESS)
    wait_until(lambda: not spool.pending() and _stats.events().get("delivered_from_spool") == 20)
    assert destination.delivered == ids  # oldest first, each once
    messages = [r.getMessage() for r in caplog.records if r.name == "tracekit"]
    assert len(messages) == 2, messages
    assert "cannot deliver traces to test://dest" in messages[0]
    assert "test://dest answers again" in messages[1]


def test_spooling_a_rejected_batch_is_set_aside_and_does_not_block_the_spool(
    spool: Spool, stopper: list[SpoolingExporter], caplog: pytest.LogCaptureFixture
) -> None:
    rejected = ExportResult(ok=False, retryable=False, message="HTTP 400 bad", status=400)

    class Picky(Destination):
        """Refuses any batch holding a trace id that starts with 1."""

        def export(self, traces: Sequence[TraceRecord]) -> ExportResult:
            if any(t["trace_id"].startswith("1") for t in traces):
                self.calls.append((time.monotonic(), [t["trace_id"] for t in traces]))
                return rejected
            return super().export(traces)

    destination = Picky(SUCCESS)
    exporter, _ = spooling(destination, spool, stopper)
    assert exporter.export(records("1" * 32)).ok  # written ahead; refused, it is set aside
    wait_until(lambda: jsonl_ids(spool.directory, "*.rejected") == ["1" * 32])
    assert spool.pending() == []

    # A spooled batch the destination refuses is set aside; the ones after it go on.
    for trace_id in ("2" * 32, "1" * 32, "3" * 32):
        spool.put(records(trace_id))
    assert exporter.export(records("4" * 32)).ok  # starts the delivery of the spool
    wait_until(lambda: len(destination.delivered) == 3 and not spool.pending())
    assert destination.delivered == ["2" * 32, "3" * 32, "4" * 32]  # oldest first
    aside = [p.name for p in spool.directory.iterdir() if p.name.endswith(".rejected")]
    assert len(aside) == 2
    assert jsonl_ids(spool.directory, "*.rejected") == ["1" * 32, "1" * 32]
    assert _stats.snapshot() == {"export_failed": 2}
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2
    assert any("refused 1 spooled trace(s) (HTTP 400 bad)" in w for w in warnings)


def test_spooling_shutdown_during_a_retry_wait_spools_the_batch_once(
    spool: Spool,
) -> None:
    busy = ExportResult(ok=False, retryable=True, retry_after=3, message="HTTP 503", status=503)
    destination = Destination(busy)
    retrying = RetryingExporter(destination, max_attempts=3, max_backoff=5.0)
    exporter = SpoolingExporter(CircuitBreakerExporter(retrying), spool, "test://dest")
    batch = records("a" * 32, "b" * 32)
    outcome: list[ExportResult] = []
    worker = threading.Thread(target=lambda: outcome.append(exporter.export(batch)))
    worker.start()
    wait_until(destination.entered.is_set)  # now waiting 3 s before the next attempt
    started = time.monotonic()
    exporter.shutdown(1.0)
    assert time.monotonic() - started < 0.5
    worker.join(1)
    assert not worker.is_alive()
    assert time.monotonic() - started < 0.5
    assert outcome == [SUCCESS]
    assert len(destination.calls) == 1  # no attempt after shutdown
    assert sorted(jsonl_ids(spool.directory)) == ["a" * 32, "b" * 32]  # exactly once
    assert _stats.events()["spooled"] == 2
    assert exporter.export(records("c" * 32)).ok  # after shutdown: kept, not sent
    assert len(destination.calls) == 1
    assert len(spool.pending()) == 2


def test_spooling_shutdown_waits_for_no_stalled_destination(spool: Spool) -> None:
    spool.put(records("a" * 32))
    destination = Destination(DOWN)
    destination.gate = threading.Event()  # every call hangs
    # A new exporter finds the spool and starts delivering it: that call hangs.
    exporter = SpoolingExporter(CircuitBreakerExporter(destination), spool, "test://dest")
    drainer = exporter._drainer
    assert drainer is not None
    wait_until(destination.entered.is_set)
    started = time.monotonic()
    exporter.shutdown(0.5)
    assert time.monotonic() - started < 0.8
    destination.gate.set()
    drainer.join(5)
    assert not drainer.is_alive()
    assert [p.name for p in spool.pending()]
    assert jsonl_ids(spool.directory) == ["a" * 32]


def test_spooling_shutdown_cuts_a_retry_wait_of_the_spool_thread_short(spool: Spool) -> None:
    spool.put(records("a" * 32))
    busy = ExportResult(ok=False, retryable=True, retry_after=4, message="HTTP 503", status=503)
    destination = Destination(busy)
    retrying = RetryingExporter(destination, max_attempts=3, max_backoff=5.0)
    exporter = SpoolingExporter(CircuitBreakerExporter(retrying), spool, "test://dest")
    drainer = exporter._drainer
    assert drainer is not None
    wait_until(destination.entered.is_set)  # the spool thread now waits 4 s to retry
    started = time.monotonic()
    exporter.shutdown(3.0)
    assert time.monotonic() - started < 0.5
    drainer.join(1)
    assert not drainer.is_alive()
    assert len(destination.calls) == 1
    assert jsonl_ids(spool.directory) == ["a" * 32]  # released, not lost


def test_spooling_shutdown_finishes_delivering_while_the_destination_answers(
    spool: Spool,
) -> None:
    for i in range(30):
        spool.put(records(f"{i:032x}"))
    destination = Destination(SUCCESS)
    exporter = SpoolingExporter(CircuitBreakerExporter(destination), spool, "test://dest")
    assert exporter.export(records("f" * 32)).ok  # the destination answers
    exporter.shutdown(5.0)  # right away, as a short-lived process would
    assert spool.pending() == []
    assert len(destination.delivered) == 31


def test_spooling_full_spool_is_counted_and_warned_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tracekit")
    small = Spool(tmp_path / "small", 600, {"uri": "test://dest"})
    exporter = SpoolingExporter(CircuitBreakerExporter(Destination(DOWN)), small, "test://dest")
    try:
        results = [exporter.export(records(f"{i:032x}")) for i in range(10)]
    finally:
        exporter.shutdown(1)
    kept = sum(r.ok for r in results)
    assert 1 <= kept < 10
    assert all(r.counted for r in results if not r.ok)  # the pipeline does not count them again
    assert _stats.snapshot() == {"spool_full": 10 - kept}
    assert _stats.events()["spooled"] == kept
    full = [r for r in caplog.records if "the spool (TRACEKIT_SPOOL_DIR" in r.getMessage()]
    assert len(full) == 1


def test_pipeline_shutdown_spools_the_batch_in_flight_and_counts_no_loss(
    spool: Spool,
) -> None:
    """The whole pipeline: exit while the destination hangs; every trace kept, once."""
    destination = Destination(DOWN)
    destination.gate = threading.Event()
    exporter = SpoolingExporter(
        CircuitBreakerExporter(RetryingExporter(destination)), spool, "test://dest"
    )
    _state.reset()
    tracekit.configure(exporter=exporter, export_interval=0.01, shutdown_timeout=1.0)
    try:
        ids, _ = traced_calls(3)
        wait_until(destination.entered.is_set)  # the first batch hangs in the destination
        more, _ = traced_calls(3, start=3)
        started = time.monotonic()
        tracekit.shutdown()
        assert time.monotonic() - started < 1.5
    finally:
        destination.gate.set()
        for thread in threading.enumerate():  # the worker, back from the destination
            if thread.name == "tracekit-export":
                thread.join(5)
        _state.reset()
    # Pending, or claimed by the delivery that hangs (taken back by the next process).
    assert sorted(jsonl_ids(spool.directory, "*.jsonl*")) == sorted(ids + more)
    assert destination.delivered == []
    assert len(destination.calls) == 1
    stats = _stats.snapshot()
    assert not {"not_exported_at_exit", "export_failed"} & set(stats), stats
    assert _stats.events()["spooled"] == 6


# -- a real MLflow server behind the fault proxy -------------------------------------------


@tracekit.trace
def answer(i: int) -> int:
    with tracekit.start_span("lookup", span_type="TOOL", inputs={"i": i}) as span:
        span.set_outputs(i)
    return i


class TimedProxy(FaultProxy):
    """The fault proxy, also recording when each request arrived."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.arrivals: list[tuple[float, str, str, str]] = []

    def _arrived(self, method: str, path: str) -> str:
        mode = super()._arrived(method, path)
        with self._cond:
            self.arrivals.append((time.monotonic(), method, path, mode))
        return mode


@dataclass
class Remote:
    """An experiment on the real server, reached through the fault proxy."""

    proxy: TimedProxy
    server: MlflowServer
    spool_dir: Path
    monkeypatch: pytest.MonkeyPatch
    name: str = field(default_factory=lambda: f"delivery-{uuid.uuid4().hex[:10]}")

    def connect(self, **env: str) -> None:
        """Send this process's traces to the proxy (`env`: more TRACEKIT_* settings)."""
        for key, value in env.items():
            self.monkeypatch.setenv(key, value)
        _state.reset()
        tracekit.configure(
            tracking_uri=self.proxy.url,
            experiment_name=self.name,
            spool_dir=str(self.spool_dir),
            export_interval=0.05,
        )

    def env(self, **more: str) -> dict[str, str]:
        """The environment of an application process sending here."""
        return {
            "TRACEKIT_TRACKING_URI": self.proxy.url,
            "TRACEKIT_EXPERIMENT_NAME": self.name,
            "TRACEKIT_SPOOL_DIR": str(self.spool_dir),
            "TRACEKIT_EXPORT_INTERVAL": "0.05",
            **more,
        }

    def experiment_id(self) -> str:
        url = f"{self.server.url}/api/2.0/mlflow/experiments/get-by-name?experiment_name="
        with urllib.request.urlopen(url + quote(self.name), timeout=30) as resp:  # noqa: S310
            return str(json.loads(resp.read())["experiment"]["experiment_id"])

    def traces(self) -> list[dict[str, Any]]:
        try:
            experiment_id = self.experiment_id()
        except OSError:  # not created yet
            return []
        return read_traces(self.server.python, self.server.url, experiment_id)

    def wait_for(self, ids: Sequence[str], spans: int = 2, timeout: float = 30.0) -> list[Any]:
        """Poll MLflow until every trace of `ids` is there, whole; return all traces."""
        wanted = {"tr-" + i for i in ids}
        deadline = time.monotonic() + timeout
        while True:
            traces = self.traces()
            whole = {t["trace_id"] for t in traces if len(t["spans"]) == spans}
            if wanted <= whole:
                return traces
            assert time.monotonic() < deadline, (
                f"{len(wanted - whole)} of {len(wanted)} traces missing after {timeout} s"
            )
            time.sleep(0.3)

    def spooled_ids(self) -> list[str]:
        """Ids in the spool: pending, or claimed by a delivery on its way."""
        return jsonl_ids(self.spool_dir, "*.jsonl*") if self.spool_dir.exists() else []

    def spool_files(self) -> list[Path]:
        """Every batch in the spool: pending, claimed or set aside."""
        return sorted(p for p in self.spool_dir.rglob("*.jsonl*") if p.is_file())

    def wait_until_delivered(self, n: int, timeout: float = 30.0) -> None:
        """Wait until this process delivered `n` traces from the spool and it is empty."""
        wait_until(
            lambda: (
                tracekit.get_stats().get("delivered_from_spool") == n and not self.spool_files()
            ),
            timeout,
            f"{n} traces delivered from the spool",
        )


def assert_once_each(traces: list[dict[str, Any]], ids: Sequence[str], spans: int = 2) -> None:
    """Every trace of `ids` exactly once, with `spans` distinct spans."""
    found = [t["trace_id"] for t in traces]
    assert len(found) == len(set(found)), "a trace is listed twice"
    by_id = {t["trace_id"]: t for t in traces}
    for trace_id in ids:
        trace = by_id["tr-" + trace_id]
        span_ids = [s["span_id"] for s in trace["spans"]]
        assert len(span_ids) == spans, trace["spans"]
        assert len(set(span_ids)) == spans, trace["spans"]


@contextmanager
def remote_for(
    server: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Remote]:
    """A `Remote` behind a fresh `TimedProxy`; tracing is reset before the proxy stops."""
    with TimedProxy(server.url) as proxy:
        try:
            yield Remote(proxy, server, tmp_path / "spool", monkeypatch)
        finally:
            _state.reset()


@pytest.fixture
def remote(
    mlflow_server: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Remote]:
    with remote_for(mlflow_server, tmp_path, monkeypatch) as r:
        yield r


APP = """
import json, sys, time
import tracekit

@tracekit.trace
def answer(i):
    with tracekit.start_span("lookup", span_type="TOOL", inputs={"i": i}) as span:
        span.set_outputs(i)
    return i

def emit(**values):
    sys.stdout.write(json.dumps(values) + "\\n")
    sys.stdout.flush()
"""


def run_app(
    code: str, env: dict[str, str], timeout: float = 60
) -> tuple[list[dict[str, Any]], float]:
    """Run `APP + code` in a fresh interpreter; its JSON lines and its wall time."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", APP + textwrap.dedent(code)],
        env={**os.environ, "TRACEKIT_TESTING": "1", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert "internal error" not in proc.stderr, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()], elapsed


def traced_calls(n: int, start: int = 0) -> tuple[list[str], float]:
    """`n` traced calls in this process: their trace ids and how long they took."""
    ids = []
    started = time.perf_counter()
    for i in range(start, start + n):
        answer(i)
        ids.append(tracekit.get_last_trace_id())
    elapsed = time.perf_counter() - started
    assert all(ids)
    assert len(set(ids)) == n
    return [str(i) for i in ids], elapsed


def test_refused_destination_spools_then_the_same_process_delivers(remote: Remote) -> None:
    remote.proxy.mode = "refuse"
    remote.connect()
    ids, elapsed = traced_calls(50)
    assert elapsed < 0.5, f"50 traced calls took {elapsed:.3f} s with the destination down"
    assert tracekit.flush(30)
    assert tracekit.get_stats()["spooled"] == 50
    assert remote.spool_files()
    assert sorted(remote.spooled_ids()) == sorted(ids)

    remote.proxy.mode = "pass"
    remote.wait_until_delivered(50)  # no restart, no flush: the spool thread delivers
    assert_once_each(remote.wait_for(ids), ids)
    stats = tracekit.get_stats()
    assert not {"export_failed", "spool_full", "queue_full"} & set(stats), stats


def test_503_retry_after_paces_retries_then_delivers(remote: Remote) -> None:
    remote.proxy.mode = "503"
    remote.proxy.retry_after = "1"
    remote.connect()
    ids, _ = traced_calls(5)
    assert tracekit.flush(30)
    assert tracekit.get_stats()["spooled"] == 5
    time.sleep(1.5)  # let the spool thread probe too
    remote.proxy.mode = "pass"
    traces = remote.wait_for(ids)
    assert_once_each(traces, ids)

    refused = [t for t, _, _, mode in remote.proxy.arrivals if mode == "503"]
    assert len(refused) >= 3  # the retries of the first batch, then a probe
    gaps = [b - a for a, b in itertools.pairwise(refused)]
    assert min(gaps) >= 0.95, gaps  # never sooner than Retry-After: 1 allows


def test_breaker_open_costs_no_requests_and_no_time(remote: Remote) -> None:
    """A Retry-After longer than the retries wait: one request, then nothing for a while."""
    remote.proxy.mode = "503"
    remote.proxy.retry_after = "30"
    remote.connect()
    first, _ = traced_calls(1)
    assert tracekit.flush(10)
    before = remote.proxy.count()
    assert before == 1  # no retry storm: the first request was told to wait 30 s

    ids, elapsed = [], 0.0
    for round_ in range(20):  # 20 batches of 5
        more, took = traced_calls(5, start=1 + 5 * round_)
        ids += more
        elapsed += took
        assert tracekit.flush(5)
    time.sleep(1.0)
    assert remote.proxy.count() == before
    assert elapsed < 0.5
    assert tracekit.get_stats()["spooled"] == 101
    assert sorted(remote.spooled_ids()) == sorted(first + ids)
    breaker = _state.pipeline().exporter.exporter.exporter  # type: ignore[attr-defined]
    assert breaker.ready_in() > 25  # Retry-After: 30 holds the circuit open


def test_stalled_destination_does_not_slow_calls_or_shutdown(remote: Remote) -> None:
    remote.proxy.mode = "stall"
    remote.connect(TRACEKIT_EXPORT_TIMEOUT="1", TRACEKIT_SHUTDOWN_TIMEOUT="2")
    ids, elapsed = traced_calls(50)
    assert elapsed < 0.5
    wait_until(lambda: remote.proxy.count() >= 1)  # the worker's request hangs
    more, elapsed = traced_calls(50, start=50)
    assert elapsed < 0.5
    started = time.monotonic()
    tracekit.shutdown()
    took = time.monotonic() - started
    assert took < 2.5, f"shutdown took {took:.2f} s with TRACEKIT_SHUTDOWN_TIMEOUT=2"
    assert sorted(remote.spooled_ids()) == sorted(ids + more)
    stats = tracekit.get_stats()
    assert stats["spooled"] == 100
    assert "not_exported_at_exit" not in stats, stats


def test_stored_but_unanswered_batches_are_replayed_without_duplicates(remote: Remote) -> None:
    remote.connect(TRACEKIT_EXPORT_TIMEOUT="0.5")
    warm, _ = traced_calls(1)  # finds the experiment while the proxy passes
    assert tracekit.flush(10)
    remote.proxy.mode = "pass_then_stall"
    ids, _ = traced_calls(5, start=1)
    assert tracekit.flush(30)
    assert tracekit.get_stats()["spooled"] == 5
    sent = [p for _, _, p, mode in remote.proxy.arrivals if mode == "pass_then_stall"]
    # The server stored them; the request that timed out is not repeated at once.
    assert sent.count("/v1/traces") == 1

    before = len(remote.proxy.arrivals)
    remote.proxy.mode = "pass"
    remote.wait_until_delivered(5)
    replayed = [p for _, _, p, _ in remote.proxy.arrivals[before:]]
    assert "/v1/traces" in replayed  # ...and the same spans went to the server again
    traces = remote.wait_for(warm + ids)
    assert_once_each(traces, warm + ids)
    assert len(traces) == 6


def test_one_warning_when_the_destination_fails_and_one_when_it_is_back(
    remote: Remote, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tracekit")
    remote.proxy.mode = "refuse"
    remote.connect()
    ids = []
    for round_ in range(10):  # ten failed batches
        more, _ = traced_calls(3, start=3 * round_)
        ids += more
        assert tracekit.flush(30)
    assert tracekit.get_stats()["spooled"] == 30
    remote.proxy.mode = "pass"
    remote.wait_until_delivered(30)
    more, _ = traced_calls(3, start=30)
    assert tracekit.flush(10)
    remote.wait_for(ids + more)

    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith(f"tracekit: cannot deliver traces to {remote.proxy.url} (")
    assert "connection refused" in warnings[0]
    assert str(remote.spool_dir) in warnings[0]
    assert warnings[1] == f"tracekit: {remote.proxy.url} answers again; delivering spooled traces"


def test_an_app_exits_in_time_with_the_destination_stalled(remote: Remote) -> None:
    """A real process exit: bounded by TRACEKIT_SHUTDOWN_TIMEOUT, the rest is spooled."""
    remote.proxy.mode = "stall"
    env = remote.env(TRACEKIT_SHUTDOWN_TIMEOUT="2", TRACEKIT_EXPORT_TIMEOUT="1")
    code = """
        ids = []
        started = time.perf_counter()
        for i in range(20):
            answer(i)
            ids.append(tracekit.get_last_trace_id())
        emit(ids=ids, elapsed=time.perf_counter() - started)
    """
    [out], wall = run_app(code, env)
    assert out["elapsed"] < 0.5
    assert wall < 6, f"the app took {wall:.1f} s to exit with TRACEKIT_SHUTDOWN_TIMEOUT=2"
    assert sorted(remote.spooled_ids()) == sorted(out["ids"])

    remote.proxy.mode = "pass"
    from tracekit import cli

    assert cli.main(["upload", "--spool", str(remote.spool_dir)]) == 0
    assert_once_each(remote.wait_for(out["ids"]), out["ids"])
    assert not remote.spool_files()


def test_memory_exporter_unaffected_alongside(remote: Remote) -> None:
    """A dead remote destination next to another one: the other still gets everything."""
    remote.proxy.mode = "refuse"
    memory = InMemoryExporter()
    _state.reset()
    tracekit.configure(
        tracking_uri=remote.proxy.url,
        experiment_name=remote.name,
        spool_dir=str(remote.spool_dir),
        exporter=memory,
        export_interval=0.05,
    )
    ids, elapsed = traced_calls(20)
    assert elapsed < 0.5
    assert tracekit.flush(30)
    assert sorted(r["trace_id"] for r in memory.traces) == sorted(ids)
    assert sorted(remote.spooled_ids()) == sorted(ids)


def test_exit_keeps_everything_with_a_file_store_beside_a_stalled_destination(
    remote: Remote, tmp_path: Path
) -> None:
    """Two destinations, the remote one stalled: at exit the file store gets every trace
    and the spool holds every trace, nothing counted lost."""
    remote.proxy.mode = "stall"
    store = tmp_path / "store"
    env = remote.env(TRACEKIT_SHUTDOWN_TIMEOUT="2", TRACEKIT_EXPORT_TIMEOUT="1")
    env["TRACEKIT_TRACKING_URI"] = f"{store},{remote.proxy.url}"
    code = """
        ids = []
        for i in range(30):
            answer(i)
            ids.append(tracekit.get_last_trace_id())
            time.sleep(0.01)  # several batches: one hangs on the stalled server
        tracekit.shutdown()
        emit(ids=ids, stats=tracekit.get_stats())
    """
    [out], wall = run_app(code, env)
    assert wall < 6, f"the app took {wall:.1f} s to exit with TRACEKIT_SHUTDOWN_TIMEOUT=2"
    assert sorted(jsonl_ids(store)) == sorted(out["ids"])
    assert sorted(remote.spooled_ids()) == sorted(out["ids"])
    assert "not_exported_at_exit" not in out["stats"], out["stats"]


class SlowDestination(Destination):
    """Fails after `delay` seconds: a request that ran into its timeout."""

    def __init__(self, delay: float) -> None:
        super().__init__(DOWN)
        self.delay = delay

    def export(self, traces: Sequence[TraceRecord]) -> ExportResult:
        time.sleep(self.delay)
        return super().export(traces)


def test_retry_does_not_repeat_an_attempt_that_ran_into_the_timeout() -> None:
    slow = SlowDestination(0.2)
    stalled = RetryingExporter(
        slow, max_attempts=3, initial_backoff=0.01, stall_after=0.15, jitter=lambda: 1.0
    )
    assert not stalled.export(records("a" * 32)).ok
    assert len(slow.calls) == 1  # one timeout, not three

    quick = SlowDestination(0.0)
    retried = RetryingExporter(
        quick, max_attempts=3, initial_backoff=0.01, stall_after=0.15, jitter=lambda: 1.0
    )
    assert not retried.export(records("b" * 32)).ok
    assert len(quick.calls) == 3  # fast failures (refused, 503) are still retried


class Blocked(BaseExporter):
    """A custom exporter (no `keep()`) whose first export hangs until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    def export(self, traces: Sequence[TraceRecord]) -> ExportResult:
        self.entered.set()
        self.release.wait(30)
        return SUCCESS


def test_exit_counts_what_a_destination_without_keep_loses() -> None:
    """Beside a custom exporter that cannot keep traces at exit, what it never got is
    counted as not exported, although the memory exporter next to it took it all."""
    blocked, memory = Blocked(), InMemoryExporter()
    _state.reset()
    tracekit.configure(exporter=[blocked, memory], export_interval=0.01)
    try:
        answer(0)
        assert blocked.entered.wait(10)  # the worker is stuck in the first batch
        for i in range(1, 6):
            answer(i)
        started = time.monotonic()
        _state.pipeline().shutdown(0.5)
        assert time.monotonic() - started < 1.5
        stats = tracekit.get_stats()
        assert stats.get("not_exported_at_exit", 0) >= 5, stats
        assert len(memory.traces) == 5  # memory kept the leftovers (keep costs it nothing)
    finally:
        blocked.release.set()
        _state.reset()
