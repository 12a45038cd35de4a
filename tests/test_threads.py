"""Context propagation into thread pools, and many traces at once.

By default the submitting context follows work into `ThreadPoolExecutor.submit`
and `.map`, `asyncio.to_thread` and `loop.run_in_executor`, so spans created in
the worker thread nest under the span that submitted the work.
`propagate_context_to_threads=False` turns that off for the executor paths.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from tests import trace_checks
from tests.trace_checks import tree

import tracekit
from tracekit.testing import Capture, capture

assert_complete = partial(trace_checks.assert_complete, ok=True)


def parent_of(record: dict[str, Any], span: dict[str, Any]) -> dict[str, Any]:
    (parent,) = [s for s in record["spans"] if s["span_id"] == span["parent_id"]]
    return parent


@tracekit.trace
def work(n: int) -> int:
    """Traced work that runs in a pool thread and opens a nested span there."""
    with tracekit.start_span("work.inner", inputs={"n": n}):
        return n * n


def expected_root_with_work(root: str, count: int) -> tuple[Any, ...]:
    return (root, [("work", [("work.inner", [])])] * count)


def assert_work_spans_match(record: dict[str, Any]) -> None:
    """Each `work.inner` span carries the same `n` as the `work` span it nests under."""
    for span in record["spans"]:
        if span["name"] == "work.inner":
            assert parent_of(record, span)["inputs"] == span["inputs"]


def assert_separate_work_traces(records: list[dict[str, Any]], ns: list[int]) -> None:
    assert sorted(r["spans"][0]["inputs"]["n"] for r in records) == sorted(ns)
    for record in records:
        assert tree(record) == ("work", [("work.inner", [])])
        assert_work_spans_match(record)
        assert_complete(record)


# ---------------------------------------------------------------------------
# ThreadPoolExecutor


def test_submit_nests_under_the_submitting_span(captured: Capture) -> None:
    seen: list[tuple[str, str, str]] = []

    def look() -> None:
        span = tracekit.get_current_span()
        assert span is not None
        seen.append((threading.current_thread().name, span.name, span.span_id))

    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="pool")
    with pool, tracekit.start_span("root") as root:
        futures = [pool.submit(work, n) for n in range(4)]
        assert [f.result(timeout=10) for f in futures] == [0, 1, 4, 9]
        pool.submit(look).result(timeout=10)

    assert seen[0][0].startswith("pool")
    assert seen[0][1:] == ("root", root.span_id)
    record = captured.single()
    assert tree(record) == expected_root_with_work("root", 4)
    assert sorted(s["inputs"]["n"] for s in record["spans"] if s["name"] == "work") == [0, 1, 2, 3]
    assert_work_spans_match(record)
    assert_complete(record)


def test_submit_with_arguments_and_keywords(captured: Capture) -> None:
    @tracekit.trace
    def add(a: int, b: int = 0, *, c: int = 0) -> int:
        return a + b + c

    with ThreadPoolExecutor(max_workers=2) as pool, tracekit.start_span("root"):
        assert pool.submit(add, 1, 2, c=3).result(timeout=10) == 6

    record = captured.single()
    assert tree(record) == ("root", [("add", [])])
    add_span = next(s for s in record["spans"] if s["name"] == "add")
    assert add_span["inputs"] == {"a": 1, "b": 2, "c": 3}
    assert add_span["outputs"] == 6


def test_map_nests_under_the_submitting_span(captured: Capture) -> None:
    @tracekit.trace
    def root() -> list[int]:
        with ThreadPoolExecutor(max_workers=3) as pool:
            return list(pool.map(work, range(5)))

    assert root() == [0, 1, 4, 9, 16]
    record = captured.single()
    assert tree(record) == expected_root_with_work("root", 5)
    assert_work_spans_match(record)
    assert_complete(record)


def test_nested_pools_keep_the_whole_chain(captured: Capture) -> None:
    with ThreadPoolExecutor(max_workers=2) as outer, ThreadPoolExecutor(max_workers=2) as inner:

        @tracekit.trace
        def fan(k: int) -> list[int]:
            return list(inner.map(work, [k, k + 10]))

        with tracekit.start_span("root"):
            assert list(outer.map(fan, [1, 2])) == [[1, 121], [4, 144]]

    record = captured.single()
    assert tree(record) == ("root", [("fan", [("work", [("work.inner", [])])] * 2)] * 2)
    for span in record["spans"]:
        if span["name"] == "work":
            k = parent_of(record, span)["inputs"]["k"]
            assert span["inputs"]["n"] in (k, k + 10)
    assert_work_spans_match(record)
    assert_complete(record)


def test_pool_threads_do_not_keep_a_previous_context(captured: Capture) -> None:
    def current() -> str | None:
        span = tracekit.get_current_span()
        return None if span is None else span.name

    with ThreadPoolExecutor(max_workers=1) as pool:
        with tracekit.start_span("a"):
            assert pool.submit(current).result(timeout=10) == "a"
        with tracekit.start_span("b"):
            assert pool.submit(current).result(timeout=10) == "b"
        # Submitted outside any span: the same worker thread sees none.
        assert pool.submit(current).result(timeout=10) is None
        assert pool.submit(work, 3).result(timeout=10) == 9

    a, b, standalone = captured.traces
    assert tree(a) == ("a", [])
    assert tree(b) == ("b", [])
    assert tree(standalone) == ("work", [("work.inner", [])])


def test_child_in_pool_thread_outliving_the_root_completes_the_trace(captured: Capture) -> None:
    release = threading.Event()

    @tracekit.trace
    def slow() -> str:
        assert release.wait(10)
        return "late"

    with ThreadPoolExecutor(max_workers=1) as pool:
        with tracekit.start_span("request"):
            future = pool.submit(slow)
        assert tracekit.get_current_span() is None
        assert captured.traces == []  # the root ended, its child did not yet
        release.set()
        assert future.result(timeout=10) == "late"

    record = captured.single()
    assert tree(record) == ("request", [("slow", [])])
    spans = {s["name"]: s for s in record["spans"]}
    assert spans["slow"]["end_time_ns"] > spans["request"]["end_time_ns"]
    assert_complete(record)


# ---------------------------------------------------------------------------
# asyncio: to_thread and run_in_executor


def test_asyncio_to_thread_nests(captured: Capture) -> None:
    @tracekit.trace
    async def handler() -> list[int]:
        return list(await asyncio.gather(*(asyncio.to_thread(work, n) for n in range(3))))

    assert asyncio.run(handler()) == [0, 1, 4]
    record = captured.single()
    assert tree(record) == expected_root_with_work("handler", 3)
    assert_work_spans_match(record)
    assert_complete(record)


def test_run_in_executor_default_executor_nests(captured: Capture) -> None:
    @tracekit.trace
    async def handler() -> list[int]:
        loop = asyncio.get_running_loop()
        return list(await asyncio.gather(*(loop.run_in_executor(None, work, n) for n in range(3))))

    assert asyncio.run(handler()) == [0, 1, 4]
    record = captured.single()
    assert tree(record) == expected_root_with_work("handler", 3)
    assert_work_spans_match(record)
    assert_complete(record)


def test_run_in_executor_explicit_executor_nests(captured: Capture) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:

        @tracekit.trace
        async def handler() -> list[int]:
            loop = asyncio.get_running_loop()
            return list(
                await asyncio.gather(*(loop.run_in_executor(pool, work, n) for n in range(3)))
            )

        assert asyncio.run(handler()) == [0, 1, 4]

    record = captured.single()
    assert tree(record) == expected_root_with_work("handler", 3)
    assert_work_spans_match(record)
    assert_complete(record)


# ---------------------------------------------------------------------------
# propagate_context_to_threads=False


def _run_every_executor_path(pool: ThreadPoolExecutor) -> None:
    """Under a `root` span: submit, map, run_in_executor (default and explicit pool)."""
    with tracekit.start_span("root"):
        assert pool.submit(work, 1).result(timeout=10) == 1
        assert list(pool.map(work, [2, 3])) == [4, 9]

    @tracekit.trace
    async def aroot() -> list[int]:
        loop = asyncio.get_running_loop()
        return [
            await loop.run_in_executor(None, work, 4),
            await loop.run_in_executor(pool, work, 5),
        ]

    assert asyncio.run(aroot()) == [16, 25]


def _assert_not_propagated(records: list[dict[str, Any]]) -> None:
    roots = [r for r in records if r["name"] in ("root", "aroot")]
    works = [r for r in records if r["name"] == "work"]
    assert len(records) == 7
    assert sorted(r["name"] for r in roots) == ["aroot", "root"]
    for record in roots:
        assert tree(record) == (record["name"], [])
    assert_separate_work_traces(works, [1, 2, 3, 4, 5])
    assert len({r["trace_id"] for r in records}) == 7


def _assert_propagated(records: list[dict[str, Any]]) -> None:
    assert len(records) == 2
    aroot, root = sorted(records, key=lambda r: r["name"])
    assert tree(root) == expected_root_with_work("root", 3)
    assert tree(aroot) == expected_root_with_work("aroot", 2)
    for record in records:
        assert_work_spans_match(record)
        assert_complete(record)


def test_propagation_is_on_by_default_for_every_executor_path(captured: Capture) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        _run_every_executor_path(pool)
    _assert_propagated(captured.traces)


def test_configure_propagate_context_to_threads_false(captured: Capture) -> None:
    tracekit.configure(propagate_context_to_threads=False)
    with ThreadPoolExecutor(max_workers=2) as pool:
        _run_every_executor_path(pool)
    _assert_not_propagated(captured.traces)

    # And back on.
    captured.clear()
    tracekit.configure(propagate_context_to_threads=True)
    with ThreadPoolExecutor(max_workers=2) as pool:
        _run_every_executor_path(pool)
    _assert_propagated(captured.traces)


def test_capture_propagate_context_to_threads_false() -> None:
    with capture(propagate_context_to_threads=False) as captured:
        with ThreadPoolExecutor(max_workers=2) as pool:
            _run_every_executor_path(pool)
        _assert_not_propagated(captured.traces)
    # The next capture starts from the defaults again.
    with capture() as captured:
        with ThreadPoolExecutor(max_workers=2) as pool:
            _run_every_executor_path(pool)
        _assert_propagated(captured.traces)


def test_propagation_off_thread_sees_no_current_span(captured: Capture) -> None:
    tracekit.configure(propagate_context_to_threads=False)
    with ThreadPoolExecutor(max_workers=1) as pool, tracekit.start_span("root"):
        assert pool.submit(tracekit.get_current_span).result(timeout=10) is None
    assert tree(captured.single()) == ("root", [])


# ---------------------------------------------------------------------------
# many traces at once


@tracekit.trace(name="blocking")
def _blocking(task: int, part: str) -> str:
    with tracekit.start_span("blocking.inner", inputs={"task": task}):
        return f"{part}:{task}"


@tracekit.trace(name="step")
async def _step(task: int) -> int:
    await asyncio.sleep(0)
    with tracekit.start_span("step.inner", inputs={"task": task}):
        await asyncio.sleep(0)
    return task


@tracekit.trace(name="handle")
async def _handle(task: int) -> list[Any]:
    await asyncio.sleep(0)
    first = await _step(task)
    second = await asyncio.to_thread(_blocking, task, "to_thread")
    loop = asyncio.get_running_loop()
    third = await loop.run_in_executor(None, _blocking, task, "executor")
    await asyncio.sleep(0)
    return [first, second, third]


def test_thousand_concurrent_asyncio_tasks(captured_realtime: Capture) -> None:
    tasks = 1_000

    async def main() -> list[list[Any]]:
        assert tracekit.get_current_span() is None
        return list(await asyncio.gather(*(asyncio.create_task(_handle(i)) for i in range(tasks))))

    results = asyncio.run(main())
    assert results == [[i, f"to_thread:{i}", f"executor:{i}"] for i in range(tasks)]

    records = captured_realtime.traces
    assert len(records) == tasks
    assert len({r["trace_id"] for r in records}) == tasks
    all_span_ids = [s["span_id"] for r in records for s in r["spans"]]
    assert len(all_span_ids) == len(set(all_span_ids)) == tasks * 7
    expected = (
        "handle",
        sorted(
            [
                ("step", [("step.inner", [])]),
                ("blocking", [("blocking.inner", [])]),
                ("blocking", [("blocking.inner", [])]),
            ],
            key=repr,
        ),
    )
    seen_tasks = []
    for record in records:
        assert tree(record) == expected
        assert_complete(record)
        root = record["spans"][0]
        assert root["name"] == "handle"
        task = root["inputs"]["task"]
        seen_tasks.append(task)
        assert record["name"] == "handle"
        # No cross-talk: every span of this trace carries this task's own inputs.
        for span in record["spans"]:
            assert span["inputs"]["task"] == task, (record["trace_id"], span)
        parts = sorted(s["inputs"]["part"] for s in record["spans"] if s["name"] == "blocking")
        assert parts == ["executor", "to_thread"]
        assert root["outputs"] == [task, f"to_thread:{task}", f"executor:{task}"]
    assert sorted(seen_tasks) == list(range(tasks))
    assert tracekit.get_stats()["traces_in_flight"] == 0


def test_thread_pool_fan_out(captured_realtime: Capture) -> None:
    roots, fan = 200, 4
    barrier = threading.Barrier(4, timeout=10)

    @tracekit.trace(name="leaf")
    def leaf(request: int, part: int) -> tuple[int, int]:
        with tracekit.start_span("leaf.inner", inputs={"request": request, "part": part}):
            return (request, part)

    with ThreadPoolExecutor(max_workers=8) as inner:

        @tracekit.trace(name="request")
        def request(request: int) -> list[tuple[int, int]]:
            if request < 4:
                barrier.wait()  # the first roots really are open at the same time
            futures = [inner.submit(leaf, request, part) for part in range(fan)]
            return [f.result(timeout=10) for f in futures]

        # Roots start in an outer pool, outside any span: each is its own trace.
        with ThreadPoolExecutor(max_workers=8) as outer:
            results = list(outer.map(request, range(roots)))

    assert results == [[(r, p) for p in range(fan)] for r in range(roots)]
    records = captured_realtime.traces
    assert len(records) == roots
    assert len({r["trace_id"] for r in records}) == roots
    seen = []
    for record in records:
        assert tree(record) == ("request", [("leaf", [("leaf.inner", [])])] * fan)
        assert_complete(record)
        root = next(s for s in record["spans"] if s["parent_id"] is None)
        request_id = root["inputs"]["request"]
        seen.append(request_id)
        parts = Counter()
        for span in record["spans"]:
            if span["name"] == "leaf":
                assert span["inputs"] == {"request": request_id, "part": span["inputs"]["part"]}
                parts[span["inputs"]["part"]] += 1
            elif span["name"] == "leaf.inner":
                assert span["inputs"] == parent_of(record, span)["inputs"]
        assert parts == Counter(range(fan))
    assert sorted(seen) == list(range(roots))
    assert tracekit.get_stats()["traces_in_flight"] == 0


_LATE_POOL = """
import asyncio, json, sys
import wrapt  # an autolog has loaded it
import tracekit
from tracekit.testing import capture

with capture() as captured:
    with tracekit.start_span("root") as root:  # the first span: the patch is installed
        before = "concurrent.futures.thread" in sys.modules
        from concurrent.futures import ThreadPoolExecutor  # imported only now

        with ThreadPoolExecutor(max_workers=1) as pool:
            seen = pool.submit(tracekit.get_current_span).result(timeout=10)

    async def main():
        with tracekit.start_span("aroot") as aroot:
            return aroot, await asyncio.to_thread(tracekit.get_current_span)

    aroot, seen_async = asyncio.run(main())
print(json.dumps({
    "imported_before": before,
    "pool": seen is root,
    "to_thread": seen_async is aroot,
    "traces": sorted(r["name"] for r in captured.traces),
}))
"""


def test_a_pool_module_imported_after_the_first_span_is_patched_on_import() -> None:
    """With wrapt loaded (every autolog loads it), the first span does not import
    `concurrent.futures.thread` (~2 ms of the first traced call) for the patch: wrapt's
    post-import hook patches it when the application imports it, and work submitted
    to its pools (asyncio's default executor too) still nests."""
    import json
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", _LATE_POOL], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "imported_before": False,
        "pool": True,
        "to_thread": True,
        "traces": ["aroot", "root"],
    }
