"""Fork safety by construction: nothing is imported on tracekit's threads, children of
every start method deliver, a fork during the first export neither hangs nor loses,
and a trace that cannot be serialized is counted.

Each scenario runs in its own interpreter writing to a store under `tmp_path`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from tests.test_fork_exit import PRELUDE, read_store, run, work_key

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

# Records every module imported on a thread other than the main thread, unless that
# thread holds the import guard that a fork waits for (the exporter's build on the worker).
IMPORT_WATCH = """
import sys, threading
_imported_off_main = []

class _Watch:
    def find_spec(self, name, path=None, target=None):
        if threading.current_thread() is not threading.main_thread():
            guard = sys.modules.get("tracekit._importguard")
            guarded = getattr(guard, "importing_here", lambda: False)()
            if not guarded:
                _imported_off_main.append((threading.current_thread().name, name))
        return None

sys.meta_path.insert(0, _Watch())
"""


# Waits for forked children: each must exit 0; those still running after `timeout`
# seconds are killed and counted (a hang).
REAP = """
import os, time

def reap(children, timeout=30):
    hung = 0
    deadline = time.monotonic() + timeout
    for pid in children:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                assert os.waitstatus_to_exitcode(status) == 0
                break
            if time.monotonic() > deadline:
                hung += 1
                os.kill(pid, 9)
                break
            time.sleep(0.01)
    return hung
"""


def run_script(
    script: str, tmp_path: Path, env: dict[str, str] | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "app.py"
    path.write_text(textwrap.dedent(script))
    proc = subprocess.run(
        [sys.executable, str(path)],
        env=dict(os.environ, TRACEKIT_TESTING="1", **(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "internal error" not in proc.stderr, proc.stderr
    return proc


@pytest.mark.parametrize(
    "uri",
    ["{store}", "otlp+http://127.0.0.1:9/v1/traces", "http://127.0.0.1:9"],
    ids=["file", "otlp", "tracking"],
)
def test_nothing_is_imported_on_tracekit_threads(tmp_path: Path, uri: str) -> None:
    """The worker, the spool thread and the exit path never import but under the fork
    guard (the exporter's build): a fork while they held an import lock would hang the
    child."""
    store = tmp_path / "store"
    proc = run_script(
        IMPORT_WATCH
        + PRELUDE
        + """
import atexit

@atexit.register  # registered before tracekit's exit hook: runs after it
def report():
    emit(imported=_imported_off_main)

tracekit.configure(export_interval=0.05, shutdown_timeout=2)
work("main", 1)
assert tracekit.flush(10)
work("main", 2)  # left for the exit path
""",
        tmp_path,
        env={
            "TRACEKIT_TRACKING_URI": uri.format(store=store),
            "TRACEKIT_SPOOL_DIR": str(tmp_path / "spool"),
            "TRACEKIT_EXPORT_TIMEOUT": "1",
        },
    )
    (line,) = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    assert line == {"imported": []}


@pytest.mark.parametrize("method", ["forkserver", "spawn", "fork"])
def test_multiprocessing_children_deliver_with_configure_at_module_level(
    tmp_path: Path, method: str
) -> None:
    """The documented set-up: configure() at module level, children that never flush.
    forkserver and spawn children import the main module again, which registers the
    exit finalizer before multiprocessing's start-up clears it."""
    store = tmp_path / "store"
    run_script(
        PRELUDE
        + f"""
import multiprocessing
tracekit.configure(tracking_uri={str(store)!r})

def child(n):
    work("child", n)  # no flush: the child's exit must deliver

if __name__ == "__main__":
    ctx = multiprocessing.get_context({method!r})
    procs = [ctx.Process(target=child, args=(n,)) for n in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0, p.exitcode
    work("parent", 9)
""",
        tmp_path,
    )
    keys = Counter(work_key(r) for r in read_store(store))
    assert keys == Counter([("child", 0), ("child", 1), ("child", 2), ("child", 3), ("parent", 9)])


def test_fork_during_the_first_export_neither_hangs_nor_loses(tmp_path: Path) -> None:
    """Children forked while the parent's worker builds its exporter and exports its
    first batch (gunicorn --preload, Celery): every child exits in time and delivers."""
    store = tmp_path / "store"
    out = run(
        REAP
        + textwrap.dedent(
            """
        tracekit.configure(export_interval=0.01)
        children = []
        work("parent", 0)                  # the worker starts and builds its exporter now
        for i in range(12):
            work("parent", 100 + i)
            pid = os.fork()
            if pid == 0:
                work("child", i)
                emit(who=i, flushed=tracekit.flush(10), stats=tracekit.get_stats())
                sys.exit(0)
            children.append(pid)
            time.sleep(0.001 * (i % 4))
        emit(who="parent", hung=reap(children))
        """
        ),
        store,
    )
    assert {"who": "parent", "hung": 0} in out
    children = [o for o in out if o["who"] != "parent"]
    assert sorted(o["who"] for o in children) == list(range(12))
    for child in children:
        assert child["flushed"] is True
        assert child["stats"] == {"traces_in_flight": 0, "traces_queued": 0}
    keys = Counter(work_key(r) for r in read_store(store))
    expected = Counter([("parent", 0)] + [("parent", 100 + i) for i in range(12)])
    expected.update(("child", i) for i in range(12))
    assert keys == expected


def test_a_trace_that_cannot_be_serialized_is_counted(tmp_path: Path) -> None:
    """An internal error while serializing drops that trace, counted in get_stats()."""
    store = tmp_path / "store"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            PRELUDE
            + textwrap.dedent(
                """
                class Odd(int):  # an int whose sum raises: trace usage cannot be added up
                    def __radd__(self, other):
                        raise RuntimeError("cannot add")

                with tracekit.start_span("bad") as span:
                    span.set_token_usage({"input_tokens": Odd(3)})
                work("good", 1)
                flushed = tracekit.flush(10)
                emit(flushed=flushed, stats=tracekit.get_stats())
                """
            ),
        ],
        # Not TRACEKIT_TESTING: the suite raises internal errors, a user's process does not.
        env=dict(os.environ, TRACEKIT_TRACKING_URI=str(store), TRACEKIT_TESTING="0"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out: list[dict[str, Any]] = [json.loads(x) for x in proc.stdout.splitlines()]
    assert out == [
        {
            "flushed": True,
            "stats": {"serialize_failed": 1, "traces_in_flight": 0, "traces_queued": 0},
        }
    ]
    assert "tracekit internal error at serialize" in proc.stderr
    assert [work_key(r) for r in read_store(store)] == [("good", 1)]


# Every import off the main thread takes 30 ms longer (it holds its module's import lock
# meanwhile): the window in which a fork would copy a held import lock is wide open.
SLOW_IMPORTS = """
import time

_off_main = []

class _Slow:
    def find_spec(self, name, path=None, target=None):
        if threading.current_thread() is not threading.main_thread():
            _off_main.append(name)
            time.sleep(0.03)
        return None

sys.meta_path.insert(0, _Slow())
"""


@pytest.mark.parametrize("uri", ["{store}", "{store},http://127.0.0.1:9"], ids=["file", "remote"])
def test_a_fork_while_the_worker_imports_waits_for_the_import(tmp_path: Path, uri: str) -> None:
    """The worker imports the exporters' modules before its first batch (slowed down
    here), not the traced call: children forked meanwhile wait for the import to finish,
    then neither hang nor see half-initialized modules, and deliver."""
    store = tmp_path / "store"
    code = """
        tracekit.configure(export_interval=0.01)
        work("parent", 0)                   # the worker imports its exporter's modules
        children = []
        for i in range(8):
            time.sleep(0.02)
            pid = os.fork()
            if pid == 0:
                work("child", i)
                emit(who=i, flushed=tracekit.flush(10))
                sys.exit(0)
            children.append(pid)
        emit(who="parent", hung=reap(children), flushed=tracekit.flush(10))
        emit(who="imported off main", names=_off_main)
    """
    proc = run_script(
        PRELUDE + SLOW_IMPORTS + REAP + textwrap.dedent(code),
        tmp_path,
        env={
            "TRACEKIT_TRACKING_URI": uri.format(store=store),
            "TRACEKIT_SPOOL_DIR": str(tmp_path / "spool"),
        },
    )
    out = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert {"who": "parent", "hung": 0, "flushed": True} in out
    (imported,) = [o["names"] for o in out if o["who"] == "imported off main"]
    assert {"tracekit.exporters.file", "tracekit._chat"} <= set(imported)  # not the caller's
    children = [o for o in out if isinstance(o["who"], int)]
    assert sorted(o["who"] for o in children) == list(range(8))
    assert all(o["flushed"] for o in children)
    keys = Counter(work_key(r) for r in read_store(store))
    assert keys == Counter([("parent", 0)] + [("child", i) for i in range(8)])
