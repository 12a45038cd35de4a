"""Context propagation: nesting across functions, coroutines, asyncio tasks,
`asyncio.gather`, generators and async generators, and `get_current_span()`."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from functools import partial
from typing import Any

import pytest
from tests import trace_checks
from tests.trace_checks import assert_complete, by_name

import tracekit
from tracekit.testing import Capture

tree = partial(trace_checks.tree, by_start=True)  # children in start order


def current_name() -> str | None:
    span = tracekit.get_current_span()
    return None if span is None else span.name


# ---------------------------------------------------------------------------
# get_current_span, plain functions and coroutines


def test_get_current_span_outside_any_span_is_none(captured: Capture) -> None:
    assert tracekit.get_current_span() is None

    @tracekit.trace
    def f() -> None:
        pass

    f()
    assert tracekit.get_current_span() is None
    with tracekit.start_span("block"):
        pass
    assert tracekit.get_current_span() is None
    assert [r["name"] for r in captured.traces] == ["f", "block"]


def test_get_current_span_inside_sync_nesting(captured: Capture) -> None:
    seen: list[tuple[str, str, str | None, str]] = []

    def note() -> None:
        span = tracekit.get_current_span()
        assert span is not None
        seen.append((span.name, span.span_id, span.parent_id, span.trace_id))

    @tracekit.trace
    def leaf(x: int) -> int:
        note()
        return x * 2

    @tracekit.trace
    def middle(x: int) -> int:
        note()
        y = leaf(x)
        note()  # back to `middle` after the child returned
        return y + 1

    with tracekit.start_span("outer") as outer:
        note()
        assert tracekit.get_current_span() is outer
        assert middle(3) == 7
        assert tracekit.get_current_span() is outer
    assert tracekit.get_current_span() is None

    record = captured.single()
    spans = [(s["name"], s["span_id"], s["parent_id"]) for s in record["spans"]]
    assert spans == [
        ("outer", "0000000000000001", None),
        ("middle", "0000000000000002", "0000000000000001"),
        ("leaf", "0000000000000003", "0000000000000002"),
    ]
    trace_id = record["trace_id"]
    assert trace_id == "0" * 31 + "1"
    assert seen == [
        ("outer", "0000000000000001", None, trace_id),
        ("middle", "0000000000000002", "0000000000000001", trace_id),
        ("leaf", "0000000000000003", "0000000000000002", trace_id),
        ("middle", "0000000000000002", "0000000000000001", trace_id),
    ]
    assert by_name(record)["leaf"]["inputs"] == {"x": 3}
    assert by_name(record)["middle"]["outputs"] == 7
    assert_complete(record)


def test_context_restored_after_exception(captured: Capture) -> None:
    @tracekit.trace
    def boom() -> None:
        assert current_name() == "boom"
        raise ValueError("no")

    @tracekit.trace
    async def aboom() -> None:
        await asyncio.sleep(0)
        assert current_name() == "aboom"
        raise KeyError("no")

    with tracekit.start_span("outer") as outer:
        with pytest.raises(ValueError, match="no"):
            boom()
        assert tracekit.get_current_span() is outer
        with pytest.raises(KeyError):
            asyncio.run(aboom())
        assert tracekit.get_current_span() is outer
    assert tracekit.get_current_span() is None
    with pytest.raises(ValueError, match="no"):
        boom()
    assert tracekit.get_current_span() is None

    first, second = captured.traces
    assert tree(first) == ("outer", [("boom", []), ("aboom", [])])
    assert by_name(first)["boom"]["status"]["code"] == "ERROR"
    assert by_name(first)["aboom"]["status"]["code"] == "ERROR"
    assert by_name(first)["outer"]["status"]["code"] == "OK"
    assert tree(second) == ("boom", [])


def test_get_current_span_inside_async(captured: Capture) -> None:
    seen: list[tuple[str | None, str | None]] = []

    def note(where: str) -> None:
        seen.append((where, current_name()))

    @tracekit.trace
    def sync_helper() -> None:
        note("sync_helper")

    @tracekit.trace
    async def child() -> str:
        note("child:start")
        await asyncio.sleep(0)
        note("child:after-await")
        sync_helper()
        note("child:end")
        return "ok"

    @tracekit.trace
    async def main() -> str:
        note("main:start")
        result = await child()
        note("main:after-child")
        return result

    assert asyncio.run(main()) == "ok"
    note("outside")
    assert seen == [
        ("main:start", "main"),
        ("child:start", "child"),
        ("child:after-await", "child"),
        ("sync_helper", "sync_helper"),
        ("child:end", "child"),
        ("main:after-child", "main"),
        ("outside", None),
    ]
    record = captured.single()
    assert tree(record) == ("main", [("child", [("sync_helper", [])])])
    assert by_name(record)["main"]["outputs"] == "ok"
    assert_complete(record)


def test_asyncio_run_inside_a_sync_span_nests(captured: Capture) -> None:
    @tracekit.trace
    async def handler(n: int) -> int:
        await asyncio.sleep(0)
        return n + 1

    with tracekit.start_span("request"):
        assert asyncio.run(handler(1)) == 2

    assert tree(captured.single()) == ("request", [("handler", [])])


# ---------------------------------------------------------------------------
# asyncio tasks and gather


def test_nesting_across_asyncio_tasks(captured: Capture) -> None:
    @tracekit.trace
    async def leaf(tag: str) -> str:
        await asyncio.sleep(0)
        return tag

    @tracekit.trace
    async def branch(tag: str) -> str:
        await asyncio.sleep(0)
        inner = asyncio.create_task(leaf(tag + ".leaf"))
        await asyncio.sleep(0)
        assert current_name() == "branch"
        return await inner

    @tracekit.trace
    async def root() -> list[str]:
        a = asyncio.create_task(branch("a"))
        b = asyncio.create_task(branch("b"))
        assert current_name() == "root"
        return [await a, await b]

    assert asyncio.run(root()) == ["a.leaf", "b.leaf"]
    record = captured.single()
    assert tree(record) == (
        "root",
        [("branch", [("leaf", [])]), ("branch", [("leaf", [])])],
    )
    # Each leaf nests under the branch that created it, not the other one.
    spans = {s["span_id"]: s for s in record["spans"]}
    for span in record["spans"]:
        if span["name"] == "leaf":
            parent = spans[span["parent_id"]]
            assert parent["name"] == "branch"
            assert span["inputs"] == {"tag": parent["inputs"]["tag"] + ".leaf"}
    assert_complete(record)


def test_gather_children_are_siblings_without_cross_talk(captured: Capture) -> None:
    seen: dict[int, list[tuple[str | None, Any]]] = defaultdict(list)

    @tracekit.trace
    async def step(i: int, k: int) -> None:
        span = tracekit.get_current_span()
        assert span is not None
        seen[i].append((span.name, span.inputs))
        await asyncio.sleep(0)

    @tracekit.trace
    async def worker(i: int) -> int:
        for k in range(3):
            span = tracekit.get_current_span()
            assert span is not None
            seen[i].append((span.name, span.inputs))
            await asyncio.sleep(0)  # let the siblings run in between
            await step(i, k)
        return i

    @tracekit.trace
    async def root() -> list[int]:
        results = await asyncio.gather(worker(0), worker(1), worker(2))
        assert current_name() == "root"
        return results

    assert asyncio.run(root()) == [0, 1, 2]
    for i in range(3):
        assert seen[i] == [
            ("worker", {"i": i}),
            ("step", {"i": i, "k": 0}),
            ("worker", {"i": i}),
            ("step", {"i": i, "k": 1}),
            ("worker", {"i": i}),
            ("step", {"i": i, "k": 2}),
        ]

    record = captured.single()
    assert tree(record) == ("root", [("worker", [("step", [])] * 3)] * 3)
    spans = {s["span_id"]: s for s in record["spans"]}
    for span in record["spans"]:
        if span["name"] == "step":
            assert spans[span["parent_id"]]["inputs"] == {"i": span["inputs"]["i"]}
    assert by_name_list(record, "worker") == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert_complete(record)


def by_name_list(record: dict[str, Any], name: str) -> list[Any]:
    return sorted(
        (s["inputs"] for s in record["spans"] if s["name"] == name), key=lambda x: repr(x)
    )


def test_tasks_started_outside_any_span_are_separate_traces(captured: Capture) -> None:
    @tracekit.trace
    async def job(n: int) -> int:
        await asyncio.sleep(0)
        with tracekit.start_span("inner", inputs={"n": n}):
            await asyncio.sleep(0)
        return n

    async def main() -> list[int]:
        assert tracekit.get_current_span() is None
        return list(await asyncio.gather(*(job(n) for n in range(3))))

    assert asyncio.run(main()) == [0, 1, 2]
    records = captured.traces
    assert len(records) == 3
    assert len({r["trace_id"] for r in records}) == 3
    for record in records:
        assert tree(record) == ("job", [("inner", [])])
        n = by_name(record)["job"]["inputs"]["n"]
        assert by_name(record)["inner"]["inputs"] == {"n": n}
    assert sorted(by_name(r)["job"]["inputs"]["n"] for r in records) == [0, 1, 2]


def test_task_outliving_its_parent_span_keeps_the_trace_open(captured: Capture) -> None:
    @tracekit.trace
    async def background(release: asyncio.Event) -> str:
        await release.wait()
        return "done"

    async def main() -> None:
        release = asyncio.Event()
        with tracekit.start_span("request"):
            task = asyncio.create_task(background(release))
            await asyncio.sleep(0)  # the task starts its span under `request`
        assert tracekit.get_current_span() is None
        # The root ended, a child is still running: nothing emitted yet.
        assert captured.traces == []
        release.set()
        assert await task == "done"

    asyncio.run(main())
    record = captured.single()
    assert tree(record) == ("request", [("background", [])])
    spans = by_name(record)
    assert spans["background"]["end_time_ns"] > spans["request"]["end_time_ns"]
    assert_complete(record)


def test_start_span_exited_in_another_task_does_not_leak(captured: Capture) -> None:
    async def main() -> None:
        cm = tracekit.start_span("handoff")
        cm.__enter__()

        async def finisher() -> None:
            cm.__exit__(None, None, None)
            assert tracekit.get_current_span() is None

        await asyncio.create_task(finisher())

    asyncio.run(main())
    assert tracekit.get_current_span() is None
    assert tree(captured.single()) == ("handoff", [])


# ---------------------------------------------------------------------------
# generators


def test_generator_spans_nest_under_generator_and_consumer_context_is_restored(
    captured: Capture,
) -> None:
    inside: list[str | None] = []
    outside: list[str | None] = []

    @tracekit.trace
    def produce(i: int) -> int:
        return i * 10

    @tracekit.trace
    def consume(item: int) -> int:
        return item

    @tracekit.trace
    def numbers(n: int):  # type: ignore[no-untyped-def]
        for i in range(n):
            inside.append(current_name())
            yield produce(i)
            inside.append(current_name())  # resumed: the generator's span again

    with tracekit.start_span("root") as root:
        for item in numbers(3):
            outside.append(current_name())
            assert tracekit.get_current_span() is root
            consume(item)
        assert tracekit.get_current_span() is root

    assert inside == ["numbers"] * 6
    assert outside == ["root"] * 3
    record = captured.single()
    assert tree(record) == (
        "root",
        [
            ("numbers", [("produce", []), ("produce", []), ("produce", [])]),
            ("consume", []),
            ("consume", []),
            ("consume", []),
        ],
    )
    gen = next(s for s in record["spans"] if s["name"] == "numbers")
    assert gen["inputs"] == {"n": 3}
    assert gen["outputs"] == [0, 10, 20]
    assert gen["status"]["code"] == "OK"
    consumed = [s for s in record["spans"] if s["name"] == "consume"]
    assert [s["inputs"] for s in consumed] == [{"item": 0}, {"item": 10}, {"item": 20}]
    # The generator's span lasts until it is exhausted, after the last consume.
    assert gen["end_time_ns"] > consumed[-1]["end_time_ns"]
    assert_complete(record)


def test_generator_parent_is_the_span_current_at_first_iteration(captured: Capture) -> None:
    @tracekit.trace
    def gen():  # type: ignore[no-untyped-def]
        with tracekit.start_span("inside"):
            yield 1

    with tracekit.start_span("root"):
        with tracekit.start_span("creator"):
            g = gen()
        with tracekit.start_span("iterator"):
            assert list(g) == [1]

    assert tree(captured.single()) == (
        "root",
        [("creator", []), ("iterator", [("gen", [("inside", [])])])],
    )


def test_interleaved_generators_keep_their_own_spans(captured: Capture) -> None:
    @tracekit.trace
    def step(tag: str) -> str:
        return tag

    @tracekit.trace
    def letters(prefix: str):  # type: ignore[no-untyped-def]
        for k in range(3):
            assert current_name() == "letters"
            yield step(f"{prefix}{k}")

    with tracekit.start_span("root"):
        pairs = list(zip(letters("a"), letters("b"), strict=True))
        assert current_name() == "root"
    assert pairs == [("a0", "b0"), ("a1", "b1"), ("a2", "b2")]

    record = captured.single()
    assert tree(record) == ("root", [("letters", [("step", [])] * 3)] * 2)
    spans = {s["span_id"]: s for s in record["spans"]}
    for span in record["spans"]:
        if span["name"] == "step":
            prefix = spans[span["parent_id"]]["inputs"]["prefix"]
            assert span["inputs"]["tag"].startswith(prefix)
    assert_complete(record)


def test_nested_traced_generators(captured: Capture) -> None:
    @tracekit.trace
    def inner():  # type: ignore[no-untyped-def]
        assert current_name() == "inner"
        yield 1
        yield 2

    @tracekit.trace
    def outer():  # type: ignore[no-untyped-def]
        yield 0
        yield from inner()
        assert current_name() == "outer"
        yield 3

    with tracekit.start_span("root"):
        assert list(outer()) == [0, 1, 2, 3]

    record = captured.single()
    assert tree(record) == ("root", [("outer", [("inner", [])])])
    assert by_name(record)["outer"]["outputs"] == [0, 1, 2, 3]
    assert by_name(record)["inner"]["outputs"] == [1, 2]
    assert_complete(record)


def test_generator_closed_early_runs_cleanup_under_its_span(captured: Capture) -> None:
    @tracekit.trace
    def endless():  # type: ignore[no-untyped-def]
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            assert current_name() == "endless"
            with tracekit.start_span("cleanup"):
                pass

    with tracekit.start_span("root") as root:
        for item in endless():
            assert tracekit.get_current_span() is root
            if item == 2:
                break
        # The loop dropped the generator: CPython closes it right away.
        assert tracekit.get_current_span() is root
        with tracekit.start_span("after"):
            pass

    record = captured.single()
    assert tree(record) == ("root", [("endless", [("cleanup", [])]), ("after", [])])
    gen = by_name(record)["endless"]
    assert gen["outputs"] == [0, 1, 2]
    assert gen["attributes"].get("tracekit.closed_early") is True
    assert_complete(record)


def test_generator_raising_restores_consumer_context(captured: Capture) -> None:
    @tracekit.trace
    def failing():  # type: ignore[no-untyped-def]
        yield 1
        raise RuntimeError("mid-way")

    with tracekit.start_span("root") as root:
        got: list[int] = []

        def consume() -> None:
            for item in failing():
                got.append(item)
                assert tracekit.get_current_span() is root

        with pytest.raises(RuntimeError, match="mid-way"):
            consume()
        assert got == [1]
        assert tracekit.get_current_span() is root

    record = captured.single()
    assert tree(record) == ("root", [("failing", [])])
    gen = by_name(record)["failing"]
    assert gen["status"]["code"] == "ERROR"
    assert [e["name"] for e in gen["events"]] == ["exception"]
    assert by_name(record)["root"]["status"]["code"] == "OK"


def test_generator_send_and_throw_keep_context(captured: Capture) -> None:
    @tracekit.trace
    def echo():  # type: ignore[no-untyped-def]
        received = yield "ready"
        while True:
            assert current_name() == "echo"
            try:
                received = yield f"got {received}"
            except KeyError:
                assert current_name() == "echo"
                with tracekit.start_span("handled"):
                    pass
                received = "recovered"

    with tracekit.start_span("root") as root:
        g = echo()
        assert next(g) == "ready"
        assert tracekit.get_current_span() is root
        assert g.send("a") == "got a"
        assert g.throw(KeyError("k")) == "got recovered"
        assert tracekit.get_current_span() is root
        g.close()
        assert tracekit.get_current_span() is root

    record = captured.single()
    assert tree(record) == ("root", [("echo", [("handled", [])])])
    assert_complete(record)


# ---------------------------------------------------------------------------
# async generators


def test_async_generator_spans_nest_and_consumer_context_is_restored(captured: Capture) -> None:
    inside: list[str | None] = []
    outside: list[str | None] = []

    @tracekit.trace
    async def fetch(i: int) -> int:
        await asyncio.sleep(0)
        return i + 100

    @tracekit.trace
    def handle(item: int) -> int:
        return item

    @tracekit.trace
    async def stream(n: int):  # type: ignore[no-untyped-def]
        for i in range(n):
            inside.append(current_name())
            await asyncio.sleep(0)
            inside.append(current_name())
            yield await fetch(i)

    @tracekit.trace
    async def main() -> list[int]:
        got = []
        async for item in stream(3):
            outside.append(current_name())
            await asyncio.sleep(0)
            got.append(handle(item))
        assert current_name() == "main"
        return got

    assert asyncio.run(main()) == [100, 101, 102]
    assert inside == ["stream"] * 6
    assert outside == ["main"] * 3
    record = captured.single()
    assert tree(record) == (
        "main",
        [
            ("stream", [("fetch", []), ("fetch", []), ("fetch", [])]),
            ("handle", []),
            ("handle", []),
            ("handle", []),
        ],
    )
    assert by_name_list(record, "handle") == [{"item": 100}, {"item": 101}, {"item": 102}]
    stream_span = next(s for s in record["spans"] if s["name"] == "stream")
    assert stream_span["outputs"] == [100, 101, 102]
    assert stream_span["inputs"] == {"n": 3}
    assert_complete(record)


def test_async_generators_consumed_concurrently_do_not_cross_talk(captured: Capture) -> None:
    @tracekit.trace
    async def tick(source: str, k: int) -> str:
        await asyncio.sleep(0)
        return f"{source}{k}"

    @tracekit.trace
    async def source(name: str):  # type: ignore[no-untyped-def]
        for k in range(4):
            span = tracekit.get_current_span()
            assert span is not None
            assert (span.name, span.inputs) == ("source", {"name": name})
            yield await tick(name, k)

    @tracekit.trace
    async def consumer(name: str) -> list[str]:
        out = []
        async for item in source(name):
            span = tracekit.get_current_span()
            assert span is not None
            assert (span.name, span.inputs) == ("consumer", {"name": name})
            await asyncio.sleep(0)
            out.append(item)
        return out

    @tracekit.trace
    async def root() -> list[list[str]]:
        return list(await asyncio.gather(consumer("x"), consumer("y")))

    assert asyncio.run(root()) == [["x0", "x1", "x2", "x3"], ["y0", "y1", "y2", "y3"]]
    record = captured.single()
    assert tree(record) == ("root", [("consumer", [("source", [("tick", [])] * 4)])] * 2)
    spans = {s["span_id"]: s for s in record["spans"]}
    for span in record["spans"]:
        if span["name"] == "tick":
            src = spans[span["parent_id"]]
            cons = spans[src["parent_id"]]
            assert span["inputs"]["source"] == src["inputs"]["name"] == cons["inputs"]["name"]
    assert_complete(record)


def test_async_generator_closed_early_runs_cleanup_under_its_span(captured: Capture) -> None:
    @tracekit.trace
    async def endless():  # type: ignore[no-untyped-def]
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            assert current_name() == "endless"
            with tracekit.start_span("cleanup"):
                await asyncio.sleep(0)

    @tracekit.trace
    async def main() -> list[int]:
        got = []
        agen = endless()
        async for item in agen:
            got.append(item)
            if item == 1:
                break
        await agen.aclose()
        assert current_name() == "main"
        with tracekit.start_span("after"):
            pass
        return got

    assert asyncio.run(main()) == [0, 1]
    record = captured.single()
    assert tree(record) == ("main", [("endless", [("cleanup", [])]), ("after", [])])
    gen = by_name(record)["endless"]
    assert gen["outputs"] == [0, 1]
    assert gen["attributes"].get("tracekit.closed_early") is True
    assert_complete(record)


def test_async_generator_parent_is_the_span_current_at_first_iteration(
    captured: Capture,
) -> None:
    @tracekit.trace
    async def agen():  # type: ignore[no-untyped-def]
        with tracekit.start_span("inside"):
            yield 1

    async def main() -> None:
        with tracekit.start_span("root"):
            with tracekit.start_span("creator"):
                g = agen()
            with tracekit.start_span("iterator"):
                assert [x async for x in g] == [1]

    asyncio.run(main())
    assert tree(captured.single()) == (
        "root",
        [("creator", []), ("iterator", [("agen", [("inside", [])])])],
    )


def test_async_generator_raising_restores_consumer_context(captured: Capture) -> None:
    @tracekit.trace
    async def failing():  # type: ignore[no-untyped-def]
        yield 1
        await asyncio.sleep(0)
        raise RuntimeError("mid-way")

    async def main() -> None:
        with tracekit.start_span("root") as root:
            got: list[int] = []

            async def consume() -> None:
                async for item in failing():
                    got.append(item)
                    assert tracekit.get_current_span() is root

            with pytest.raises(RuntimeError, match="mid-way"):
                await consume()
            assert got == [1]
            assert tracekit.get_current_span() is root

    asyncio.run(main())
    record = captured.single()
    assert tree(record) == ("root", [("failing", [])])
    assert by_name(record)["failing"]["status"]["code"] == "ERROR"
    assert by_name(record)["root"]["status"]["code"] == "OK"
