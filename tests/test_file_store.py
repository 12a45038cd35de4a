"""The file store: JSON lines, safe across threads, processes, rotation and fork."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import tracekit
from tracekit import _state
from tracekit.exporters import SUCCESS
from tracekit.exporters.file import FileExporter
from tracekit.exporters.memory import InMemoryExporter


def read_store(directory: Path) -> list[dict[str, Any]]:
    """Every record in every *.jsonl file; each line must be complete, strict UTF-8 JSON."""
    records = []
    for path in sorted(directory.glob("*.jsonl")):
        data = path.read_bytes()
        assert data.endswith(b"\n") or not data, f"{path.name} ends with a partial line"
        for line in data.decode("utf-8").splitlines():
            records.append(json.loads(line))
    return records


def record(i: int, tag: str = "t", pad: int = 0) -> dict[str, Any]:
    return {"schema": "tracekit.trace/1", "trace_id": f"{tag}-{i}", "pad": "x" * pad}


@pytest.fixture
def reset_state():
    yield
    _state.reset()


@tracekit.trace
def work(i, payload=""):
    return i


def test_one_json_line_per_trace(tmp_path, reset_state):
    store = tmp_path / "store"
    memory = InMemoryExporter()
    tracekit.configure(tracking_uri=str(store), exporter=memory)
    for i in range(3):
        work(i, "ü ✓ \n newline")
    assert tracekit.flush(10)
    lines = (store / "traces.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3
    assert [json.loads(line) for line in lines] == memory.traces
    assert [json.loads(line)["spans"][0]["outputs"] for line in lines] == [0, 1, 2]


def test_file_uri_and_nested_directory(tmp_path, reset_state):
    store = tmp_path / "a" / "b" / "store"
    tracekit.configure(tracking_uri=f"file://{store}")
    work(1)
    assert tracekit.flush(10)
    assert [r["name"] for r in read_store(store)] == ["work"]


def test_exporter_appends_batches(tmp_path):
    exporter = FileExporter(tmp_path / "s")
    assert exporter.export([]) == SUCCESS
    assert exporter.export([record(1), record(2)]) == SUCCESS
    assert exporter.export([record(3)]) == SUCCESS
    exporter.shutdown()
    exporter2 = FileExporter(tmp_path / "s")  # a later process appends to the same store
    assert exporter2.export([record(4)]) == SUCCESS
    exporter2.shutdown()
    assert [r["trace_id"] for r in read_store(tmp_path / "s")] == ["t-1", "t-2", "t-3", "t-4"]
    assert [p.name for p in (tmp_path / "s").iterdir()] == ["traces.jsonl"]


def test_unwritable_store_fails_without_raising(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("file in the way")
    result = FileExporter(blocker).export([record(1)])
    assert not result.ok
    assert result.retryable


def test_lone_surrogates_still_give_valid_utf8(tmp_path, reset_state):
    store = tmp_path / "store"
    tracekit.configure(tracking_uri=str(store))
    work(1, "broken pair \ud83d and \udca9 end")
    assert tracekit.flush(10)
    (only,) = read_store(store)
    assert only["spans"][0]["inputs"]["payload"].endswith(" end")


def test_many_threads_at_once(tmp_path):
    exporter = FileExporter(tmp_path / "s")
    threads_n, per_thread = 8, 250
    barrier = threading.Barrier(threads_n)

    def write(tag: str) -> None:
        barrier.wait()
        for i in range(per_thread):
            assert exporter.export([record(i, tag, pad=2_000)]).ok

    threads = [threading.Thread(target=write, args=(f"th{n}",)) for n in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    exporter.shutdown()
    ids = [r["trace_id"] for r in read_store(tmp_path / "s")]
    assert len(ids) == threads_n * per_thread
    assert set(ids) == {f"th{n}-{i}" for n in range(threads_n) for i in range(per_thread)}


# -- several processes ---------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path

    mode, store, tag, count, max_bytes, sync = sys.argv[1:7]
    count, max_bytes, sync = int(count), int(max_bytes), Path(sync)

    (sync / f"ready-{tag}").touch()
    deadline = time.monotonic() + 30
    while not (sync / "go").exists():  # start together, for the most contention
        if time.monotonic() > deadline:
            sys.exit("no go")
        time.sleep(0.001)

    if mode == "pipeline":
        import tracekit

        tracekit.configure(tracking_uri=store, export_batch_spans=7, export_interval=0.01)

        @tracekit.trace
        def work(i, pad):
            return i

        for i in range(count):
            work(i, tag + "x" * 3000)
        assert tracekit.flush(30)
    else:
        from tracekit.exporters.file import FileExporter

        exporter = FileExporter(store, max_file_bytes=max_bytes)
        for i in range(count):
            result = exporter.export(
                [{"schema": "tracekit.trace/1", "trace_id": f"{tag}-{i}", "pad": "y" * 1000}]
            )
            assert result.ok, result
    print("ok")
    """
)


def run_writers(tmp_path: Path, mode: str, store: Path, n: int, count: int, max_bytes: int = 0):
    sync = tmp_path / "sync"
    sync.mkdir()
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEKIT_")}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(script),
                mode,
                str(store),
                f"p{k}",
                str(count),
                str(max_bytes),
                str(sync),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(n)
    ]
    try:
        deadline = time.monotonic() + 30
        while len(list(sync.glob("ready-*"))) < n and time.monotonic() < deadline:
            time.sleep(0.005)
        (sync / "go").touch()
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            assert out.strip() == "ok"
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


def test_several_processes_append_to_one_store(tmp_path):
    store = tmp_path / "store"
    run_writers(tmp_path, "pipeline", store, n=4, count=500)
    records = read_store(store)
    assert len(records) == 4 * 500
    seen = {(r["spans"][0]["inputs"]["pad"][:2], r["spans"][0]["inputs"]["i"]) for r in records}
    assert seen == {(f"p{k}", i) for k in range(4) for i in range(500)}
    assert len({r["trace_id"] for r in records}) == 2000


def test_rotation_across_processes_loses_nothing(tmp_path):
    store = tmp_path / "store"
    max_bytes = 20_000
    run_writers(tmp_path, "direct", store, n=4, count=500, max_bytes=max_bytes)
    files = sorted(store.glob("*.jsonl"))
    assert len(files) > 10  # rotated many times
    assert (store / "traces.jsonl") in files
    for path in files:
        # A writer that lost a rotation race may add its one batch over the limit (see
        # test_rotation_rechecks_the_size_of_the_new_file); never more than that.
        assert path.stat().st_size <= max_bytes + 4 * 1_100, path.name
    ids = [r["trace_id"] for r in read_store(store)]
    assert len(ids) == 4 * 500
    assert set(ids) == {f"p{k}-{i}" for k in range(4) for i in range(500)}


def test_rotation_in_one_process(tmp_path):
    exporter = FileExporter(tmp_path, max_file_bytes=5_000)
    for i in range(50):
        assert exporter.export([record(i, pad=400)]).ok
    exporter.shutdown()
    files = list(tmp_path.glob("*.jsonl"))
    assert len(files) >= 4
    assert all(p.stat().st_size <= 5_000 for p in files)
    assert sorted(r["trace_id"] for r in read_store(tmp_path)) == sorted(
        f"t-{i}" for i in range(50)
    )


def test_rotation_rechecks_the_size_of_the_new_file(tmp_path, monkeypatch):
    """Another process may fill the fresh file while the rotating writer waits for it."""
    max_bytes = 3_000
    rotating = FileExporter(tmp_path, max_file_bytes=max_bytes)
    assert rotating.export([record(0, "a", pad=1_200)]).ok
    assert rotating.export([record(1, "a", pad=1_200)]).ok
    real_rename = os.rename

    def rename_then_another_writer(src: Any, dst: Any) -> None:
        real_rename(src, dst)
        monkeypatch.setattr(os, "rename", real_rename)
        other = FileExporter(tmp_path, max_file_bytes=max_bytes)  # stands for another process
        for i in range(2):
            assert other.export([record(i, "b", pad=1_200)]).ok
        other.shutdown()

    monkeypatch.setattr(os, "rename", rename_then_another_writer)
    assert rotating.export([record(2, "a", pad=1_200)]).ok
    rotating.shutdown()
    assert sorted(r["trace_id"] for r in read_store(tmp_path)) == [
        "a-0",
        "a-1",
        "a-2",
        "b-0",
        "b-1",
    ]
    for path in tmp_path.glob("*.jsonl"):
        assert path.stat().st_size <= max_bytes, path.name


# -- fork -------------------------------------------------------------------------------------


def _fork(child: Any) -> int:
    """Run `child()` in a forked process; returns its exit code (0: it returned True)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            code = 0 if child() else 2
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_file_exporter_after_fork(tmp_path):
    exporter = FileExporter(tmp_path)
    assert exporter.export([record(1, "parent")]).ok  # the parent has the file open

    assert _fork(lambda: exporter.export([record(1, "child")]).ok) == 0
    assert exporter.export([record(2, "parent")]).ok
    exporter.shutdown()
    assert [r["trace_id"] for r in read_store(tmp_path)] == ["parent-1", "child-1", "parent-2"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_file_exporter_after_fork_during_an_export(tmp_path):
    """A fork while the parent's export worker is mid-write must not wedge the child."""
    exporter = FileExporter(tmp_path)
    assert exporter.export([record(1, "parent")]).ok
    held, release = threading.Event(), threading.Event()

    def busy_writer() -> None:  # stands for the export worker inside export()
        with exporter._lock:
            held.set()
            release.wait(10)

    writer = threading.Thread(target=busy_writer)
    writer.start()
    assert held.wait(5)

    def child() -> bool:
        results: list[bool] = []
        thread = threading.Thread(
            target=lambda: results.append(exporter.export([record(1, "child")]).ok), daemon=True
        )
        thread.start()
        thread.join(3)
        return results == [True]

    try:
        code = _fork(child)
    finally:
        release.set()
        writer.join(5)
    assert code == 0, "the child could not export: the lock was inherited held"
    assert exporter.export([record(2, "parent")]).ok
    exporter.shutdown()
    assert sorted(r["trace_id"] for r in read_store(tmp_path)) == [
        "child-1",
        "parent-1",
        "parent-2",
    ]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_tracing_to_the_store_after_fork(tmp_path, reset_state):
    store = tmp_path / "store"
    tracekit.configure(tracking_uri=str(store))
    work(1)
    assert tracekit.flush(10)  # the parent's worker thread is running

    def child() -> bool:
        assert work(2) == 2
        return tracekit.flush(10)

    assert _fork(child) == 0
    work(3)
    assert tracekit.flush(10)
    assert sorted(r["spans"][0]["inputs"]["i"] for r in read_store(store)) == [1, 2, 3]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_configured_exporter_object_after_fork(tmp_path, reset_state):
    store = tmp_path / "store"
    tracekit.configure(exporter=FileExporter(store))
    work(1)
    assert tracekit.flush(10)

    def child() -> bool:
        work(2)
        return tracekit.flush(10)

    assert _fork(child) == 0
    work(3)
    assert tracekit.flush(10)
    assert sorted(r["spans"][0]["inputs"]["i"] for r in read_store(store)) == [1, 2, 3]
