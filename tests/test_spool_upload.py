"""The spool on disk, delivery by a later process, and `tracekit upload`.

Spool unit tests use the real `Spool` in `tmp_path`; the rest runs applications (in
subprocesses, exiting for real) and the CLI against a real `mlflow server` behind the
fault proxy, and reads the traces back with MLflow's client.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tests.mlflow_server import MlflowServer
from tests.test_delivery import (
    APP,
    Remote,
    assert_once_each,
    records,
    remote_for,
    run_app,
    traced_calls,
    wait_until,
)

import tracekit
from tracekit import _config, _state, cli
from tracekit.exporters import remote as remote_exporters
from tracekit.exporters.memory import InMemoryExporter
from tracekit.exporters.spool import STALE_CLAIM_S, Spool, destination_key, spools

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def remote(
    mlflow_server: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Remote]:
    with remote_for(mlflow_server, tmp_path, monkeypatch) as r:
        yield r


# -- the spool -----------------------------------------------------------------------------


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool" / "dest", 1 << 30, {"uri": "http://dest", "experiment_id": "7"})


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def claimed_name(path: Path, pid: int, token: str | None = None) -> Path:
    return path.with_name(f"{path.name}.claimed-{pid}" + (f"-{token}" if token else ""))


def test_spool_put_pending_claim_done_release(spool: Spool) -> None:
    assert spool.pending() == []
    assert spool.size() == 0
    assert spool.put(records("a" * 32, "b" * 32))
    assert spool.put(records("c" * 32))
    first, second = spool.pending()
    assert first.name < second.name  # oldest first
    described = json.loads((spool.directory / "destination.json").read_text())
    assert described == {"uri": "http://dest", "experiment_id": "7"}
    assert [s.destination for s in spools(spool.directory.parent)] == [described]

    claims = spool.claims()
    claim = next(claims)
    assert [r["trace_id"] for r in claim.records] == ["a" * 32, "b" * 32]
    other = Spool(spool.directory, 1 << 30, {})  # another deliverer sees only the rest
    assert other.pending() == [second]
    claim.release()
    assert spool.pending() == [first, second]
    claim = next(spool.claims())
    claim.done()
    assert spool.pending() == [second]
    assert spool.size() == second.stat().st_size


def test_spool_refuses_a_batch_that_does_not_fit(tmp_path: Path) -> None:
    small = Spool(tmp_path / "s", 700, {"uri": "http://dest"})
    puts = [small.put(records(f"{i:032x}")) for i in range(10)]
    assert puts[0]
    assert not all(puts)
    assert small.size() <= 700
    assert not Spool(tmp_path / "zero", 0, {}).put(records("a" * 32))
    (tmp_path / "file").write_text("")
    assert not Spool(tmp_path / "file" / "below", 1 << 20, {}).put(records("a" * 32))  # OSError


def test_spool_takes_back_claims_of_processes_that_are_gone(spool: Spool) -> None:
    for trace_id in ("1" * 32, "2" * 32, "3" * 32, "4" * 32, "5" * 32):
        spool.put(records(trace_id))
    one, two, three, four, five = spool.pending()
    os.rename(one, claimed_name(one, dead_pid()))  # an older version's claim, holder dead
    os.rename(two, claimed_name(two, dead_pid(), "0badc0de"))  # holder dead
    os.rename(three, claimed_name(three, os.getpid(), "0badc0de"))  # an earlier process, my pid
    os.rename(four, claimed_name(four, os.getppid(), "12345678"))  # alive: leave it
    old = claimed_name(five, os.getppid(), "87654321")
    os.rename(five, old)
    past = time.time() - STALE_CLAIM_S - 10
    os.utime(old, (past, past))  # alive, but held far too long
    assert spool.pending() == [one, two, three, five]
    assert claimed_name(four, os.getppid(), "12345678").exists()
    ids = [claim.records[0]["trace_id"] for claim in spool.claims()]
    assert ids == ["1" * 32, "2" * 32, "3" * 32, "5" * 32]


def test_spool_skips_torn_and_garbage_lines(spool: Spool) -> None:
    good = records("a" * 32, "b" * 32)
    lines = [json.dumps(good[0]), "{not json", json.dumps({"no": "trace"}), "\xff\xfe", "42"]
    lines += [json.dumps({"trace_id": "c" * 32, "spans": "not a list"}), json.dumps(good[1])]
    lines += [json.dumps(records("d" * 32)[0])[:40]]  # a torn last line
    (spool.directory).mkdir(parents=True)
    batch = spool.directory / "00000000000000000001-1-000001.jsonl"
    batch.write_bytes(("\n".join(lines)).encode("utf-8", "surrogateescape"))
    garbage = spool.directory / "00000000000000000002-1-000002.jsonl"
    garbage.write_bytes(b"\x00\x01garbage\n{]\n")
    claims = list(spool.claims())
    assert [[r["trace_id"] for r in c.records] for c in claims] == [["a" * 32, "b" * 32]]
    assert not garbage.exists()  # nothing deliverable in it: removed, not handed out


def test_spool_removes_temporary_files_of_dead_writers(spool: Spool) -> None:
    spool.put(records("a" * 32))
    dead = spool.directory / f".00000000000000000001-{dead_pid()}-000001.jsonl.{dead_pid()}-0.tmp"
    live = spool.directory / f".00000000000000000002-1-000002.jsonl.{os.getppid()}-0.tmp"
    dead.write_text("half a bat")
    live.write_text("being writ")
    assert len(spool.pending()) == 1
    assert not dead.exists()
    assert live.exists()


def test_destination_keys_differ_by_uri_and_experiment() -> None:
    keys = {
        destination_key("http://127.0.0.1:5000", "a"),
        destination_key("http://127.0.0.1:5000", "b"),
        destination_key("http://127.0.0.1:5001", "a"),
        destination_key("http://127.0.0.1:5000", None),
    }
    assert len(keys) == 4
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", key) for key in keys)


# -- a bounded spool, with the real server behind the proxy --------------------------------


def test_a_tiny_spool_counts_and_warns_once_and_never_raises(
    remote: Remote, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tracekit")
    remote.proxy.mode = "refuse"
    remote.connect(TRACEKIT_SPOOL_MAX_MB="0.004")  # room for a few traces only
    ids = []
    for round_ in range(15):
        more, _ = traced_calls(2, start=2 * round_)
        ids += more
        assert tracekit.flush(30)
    stats = tracekit.get_stats()
    assert stats["spool_full"] > 0
    assert stats["spooled"] > 0
    assert stats["spool_full"] + stats["spooled"] == 30
    assert "export_failed" not in stats, stats  # one loss, counted once
    assert sum(p.stat().st_size for p in remote.spool_files()) <= 0.004 * 1024 * 1024
    kept = remote.spooled_ids()
    assert len(kept) == stats["spooled"]
    assert set(kept) <= set(ids)
    full = [r for r in caplog.records if "the spool (TRACEKIT_SPOOL_DIR" in r.getMessage()]
    assert len(full) == 1

    remote.proxy.mode = "pass"  # what was kept still arrives
    remote.wait_until_delivered(len(kept))
    assert_once_each(remote.wait_for(kept), kept)


# -- the next process ----------------------------------------------------------------------


def test_the_next_process_delivers_what_an_earlier_one_left(remote: Remote) -> None:
    remote.proxy.mode = "refuse"
    code = """
        ids = []
        for i in range(10):
            answer(i)
            ids.append(tracekit.get_last_trace_id())
            if i % 2:
                tracekit.flush(10)  # a batch (a spool file) every two traces
        emit(ids=ids)
    """
    [a], wall = run_app(code, remote.env(TRACEKIT_SHUTDOWN_TIMEOUT="2"))
    assert wall < 8
    assert len(remote.spool_files()) >= 5
    assert sorted(remote.spooled_ids()) == sorted(a["ids"])

    remote.proxy.mode = "pass"
    code = """
        answer(0)
        own = tracekit.get_last_trace_id()
        tracekit.shutdown()  # returns once the spool is delivered (within the timeout)
        emit(own=own, stats=tracekit.get_stats())
    """
    [b], _ = run_app(code, remote.env())
    assert b["stats"]["delivered_from_spool"] == 10
    assert not remote.spool_files()
    assert_once_each(remote.wait_for(a["ids"] + [b["own"]]), a["ids"] + [b["own"]])


def test_two_processes_and_an_upload_drain_one_spool_without_duplicates(
    remote: Remote, tmp_path: Path
) -> None:
    # 60 batches of one trace each, spooled for the proxy's destination.
    memory = InMemoryExporter()
    _state.reset()
    tracekit.configure(exporter=memory)
    ids, _ = traced_calls(60)
    assert tracekit.flush(10)
    _state.reset()
    config = _config.merge(
        _config.from_env(),
        {"experiment_name": remote.name, "spool_dir": str(remote.spool_dir)},
    )
    spooler = remote_exporters.build(remote.proxy.url, config)
    for record in memory.traces:
        assert spooler.spool.put([record])  # type: ignore[attr-defined]
    spooler.shutdown(0)
    assert len(remote.spool_files()) == 60

    code = """
        import os
        open(os.environ["READY"], "w").close()
        while not os.path.exists(os.environ["GO"]):
            time.sleep(0.002)
        answer(0)
        own = tracekit.get_last_trace_id()
        tracekit.shutdown()
        emit(own=own, stats=tracekit.get_stats())
    """
    go = tmp_path / "go"
    apps = []
    for n in range(2):
        # Time to drain the spool at exit: 60 batches, one request each to a one-worker
        # server, can outlast the default 5 s on a loaded machine, and an app whose
        # deadline passes mid-request leaves that claim for a later process, which sends
        # the batch again (not what this test is about; it made the test flaky).
        env = {**os.environ, "TRACEKIT_TESTING": "1", **remote.env(TRACEKIT_SHUTDOWN_TIMEOUT="60")}
        env.update(READY=str(tmp_path / f"ready{n}"), GO=str(go))
        apps.append(
            subprocess.Popen(
                [sys.executable, "-c", APP + textwrap.dedent(code)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    wait_until(lambda: all((tmp_path / f"ready{n}").exists() for n in range(2)), 30)
    go.touch()
    upload = subprocess.run(
        [sys.executable, "-m", "tracekit", "upload", "--spool", str(remote.spool_dir)],
        env={**os.environ, "TRACEKIT_TESTING": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    outs = []
    for app in apps:
        stdout, stderr = app.communicate(timeout=60)
        assert app.returncode == 0, stderr
        outs.append(json.loads(stdout))
    assert upload.returncode == 0, upload.stderr
    uploaded = sum(int(n) for n in re.findall(r"delivered (\d+) trace", upload.stdout))
    by_app = [out["stats"].get("delivered_from_spool", 0) for out in outs]
    # Each batch delivered once. The apps write their own trace to the spool before
    # sending it too, and the other app or the upload may be the one that delivers it.
    assert 60 <= sum(by_app) + uploaded <= 62, (by_app, uploaded)
    assert not remote.spool_files()
    own = [out["own"] for out in outs]
    assert remote.proxy.count("/v1/traces") == 62  # one request per batch: none sent twice
    traces = remote.wait_for(ids + own, spans=2)
    assert_once_each(traces, ids + own)
    assert len(traces) == 62


# -- tracekit upload -----------------------------------------------------------------------


def spool_while_down(remote: Remote, n: int = 6) -> list[str]:
    """Traces of this process kept in the spool while the proxy refuses."""
    remote.proxy.mode = "refuse"
    remote.connect()
    ids, _ = traced_calls(n // 2)
    assert tracekit.flush(30)
    more, _ = traced_calls(n - n // 2, start=n // 2)
    assert tracekit.flush(30)
    _state.reset()
    assert sorted(remote.spooled_ids()) == sorted(ids + more)
    return ids + more


def test_upload_fails_clearly_while_down_then_delivers(
    remote: Remote, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = spool_while_down(remote)
    files = remote.spool_files()
    capsys.readouterr()

    assert cli.main(["upload", "--spool", str(remote.spool_dir)]) == 1
    out, err = capsys.readouterr()
    assert f"cannot deliver to {remote.proxy.url} (" in err
    assert "connection refused" in err
    assert "run `tracekit upload` again when it answers" in err
    assert remote.spool_files() == files  # nothing lost, nothing left claimed

    remote.proxy.mode = "pass"
    assert cli.main(["upload", "--spool", str(remote.spool_dir)]) == 0
    out, err = capsys.readouterr()
    assert f"{remote.proxy.url}: delivered 6 trace(s) from " in out
    assert "0 batch(es) left" in out
    assert not remote.spool_files()
    assert_once_each(remote.wait_for(ids), ids)

    assert cli.main(["upload", "--spool", str(remote.spool_dir)]) == 0
    out, _ = capsys.readouterr()
    assert out.strip() == f"Nothing to upload: no spooled traces in {remote.spool_dir}."


def test_upload_to_another_uri_from_the_default_spool(
    remote: Remote,
    mlflow_server: MlflowServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ids = spool_while_down(remote)
    monkeypatch.setenv("TRACEKIT_SPOOL_DIR", str(remote.spool_dir))
    requests = remote.proxy.count()
    assert cli.main(["upload", "--to", mlflow_server.url]) == 0  # around the dead proxy
    out, _ = capsys.readouterr()
    assert f"{mlflow_server.url}: delivered 6 trace(s)" in out
    assert remote.proxy.count() == requests
    assert_once_each(remote.wait_for(ids), ids)  # into the experiment they were meant for


def test_upload_a_file_store(
    remote: Remote,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = tmp_path / "store"
    _state.reset()
    tracekit.configure(tracking_uri=str(store))
    ids, _ = traced_calls(3)
    assert tracekit.flush(10)
    _state.reset()
    monkeypatch.setenv("TRACEKIT_EXPERIMENT_NAME", remote.name)
    capsys.readouterr()

    remote.proxy.mode = "refuse"
    assert cli.main(["upload", "--store", str(store), "--to", remote.proxy.url]) == 1
    _, err = capsys.readouterr()
    assert f"cannot deliver to {remote.proxy.url} (" in err
    assert "stopped after 0 of 3" in err

    remote.proxy.mode = "pass"
    for _ in range(2):  # twice: still each trace once
        assert cli.main(["upload", "--store", str(store), "--to", remote.proxy.url]) == 0
        out, _ = capsys.readouterr()
        assert out.strip() == f"{remote.proxy.url}: delivered 3 of 3 trace(s) from {store}"
    traces = remote.wait_for(ids)
    assert_once_each(traces, ids)
    assert len(traces) == 3


def test_upload_usage_messages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["upload", "--store", str(tmp_path)]) == 2
    assert "--store needs --to URI" in capsys.readouterr().err

    assert cli.main(["upload", "--to", "ftp://example.com"]) == 2
    err = capsys.readouterr().err
    assert "--to 'ftp://example.com': expected http(s)://HOST" in err

    assert cli.main(["upload", "--spool", str(tmp_path / "none")]) == 0
    assert "Nothing to upload: no spooled traces in" in capsys.readouterr().out

    assert cli.main(["upload"]) == 0  # the default spool, ./.tracekit/spool: empty
    assert "no spooled traces in .tracekit/spool" in capsys.readouterr().out

    empty = tmp_path / "empty-store"
    empty.mkdir()
    assert cli.main(["upload", "--store", str(empty), "--to", "http://127.0.0.1:9"]) == 0
    assert f"Nothing to upload: no traces in {empty}." in capsys.readouterr().out


class _Picky(BaseHTTPRequestHandler):
    """A tracking server that refuses (HTTP 400) OTLP batches holding a trace id 1...1."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._answer(200, {"experiment": {"experiment_id": "1", "lifecycle_stage": "active"}})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        refused = self.path == "/v1/traces" and ("1" * 32).encode() in body
        if not refused and self.path == "/v1/traces":
            refused = bytes.fromhex("1" * 32) in body  # protobuf: the id as bytes
        if refused:
            self._answer(400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "bad span"})
        else:
            self._answer(200, {})


def test_upload_sets_a_refused_batch_aside_and_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Picky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        spool = Spool(tmp_path / "spool" / "picky", 1 << 20, {"uri": url, "experiment_id": "1"})
        for trace_id in ("2" * 32, "1" * 32, "3" * 32):
            spool.put(records(trace_id))
        assert cli.main(["upload", "--spool", str(tmp_path / "spool")]) == 1
    finally:
        server.shutdown()
        server.server_close()
    out, err = capsys.readouterr()
    assert f"{url} refused trace {'1' * 32} on its own (POST /v1/traces: HTTP 400 " in err
    assert (
        f"{spool.directory}: 1 trace(s) in 1 *.rejected file(s) were refused by the destination "
        "on their own (too large, or malformed) and are set aside; they are not delivered again"
    ) in err
    assert f"{url}: delivered 2 trace(s) from {spool.directory}; 0 batch(es) left" in out
    assert spool.pending() == []
    assert [p.name.endswith(".jsonl.rejected") for p in spool.directory.glob("*.jsonl*")] == [True]
