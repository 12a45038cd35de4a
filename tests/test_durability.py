"""Durable delivery: SIGKILL (the OOM killer, `kill -9`, a container's hard stop) with a
stalled remote destination loses at most the last export interval, the file store beside
it keeps up on its own, and the next run delivers what the killed one left, once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tests.mlflow_server import MlflowServer
from tests.test_delivery import assert_once_each, remote_for, traced_calls

import tracekit
from tracekit import _store

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

INTERVAL = 0.2  # TRACEKIT_EXPORT_INTERVAL in the application
# The documented promise is one export interval; the margin is for a loaded machine.
PROMISE = INTERVAL + 0.8

APP = """
    import json, sys, time
    import tracekit

    @tracekit.trace
    def answer(i):
        with tracekit.start_span("lookup", span_type="TOOL", inputs={"i": i}) as span:
            span.set_outputs(i)
        return i

    i = 0
    while True:
        answer(i)
        sys.stdout.write(json.dumps([tracekit.get_last_trace_id(), time.monotonic()]) + "\\n")
        sys.stdout.flush()
        i += 1
        time.sleep(0.002)
"""


def spooled_ids(root: Path) -> set[str]:
    """Trace ids in every spool file, pending or claimed (a delivery in flight)."""
    ids = set()
    for path in root.rglob("*.jsonl*"):
        if path.name.endswith(".rejected") or not path.is_file():
            continue
        ids.update(r["trace_id"] for r in _store.read_lines(path).records)
    return ids


def test_sigkill_with_a_stalled_destination_loses_at_most_one_export_interval(
    mlflow_server: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with remote_for(mlflow_server, tmp_path, monkeypatch) as remote:
        remote.proxy.mode = "stall"  # accepts, reads, never answers
        store = tmp_path / "store"
        env = remote.env(
            TRACEKIT_EXPORT_INTERVAL=str(INTERVAL),
            TRACEKIT_EXPORT_TIMEOUT="60",  # the request stalls for the whole run
        )
        env["TRACEKIT_TRACKING_URI"] = f"{store},{remote.proxy.url}"
        app = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(APP)],
            env={**os.environ, "TRACEKIT_TESTING": "1", **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(4.0)
        finally:
            killed_at = time.monotonic()
            app.send_signal(signal.SIGKILL)
            out, err = app.communicate(timeout=30)
        assert app.returncode == -signal.SIGKILL, err
        assert "internal error" not in err, err
        finished = [json.loads(line) for line in out.splitlines() if line.endswith("]")]
        assert len(finished) > 200, len(finished)
        old_enough = {trace_id for trace_id, at in finished if at < killed_at - PROMISE}
        assert len(old_enough) > 100

        in_store = {r["trace_id"] for r in _store.load(store)}
        in_spool = spooled_ids(remote.spool_dir)
        # Each destination on its own: the file store is not held back by the stalled
        # server, and what was handed to the stalled server is on disk, not in memory.
        assert old_enough - in_store == set()
        assert old_enough - in_spool == set()
        # (The spool may hold one more: finished, and killed before it was printed.)
        assert len(in_spool - {trace_id for trace_id, _ in finished}) <= 1

        # The next run, the destination answering again, delivers them: each once.
        remote.proxy.mode = "pass"
        remote.connect()
        own, _ = traced_calls(1)
        remote.wait_until_delivered(len(in_spool), timeout=120)
        assert tracekit.flush(30)
        delivered = sorted(in_spool) + own
        traces = remote.wait_for(delivered, timeout=120)
        assert_once_each(traces, delivered)
        assert len(traces) == len(delivered)


BURST = """
    import json, sys, threading
    import tracekit

    tracekit.configure(max_queued_spans=40, export_batch_spans=20)

    @tracekit.trace
    def answer(i):
        with tracekit.start_span("lookup", span_type="TOOL", inputs={"i": i}) as span:
            span.set_outputs(i)
        return tracekit.get_current_trace_id()

    ids = []

    def burst(start):
        for i in range(start, start + 150):
            ids.append(answer(i))

    threads = [threading.Thread(target=burst, args=(n * 1000,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sys.stdout.write(json.dumps({"ids": ids, "stats": tracekit.get_stats()}) + "\\n")
"""


def test_a_burst_beyond_the_queue_spills_to_disk_and_arrives_once(
    mlflow_server: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """600 traces from 4 threads into a queue of 40 spans, the remote destination stalled:
    what the worker cannot keep up with is written to disk by the callers, nothing is
    dropped, and every trace reaches the file store and (later) the server exactly once."""
    with remote_for(mlflow_server, tmp_path, monkeypatch) as remote:
        remote.proxy.mode = "stall"
        store = tmp_path / "store"
        env = remote.env(TRACEKIT_SHUTDOWN_TIMEOUT="2", TRACEKIT_EXPORT_TIMEOUT="1")
        env["TRACEKIT_TRACKING_URI"] = f"{store},{remote.proxy.url}"
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(BURST)],
            env={**os.environ, "TRACEKIT_TESTING": "1", **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert "internal error" not in proc.stderr, proc.stderr
        out = json.loads(proc.stdout.splitlines()[-1])
        ids, stats = out["ids"], out["stats"]
        assert len(set(ids)) == 600
        assert stats["spilled"] > 0, stats  # the burst did overflow the queue
        lost = {"queue_full", "spool_full", "export_failed", "not_exported_at_exit"}
        assert not lost & set(stats), stats

        in_store = [r["trace_id"] for r in _store.load(store)]
        assert sorted(in_store) == sorted(ids)  # each once
        spooled = [
            r["trace_id"]
            for path in remote.spool_dir.rglob("*.jsonl*")
            if path.is_file() and not path.name.endswith(".rejected")
            for r in _store.read_lines(path).records
        ]
        assert sorted(spooled) == sorted(ids)

        # The next run, the destination answering again, delivers them: each once.
        remote.proxy.mode = "pass"
        remote.connect()
        own, _ = traced_calls(1)
        remote.wait_until_delivered(len(ids), timeout=180)
        assert tracekit.flush(30)
        delivered = ids + own
        traces = remote.wait_for(delivered, timeout=120)
        assert_once_each(traces, delivered)
        assert len(traces) == len(delivered)
