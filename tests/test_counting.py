"""Counting is exact: a full disk counts only what it did not take, a batch bigger than
the spool's room keeps what fits, a garbage 200 is a destination error."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tests.test_delivery import Destination, records

import tracekit
from tracekit import _state, _stats, _store
from tracekit.exporters.delivery import SpoolingExporter
from tracekit.exporters.spool import Spool


def test_a_batch_bigger_than_the_spool_keeps_what_fits(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", 1000, {"uri": "http://dest"})
    batch = records(*(f"{i:032x}" for i in range(10)))
    kept = spool.put(batch)
    assert 0 < kept < 10
    assert spool.size() <= 1000
    (claim,) = list(spool.claims())
    assert [r["trace_id"] for r in claim.records] == [r["trace_id"] for r in batch[:kept]]
    claim.release()

    # The destination is down: the batch already spooled stays (a delivery thread that
    # succeeded, or set a raising exporter's batch aside, would free room meanwhile).
    down = Destination(tracekit.exporters.ExportResult(ok=False, message="down"))
    spooling = SpoolingExporter(down, spool, "http://dest")
    try:
        result = spooling.keep(records(*(f"{i:032x}" for i in range(10, 20))))
    finally:
        spooling.shutdown(1)
    assert not result.ok
    assert result.counted
    assert _stats.snapshot() == {"spool_full": 10}  # the spool was full already


def test_a_full_disk_counts_only_what_it_did_not_take(tmp_path: Path) -> None:
    """The file size limit (RLIMIT_FSIZE, EFBIG) stands in for a full disk."""
    store = tmp_path / "store"
    code = """
        import resource, signal, json, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (30_000, 30_000))
        import tracekit

        for i in range(300):
            with tracekit.start_span("step", inputs={"i": i, "pad": "x" * 100}):
                pass
            if i % 50 == 49:
                tracekit.flush(10)
        tracekit.flush(10)
        sys.stdout.write(json.dumps(tracekit.get_stats()) + "\\n")
    """
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, "TRACEKIT_TRACKING_URI": str(store), "TRACEKIT_TESTING": "0"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout.splitlines()[-1])
    # The last write may have been cut mid-line: that torn record is not counted as written.
    written = [r for path in store.glob("*.jsonl") for r in _store.read_lines(path).records]
    assert 0 < len(written) < 300
    assert stats["export_failed"] == 300 - len(written)


class _Portal(BaseHTTPRequestHandler):
    """Answers 200 with an HTML page to everything (a captive portal, a proxy's page)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _page(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b"<html><body>Welcome to the hotel wifi</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._page()

    def do_POST(self) -> None:
        self._page()


@pytest.fixture
def portal() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Portal)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_garbage_200_is_a_destination_error(
    portal: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tracekit")
    _state.reset()
    try:
        tracekit.configure(
            tracking_uri=portal, experiment_name="exp", spool_dir=str(tmp_path / "spool")
        )
        with tracekit.start_span("step"):
            pass
        assert tracekit.flush(20)
    finally:
        _state.reset()
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "internal error" in m], messages
    (message,) = [m for m in messages if "cannot deliver" in m]
    assert "HTTP 200 with a body that is not an MLflow server's answer" in message
    assert "is the tracking URI an MLflow server?" in message
    assert _stats.events().get("spooled") == 1


class _Stalled(tracekit.exporters.BaseExporter):
    """A destination whose export blocks until released; `keep()` takes traces locally
    (as the built-in destinations do) unless `refuse` is set."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.entered = threading.Event()
        self.release = threading.Event()
        self.exported: list[int] = []
        self.kept: list[int] = []
        self.keep_calls = 0

    def export(self, traces: Any) -> tracekit.exporters.ExportResult:
        self.entered.set()
        self.release.wait(30)
        self.exported += [t["spans"][0]["inputs"]["i"] for t in traces]
        return tracekit.exporters.SUCCESS

    def keep(self, traces: Any) -> tracekit.exporters.ExportResult:
        self.keep_calls += 1
        if self.refuse:
            return tracekit.exporters.ExportResult(ok=False, message="full")
        self.kept += [t["spans"][0]["inputs"]["i"] for t in traces]
        return tracekit.exporters.SUCCESS


def _burst(destination: _Stalled) -> dict[str, int]:
    _state.reset()
    tracekit.configure(
        exporter=destination, max_queued_spans=10, export_batch_spans=4, export_interval=0.01
    )
    try:
        with tracekit.start_span("first", inputs={"i": -1}):
            pass
        assert destination.entered.wait(10)  # the worker is stuck in its first batch
        for i in range(100):
            with tracekit.start_span("step", inputs={"i": i}):
                pass
        destination.release.set()
        assert tracekit.flush(10)
        return tracekit.get_stats()
    finally:
        destination.release.set()
        _state.reset()


def test_a_burst_beyond_the_queue_goes_to_keep_and_is_counted_as_spilled() -> None:
    destination = _Stalled()
    stats = _burst(destination)
    assert sorted(destination.exported + destination.kept) == list(range(-1, 100))
    assert stats["spilled"] == len(destination.kept) > 0
    assert "queue_full" not in stats


def test_what_keep_refuses_is_counted_and_spilling_pauses() -> None:
    destination = _Stalled(refuse=True)
    stats = _burst(destination)
    lost = 101 - len(destination.exported)
    assert stats["queue_full"] == lost > 0
    assert "spilled" not in stats
    # After a refusal the overflow is dropped for a second without serializing it (the
    # burst of ~90 overflows takes milliseconds).
    assert destination.keep_calls <= 2, destination.keep_calls


def test_a_trace_the_worker_is_digesting_is_spilled_with_the_workers_record() -> None:
    """An overflow can take a trace whose record the worker is making: the spilling
    caller waits for that record instead of making a second one from spans the digest
    is emptying. Span processors see each span once, and every trace arrives once."""
    destination = _Stalled()
    destination.release.set()  # exports go through at once
    seen: list[int] = []
    digesting = threading.Event()
    resume = threading.Event()

    def processor(span: dict[str, Any]) -> dict[str, Any]:
        seen.append(span["inputs"]["i"])
        if span["inputs"]["i"] == -1 and not digesting.is_set():
            digesting.set()
            resume.wait(30)  # the worker, in the middle of the first trace's record
        return span

    _state.reset()
    tracekit.configure(
        exporter=destination,
        max_queued_spans=4,
        export_batch_spans=1000,
        export_interval=3600,
        span_processors=[processor],
    )
    timer = threading.Timer(0.5, resume.set)
    try:
        with tracekit.start_span("first", inputs={"i": -1}):
            pass
        assert digesting.wait(10)
        timer.start()  # a spill that waits for the worker is let go by this, not a deadlock
        for i in range(10):
            with tracekit.start_span("step", inputs={"i": i}):
                pass
        assert tracekit.flush(10)
        stats = tracekit.get_stats()
    finally:
        resume.set()
        timer.cancel()
        _state.reset()
    assert seen.count(-1) == 1, seen
    assert sorted(destination.exported + destination.kept) == list(range(-1, 10))
    assert -1 in destination.kept  # spilled, with the worker's record (its inputs)
    assert stats["spilled"] == len(destination.kept)
