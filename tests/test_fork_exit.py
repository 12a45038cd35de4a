"""Fork and process exit: traces survive both, nothing is duplicated, ids never collide.

Every scenario runs in its own interpreter (`sys.executable -c ...`) that writes to
a file store under `tmp_path`; the test reads the JSON lines back. Forks happen
inside those interpreters, never in the pytest process.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from tests import trace_checks
from tests.child import run_python
from tests.trace_checks import assert_complete

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

# A fragment exported by a child process: its root has a parent from the parent process.
tree = partial(trace_checks.tree, fragment=True)

# Shared by every script: a traced function with a nested span.
PRELUDE = """
import json, os, random, sys, threading
import tracekit

@tracekit.trace
def work(who, n):
    with tracekit.start_span("work.inner", inputs={"who": who, "n": n}):
        return n

def emit(**values):
    sys.stdout.write(json.dumps(values) + "\\n")
    sys.stdout.flush()
"""


def run(
    code: str, store: Path, *, returncode: int = 0, env: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Run `PRELUDE + code` in a fresh interpreter; return the JSON lines it printed."""
    full_env = dict(
        os.environ,
        TRACEKIT_TESTING="1",
        TRACEKIT_TRACKING_URI=str(store),
        # Delivery must come from flush/exit, never from the periodic export.
        TRACEKIT_EXPORT_INTERVAL="3600",
        **(env or {}),
    )
    proc = run_python(PRELUDE + textwrap.dedent(code), env=full_env, returncode=returncode)
    assert "internal error" not in proc.stderr, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def read_store(store: Path) -> list[dict[str, Any]]:
    records = []
    for path in sorted(store.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                records.append(json.loads(line))
    return records


WORK = ("work", [("work.inner", [])])


def work_key(record: dict[str, Any]) -> tuple[str, int]:
    """`(who, n)` of a trace whose root is `work`."""
    assert tree(record) == WORK
    root = next(s for s in record["spans"] if s["name"] == "work")
    inner = next(s for s in record["spans"] if s["name"] == "work.inner")
    assert inner["parent_id"] == root["span_id"]
    assert root["inputs"] == {"who": inner["inputs"]["who"], "n": inner["inputs"]["n"]}
    return (root["inputs"]["who"], root["inputs"]["n"])


def all_ids(records: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    return (
        [r["trace_id"] for r in records],
        [s["span_id"] for r in records for s in r["spans"]],
    )


# ---------------------------------------------------------------------------
# fork


def test_os_fork_child_exports_with_a_fresh_worker_and_parent_is_unaffected(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    out = run(
        """
        work("parent", 0)
        assert tracekit.flush(10)          # the parent's worker is running at the fork
        work("parent", 1)                  # finished, still queued in the parent at the fork
        pid = os.fork()
        if pid == 0:
            work("child", 10)
            work("child", 11)
            flushed = tracekit.flush(10)   # would hang on an inherited, dead worker
            threads = sorted(t.name for t in threading.enumerate())
            emit(who="child", flushed=flushed, threads=threads)
            work("child", 12)              # left for the exit path to deliver
            sys.exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        work("parent", 2)
        emit(who="parent", flushed=tracekit.flush(10))
        """,
        store,
    )
    assert {"who": "parent", "flushed": True} in out
    (child,) = [o for o in out if o["who"] == "child"]
    assert child["flushed"] is True
    assert "tracekit-export" in child["threads"]

    records = read_store(store)
    keys = Counter(work_key(r) for r in records)
    assert keys == Counter(
        {
            ("parent", 0): 1,
            ("parent", 1): 1,
            ("parent", 2): 1,
            ("child", 10): 1,
            ("child", 11): 1,
            ("child", 12): 1,
        }
    )
    for record in records:
        assert_complete(record)
    trace_ids, span_ids = all_ids(records)
    assert len(set(trace_ids)) == len(trace_ids) == 6
    assert len(set(span_ids)) == len(span_ids) == 12


def test_os_fork_child_spans_under_an_inherited_span_are_delivered(tmp_path: Path) -> None:
    store = tmp_path / "store"
    out = run(
        """
        with tracekit.start_span("around_fork") as outer:
            emit(trace_id=outer.trace_id, span_id=outer.span_id)
            pid = os.fork()
            if pid == 0:
                assert tracekit.get_current_span() is outer
                work("child", 1)
                assert tracekit.flush(10)
                os._exit(0)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            work("parent", 2)
        """,
        store,
    )
    (outer,) = out
    records = read_store(store)
    # The parent's trace: its own spans only, exactly once, complete.
    parents = [r for r in records if any(s["name"] == "around_fork" for s in r["spans"])]
    assert len(parents) == 1
    (parent,) = parents
    assert parent["trace_id"] == outer["trace_id"]
    assert tree(parent) == ("around_fork", [WORK])
    assert [s["inputs"] for s in parent["spans"] if s["name"] == "work"] == [
        {"who": "parent", "n": 2}
    ]
    assert_complete(parent)
    # The child's spans: a fragment of the same trace, under the inherited span.
    fragments = [r for r in records if r is not parent]
    assert len(fragments) == 1, f"child spans lost or duplicated: {len(fragments)} fragments"
    (fragment,) = fragments
    assert fragment["trace_id"] == outer["trace_id"]
    assert work_key(fragment) == ("child", 1)
    child_root = next(s for s in fragment["spans"] if s["name"] == "work")
    assert child_root["parent_id"] == outer["span_id"]
    assert_complete(fragment)


def test_os_fork_child_does_not_export_the_parents_open_trace(tmp_path: Path) -> None:
    store = tmp_path / "store"
    run(
        """
        with tracekit.start_span("open_at_fork"):
            work("parent", 1)
            pid = os.fork()
            if pid == 0:
                # Leave through the normal exit path (atexit) with the inherited
                # span still open here: the child must not end or export it.
                sys.exit(0)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
        """,
        store,
    )
    records = read_store(store)
    assert len(records) == 1, [tree(r) for r in records]
    (record,) = records
    assert tree(record) == ("open_at_fork", [WORK])
    assert record["status"] == "OK"
    assert_complete(record)


def test_fork_ids_differ_between_parent_and_child_after_random_seed(tmp_path: Path) -> None:
    store = tmp_path / "store"
    run(
        """
        work("parent", 0)
        pid = os.fork()
        random.seed(0)
        who = "child" if pid == 0 else "parent"
        for n in range(1, 4):
            work(who, n)
        if pid == 0:
            assert tracekit.flush(10)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        """,
        store,
    )
    records = read_store(store)
    keys = sorted(work_key(r) for r in records)
    assert keys == sorted([("parent", n) for n in range(4)] + [("child", n) for n in range(1, 4)])
    trace_ids, span_ids = all_ids(records)
    assert len(set(trace_ids)) == len(trace_ids) == 7
    assert len(set(span_ids)) == len(span_ids) == 14


def test_multiprocessing_fork_children_deliver_without_flush(tmp_path: Path) -> None:
    store = tmp_path / "store"
    run(
        """
        import multiprocessing

        def child(n):
            random.seed(0)
            work("child", n)   # no flush: the Process exit path must deliver

        ctx = multiprocessing.get_context("fork")
        work("parent", 0)
        assert tracekit.flush(10)
        procs = [ctx.Process(target=child, args=(n,)) for n in (1, 2, 3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
            assert p.exitcode == 0, p.exitcode
        random.seed(0)
        work("parent", 4)
        """,
        store,
    )
    records = read_store(store)
    assert Counter(work_key(r) for r in records) == Counter(
        [("parent", 0), ("child", 1), ("child", 2), ("child", 3), ("parent", 4)]
    )
    for record in records:
        assert_complete(record)
    trace_ids, span_ids = all_ids(records)
    assert len(set(trace_ids)) == len(trace_ids) == 5
    assert len(set(span_ids)) == len(span_ids) == 10


def test_multiprocessing_fork_pool_workers_deliver(tmp_path: Path) -> None:
    store = tmp_path / "store"
    run(
        """
        import multiprocessing

        def job(n):
            return work("pool", n)

        ctx = multiprocessing.get_context("fork")
        pool = ctx.Pool(2)
        assert pool.map(job, range(6)) == list(range(6))
        pool.close()
        pool.join()
        """,
        store,
    )
    records = read_store(store)
    assert sorted(work_key(r) for r in records) == [("pool", n) for n in range(6)]
    for record in records:
        assert_complete(record)


def test_multiprocessing_fork_child_spans_under_an_inherited_span(tmp_path: Path) -> None:
    store = tmp_path / "store"
    out = run(
        """
        import multiprocessing

        def child(n):
            work("child", n)

        ctx = multiprocessing.get_context("fork")
        with tracekit.start_span("dispatch") as outer:
            emit(trace_id=outer.trace_id, span_id=outer.span_id)
            p = ctx.Process(target=child, args=(7,))
            p.start()
            p.join(30)
            assert p.exitcode == 0, p.exitcode
        """,
        store,
    )
    (outer,) = out
    records = read_store(store)
    parents = [r for r in records if any(s["name"] == "dispatch" for s in r["spans"])]
    assert len(parents) == 1
    assert tree(parents[0]) == ("dispatch", [])
    assert_complete(parents[0])
    fragments = [r for r in records if r is not parents[0]]
    assert len(fragments) == 1, f"child spans lost or duplicated: {len(fragments)} fragments"
    (fragment,) = fragments
    assert fragment["trace_id"] == outer["trace_id"]
    assert work_key(fragment) == ("child", 7)
    child_root = next(s for s in fragment["spans"] if s["name"] == "work")
    assert child_root["parent_id"] == outer["span_id"]


# ---------------------------------------------------------------------------
# process exit


def test_exit_without_flush_delivers(tmp_path: Path) -> None:
    store = tmp_path / "store"
    run(
        """
        @tracekit.trace
        def pipeline(q):
            return [work("main", n) for n in range(2)]

        for q in range(3):
            pipeline(q)
        # No flush, no shutdown: the interpreter just ends.
        """,
        store,
    )
    records = read_store(store)
    assert len(records) == 3
    assert sorted(r["spans"][0]["inputs"]["q"] for r in records) == [0, 1, 2]
    for record in records:
        assert tree(record) == ("pipeline", [WORK, WORK])
        assert_complete(record)
    trace_ids, _ = all_ids(records)
    assert len(set(trace_ids)) == 3


def test_sys_exit_inside_a_traced_function_delivers(tmp_path: Path) -> None:
    store = tmp_path / "store"
    run(
        """
        @tracekit.trace
        def main():
            work("main", 1)
            with tracekit.start_span("shutting_down"):
                sys.exit(3)

        main()
        """,
        store,
        returncode=3,
    )
    (record,) = read_store(store)
    assert tree(record) == ("main", [("shutting_down", []), WORK])
    for span in record["spans"]:
        assert span["end_time_ns"] is not None
        assert "tracekit.force_ended" not in span["attributes"]
    assert "tracekit.incomplete" not in record["metadata"]


def test_exit_with_a_daemon_thread_stuck_in_a_span_delivers(tmp_path: Path) -> None:
    store = tmp_path / "store"
    run(
        """
        entered = threading.Event()
        forever = threading.Event()

        def stuck_root():
            with tracekit.start_span("stuck_root"):
                work("daemon", 1)
                entered.set()
                forever.wait()

        @tracekit.trace
        def stuck_child():
            entered.set()
            forever.wait()

        threading.Thread(target=stuck_root, daemon=True).start()
        assert entered.wait(10)
        entered.clear()
        with tracekit.start_span("request"):
            # Its child runs on in a daemon thread after the root ended.
            import contextvars
            ctx = contextvars.copy_context()
            threading.Thread(target=ctx.run, args=(stuck_child,), daemon=True).start()
            assert entered.wait(10)
        work("main", 2)
        """,
        store,
        env={"TRACEKIT_SHUTDOWN_TIMEOUT": "5"},
    )
    records = read_store(store)
    by_root = {tree(r)[0]: r for r in records}
    assert sorted(by_root) == ["request", "stuck_root", "work"]
    assert len(records) == 3

    stuck = by_root["stuck_root"]
    assert tree(stuck) == ("stuck_root", [WORK])
    root = next(s for s in stuck["spans"] if s["name"] == "stuck_root")
    assert root["end_time_ns"] is not None
    assert "tracekit.force_ended" in root["attributes"]
    assert "tracekit.incomplete" in stuck["metadata"]
    for span in stuck["spans"]:
        if span["name"] != "stuck_root":
            assert "tracekit.force_ended" not in span["attributes"]

    request = by_root["request"]
    assert tree(request) == ("request", [("stuck_child", [])])
    child = next(s for s in request["spans"] if s["name"] == "stuck_child")
    assert child["end_time_ns"] is not None
    assert "tracekit.force_ended" in child["attributes"]
    assert "tracekit.incomplete" in request["metadata"]
    req = next(s for s in request["spans"] if s["name"] == "request")
    assert "tracekit.force_ended" not in req["attributes"]

    assert work_key(by_root["work"]) == ("main", 2)
    assert_complete(by_root["work"])


def test_exit_when_no_trace_ever_finished_delivers_the_open_one(tmp_path: Path) -> None:
    # The only trace of this process is still open at exit (a daemon thread is
    # stuck in it): the exit path must still run and deliver it.
    store = tmp_path / "store"
    run(
        """
        entered = threading.Event()

        def stuck():
            with tracekit.start_span("stuck_root"):
                work("daemon", 1)
                entered.set()
                threading.Event().wait()

        threading.Thread(target=stuck, daemon=True).start()
        assert entered.wait(10)
        """,
        store,
    )
    records = read_store(store)
    assert len(records) == 1, "the open trace was not delivered at exit"
    (record,) = records
    assert tree(record) == ("stuck_root", [WORK])
    assert "tracekit.incomplete" in record["metadata"]
    for span in record["spans"]:
        assert span["end_time_ns"] is not None
        forced = "tracekit.force_ended" in span["attributes"]
        assert forced == (span["name"] == "stuck_root"), span


def test_exit_with_open_spans_in_the_main_thread_delivers(tmp_path: Path) -> None:
    store = tmp_path / "store"
    run(
        """
        @tracekit.trace
        def numbers():
            yield 1
            yield 2

        work("main", 0)                  # one complete trace as well
        GEN = numbers()
        assert next(GEN) == 1            # suspended generator: its span is open
        OPEN = tracekit.start_span("never_closed")
        OPEN.__enter__()
        work("main", 1)                  # nests under the open span
        """,
        store,
    )
    records = read_store(store)
    by_root = {tree(r)[0]: r for r in records}
    assert len(records) == 3
    assert work_key(by_root.pop("work")) == ("main", 0)
    records = list(by_root.values())
    assert tree(by_root["numbers"]) == ("numbers", [])
    assert tree(by_root["never_closed"]) == ("never_closed", [WORK])
    for record in records:
        assert "tracekit.incomplete" in record["metadata"]
        for span in record["spans"]:
            assert span["end_time_ns"] is not None
            forced = "tracekit.force_ended" in span["attributes"]
            assert forced == (span["name"] in ("numbers", "never_closed")), span


def test_os_exit_after_flush_delivers(tmp_path: Path) -> None:
    store = tmp_path / "store"
    out = run(
        """
        for n in range(3):
            work("main", n)
        emit(flushed=tracekit.flush(10))
        os._exit(0)
        """,
        store,
    )
    assert out == [{"flushed": True}]
    records = read_store(store)
    assert sorted(work_key(r) for r in records) == [("main", 0), ("main", 1), ("main", 2)]
    for record in records:
        assert_complete(record)


def test_random_seed_in_two_processes_does_not_make_ids_collide(tmp_path: Path) -> None:
    store = tmp_path / "store"
    code = """
        random.seed(0)
        for n in range(5):
            work(sys.argv[0], n)
    """
    for _ in range(2):
        run(code, store)
    records = read_store(store)
    assert len(records) == 10
    trace_ids, span_ids = all_ids(records)
    assert len(set(trace_ids)) == 10
    assert len(set(span_ids)) == 20
    for trace_id in trace_ids:
        assert len(trace_id) == 32
        assert trace_id == trace_id.lower()
        int(trace_id, 16)
