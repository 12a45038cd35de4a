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
