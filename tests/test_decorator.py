"""`@tracekit.trace`, `tracekit.start_span` and the current-span/trace helpers.

Every test compares complete trace records (or the full list of them) against
literals built with the helpers below, so an unexpected, missing or changed
field anywhere in the tree fails the test. The `captured` fixture makes ids
count up from 1 and the clock advance 1 ms per reading, so `t(n)` is the
n-th clock reading of the test.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
from typing import Any

import pytest

import tracekit
from tracekit._state import program_name
from tracekit.testing import START_NS, STEP_NS

RESOURCE = {
    **({"service.name": program_name()} if program_name() else {}),  # the default
    "telemetry.sdk.name": "tracekit",
    "telemetry.sdk.language": "python",
    "telemetry.sdk.version": tracekit.__version__,
}

_ABSENT: Any = object()


def t(n: int) -> int:
    """The n-th reading of the fake clock (0-based)."""
    return START_NS + n * STEP_NS


def sid(n: int) -> str:
    return f"{n:016x}"


def tid(n: int) -> str:
    return f"{n:032x}"


class Stacktrace:
    """Equal to a formatted traceback ending in `type: message` through `func`."""

    def __init__(self, exc_type: str, message: str, func: str) -> None:
        self.exc_type, self.message, self.func = exc_type, message, func

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, str)
            and other.startswith("Traceback (most recent call last):")
            and f"in {self.func}\n" in other
            and other.rstrip("\n").endswith(f"{self.exc_type}: {self.message}")
        )

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return f"<traceback through {self.func}() ending {self.exc_type}: {self.message}>"


def exc_event(n: int, exc_type: str, message: str, func: str) -> dict[str, Any]:
    return {
        "name": "exception",
        "timestamp_ns": t(n),
        "attributes": {
            "exception.type": exc_type,
            "exception.message": message,
            "exception.stacktrace": Stacktrace(exc_type, message, func),
        },
    }


def span(
    n: int,
    name: str,
    start: int,
    end: int,
    *,
    parent: int | None = None,
    span_type: str = "UNKNOWN",
    status: str = "OK",
    message: str = "",
    inputs: Any = None,
    outputs: Any = None,
    attributes: dict[str, Any] | None = None,
    events: list[dict[str, Any]] | None = None,
    token_usage: Any = _ABSENT,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "span_id": sid(n),
        "parent_id": None if parent is None else sid(parent),
        "name": name,
        "span_type": span_type,
        "start_time_ns": t(start),
        "end_time_ns": t(end),
        "status": {"code": status, "message": message},
        "inputs": inputs,
        "outputs": outputs,
        "attributes": attributes or {},
        "events": events or [],
    }
    if token_usage is not _ABSENT:
        record["token_usage"] = token_usage
    return record


def trace_record(
    n: int,
    spans: list[dict[str, Any]],
    *,
    tags: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    token_usage: Any = _ABSENT,
) -> dict[str, Any]:
    root = spans[0]
    record: dict[str, Any] = {
        "schema": "tracekit.trace/1",
        "trace_id": tid(n),
        "name": root["name"],
        "status": root["status"]["code"],
        "start_time_ns": root["start_time_ns"],
        "end_time_ns": root["end_time_ns"],
        "tags": tags or {},
        "metadata": metadata or {},
        "resource": RESOURCE,
        "spans": spans,
    }
    if token_usage is not _ABSENT:
        record["token_usage"] = token_usage
    return record


class BoomError(Exception):
    pass


# -- sync functions ------------------------------------------------------------


def test_bare_decorator_nested_functions(captured):
    calls = []

    @tracekit.trace
    def inner(x, y=2):
        calls.append("inner")
        return x + y

    @tracekit.trace
    def outer(q):
        calls.append("outer")
        return inner(q) * 10

    assert outer(1) == 30
    assert calls == ["outer", "inner"]
    assert captured.traces == [
        trace_record(
            1,
            [
                span(1, "outer", 0, 3, inputs={"q": 1}, outputs=30),
                span(2, "inner", 1, 2, parent=1, inputs={"x": 1, "y": 2}, outputs=3),
            ],
        )
    ]


def test_decorator_with_arguments(captured):
    @tracekit.trace(name="retrieve", span_type="RETRIEVER", attributes={"index": "docs", "k": 3})
    def search(query):
        return ["a", "b"]

    @tracekit.trace()
    def empty_parens():
        return None

    assert search("what") == ["a", "b"]
    assert empty_parens() is None
    assert captured.traces == [
        trace_record(
            1,
            [
                span(
                    1,
                    "retrieve",
                    0,
                    1,
                    span_type="RETRIEVER",
                    inputs={"query": "what"},
                    outputs=["a", "b"],
                    attributes={"index": "docs", "k": 3},
                )
            ],
        ),
        trace_record(2, [span(2, "empty_parens", 2, 3, inputs={})]),
    ]


def test_decorator_keeps_function_identity():
    def plain(a):
        """Doc."""

    async def coro(a):
        pass

    def gen(a):
        yield a

    async def agen(a):
        yield a

    for func, check in [
        (plain, inspect.isfunction),
        (coro, inspect.iscoroutinefunction),
        (gen, inspect.isgeneratorfunction),
        (agen, inspect.isasyncgenfunction),
    ]:
        wrapped = tracekit.trace(func)
        assert check(wrapped), func
        assert wrapped.__name__ == func.__name__
        assert wrapped.__qualname__ == func.__qualname__
        assert wrapped.__doc__ == func.__doc__
        assert wrapped.__wrapped__ is func
        assert inspect.signature(wrapped) == inspect.signature(func)


def test_inputs_bound_with_defaults_varargs_and_kwargs(captured):
    @tracekit.trace
    def simple(a, b=2, *, c=3):
        return None

    @tracekit.trace
    def varargs(a, b=2, *args, c, d=4, **kw):
        return None

    @tracekit.trace
    def positional_only(a, /, b):
        return None

    @tracekit.trace
    def only_star(*args, **kwargs):
        return None

    simple(1)
    simple(1, c=5)
    varargs(1, 5, 6, 7, c=3, e=9)
    varargs(0, c=1)
    positional_only(1, b=2)
    only_star()
    assert captured.traces == [
        trace_record(1, [span(1, "simple", 0, 1, inputs={"a": 1, "b": 2, "c": 3})]),
        trace_record(2, [span(2, "simple", 2, 3, inputs={"a": 1, "b": 2, "c": 5})]),
        trace_record(
            3,
            [
                span(
                    3,
                    "varargs",
                    4,
                    5,
                    inputs={"a": 1, "b": 5, "args": [6, 7], "c": 3, "d": 4, "kw": {"e": 9}},
                )
            ],
        ),
        trace_record(
            4,
            [
                span(
                    4,
                    "varargs",
                    6,
                    7,
                    inputs={"a": 0, "b": 2, "args": [], "c": 1, "d": 4, "kw": {}},
                )
            ],
        ),
        trace_record(5, [span(5, "positional_only", 8, 9, inputs={"a": 1, "b": 2})]),
        trace_record(6, [span(6, "only_star", 10, 11, inputs={"args": [], "kwargs": {}})]),
    ]


def test_inputs_and_outputs_are_snapshots(captured):
    """The app mutating its arguments after the call does not change the recorded span.

    (The copy is shallow by design: one level of the arguments' containers.)
    """

    @tracekit.trace
    def keep(items, options):
        return items

    items = [1, 2]
    options = {"tags": ["a"]}
    result = keep(items, options)
    items.append(3)
    options["late"] = True
    result.append(4)
    assert captured.traces == [
        trace_record(
            1,
            [
                span(
                    1,
                    "keep",
                    0,
                    1,
                    inputs={"items": [1, 2], "options": {"tags": ["a"]}},
                    outputs=[1, 2],
                )
            ],
        )
    ]


def test_exception_marks_error_and_propagates_same_object(captured):
    calls = []
    error = BoomError("bad input")

    @tracekit.trace
    def fail(x):
        calls.append(x)
        raise error

    @tracekit.trace
    def caller():
        try:
            fail(1)
        except BoomError:
            return "recovered"

    with pytest.raises(BoomError) as info:
        fail(7)
    assert info.value is error
    assert calls == [7]
    assert caller() == "recovered"
    assert captured.traces == [
        trace_record(
            1,
            [
                span(
                    1,
                    "fail",
                    0,
                    2,
                    status="ERROR",
                    message="BoomError: bad input",
                    inputs={"x": 7},
                    events=[exc_event(1, "BoomError", "bad input", "fail")],
                )
            ],
        ),
        trace_record(
            2,
            [
                span(2, "caller", 3, 7, inputs={}, outputs="recovered"),
                span(
                    3,
                    "fail",
                    4,
                    6,
                    parent=2,
                    status="ERROR",
                    message="BoomError: bad input",
                    inputs={"x": 1},
                    events=[exc_event(5, "BoomError", "bad input", "fail")],
                ),
            ],
        ),
    ]


# -- methods -------------------------------------------------------------------


class Service:
    factor = 10

    def __init__(self, base):
        self.base = base

    @tracekit.trace
    def method(self, x, y=1):
        return self.base + x + y

    @tracekit.trace
    @classmethod
    def cm_above(cls, x):
        return cls.factor * x

    @classmethod
    @tracekit.trace(span_type="TOOL")
    def cm_below(cls, x):
        return cls.factor + x

    @tracekit.trace
    @staticmethod
    def sm_above(x):
        return -x

    @staticmethod
    @tracekit.trace
    def sm_below(x, scale=2):
        return x * scale

    @tracekit.trace(name="renamed", span_type="PARSER")
    @staticmethod
    def sm_named(text):
        return text.split()


def test_methods_classmethods_staticmethods(captured):
    svc = Service(100)
    assert svc.method(1) == 102
    assert Service.cm_above(2) == 20
    assert svc.cm_below(3) == 13
    assert Service.sm_above(4) == -4
    assert svc.sm_below(5) == 10
    assert Service.method(svc, 6, y=0) == 106
    assert svc.sm_named("a b") == ["a", "b"]
    assert captured.traces == [
        trace_record(1, [span(1, "method", 0, 1, inputs={"x": 1, "y": 1}, outputs=102)]),
        trace_record(2, [span(2, "cm_above", 2, 3, inputs={"x": 2}, outputs=20)]),
        trace_record(3, [span(3, "cm_below", 4, 5, span_type="TOOL", inputs={"x": 3}, outputs=13)]),
        trace_record(4, [span(4, "sm_above", 6, 7, inputs={"x": 4}, outputs=-4)]),
        trace_record(5, [span(5, "sm_below", 8, 9, inputs={"x": 5, "scale": 2}, outputs=10)]),
        trace_record(6, [span(6, "method", 10, 11, inputs={"x": 6, "y": 0}, outputs=106)]),
        trace_record(
            7,
            [
                span(
                    7,
                    "renamed",
                    12,
                    13,
                    span_type="PARSER",
                    inputs={"text": "a b"},
                    outputs=["a", "b"],
                )
            ],
        ),
    ]


# -- async functions -------------------------------------------------------------


def test_async_function(captured):
    calls = []

    @tracekit.trace(span_type="TOOL")
    async def lookup(key):
        calls.append(key)
        await asyncio.sleep(0)
        return {"key": key}

    @tracekit.trace
    async def main():
        first = await lookup("a")
        return [first, await lookup("b")]

    assert asyncio.run(main()) == [{"key": "a"}, {"key": "b"}]
    assert calls == ["a", "b"]
    assert captured.traces == [
        trace_record(
            1,
            [
                span(1, "main", 0, 5, inputs={}, outputs=[{"key": "a"}, {"key": "b"}]),
                span(
                    2,
                    "lookup",
                    1,
                    2,
                    parent=1,
                    span_type="TOOL",
                    inputs={"key": "a"},
                    outputs={"key": "a"},
                ),
                span(
                    3,
                    "lookup",
                    3,
                    4,
                    parent=1,
                    span_type="TOOL",
                    inputs={"key": "b"},
                    outputs={"key": "b"},
                ),
            ],
        )
    ]


def test_async_function_exception_propagates(captured):
    error = BoomError("async failure")
    calls = []

    @tracekit.trace
    async def fail():
        calls.append(1)
        await asyncio.sleep(0)
        raise error

    async def main():
        with pytest.raises(BoomError) as info:
            await fail()
        return info.value

    assert asyncio.run(main()) is error
    assert calls == [1]
    assert captured.traces == [
        trace_record(
            1,
            [
                span(
                    1,
                    "fail",
                    0,
                    2,
                    status="ERROR",
                    message="BoomError: async failure",
                    inputs={},
                    events=[exc_event(1, "BoomError", "async failure", "fail")],
                )
            ],
        )
    ]


def test_concurrent_tasks_nest_under_their_parent(captured):
    @tracekit.trace
    async def child(n):
        await asyncio.sleep(0)
        return n

    @tracekit.trace
    async def parent():
        return await asyncio.gather(child(1), child(2))

    assert asyncio.run(parent()) == [1, 2]
    (record,) = captured.traces
    assert [(s["name"], s["parent_id"]) for s in record["spans"]] == [
        ("parent", None),
        ("child", sid(1)),
        ("child", sid(1)),
    ]
    assert sorted(s["outputs"] for s in record["spans"][1:]) == [1, 2]


# -- generators ------------------------------------------------------------------


def test_generator_exhausted(captured):
    calls = []

    @tracekit.trace
    def child(i):
        return i * i

    @tracekit.trace(span_type="RETRIEVER")
    def numbers(n):
        calls.append(n)
        for i in range(n):
            yield child(i)

    @tracekit.trace
    def consume():
        return list(numbers(3))

    assert consume() == [0, 1, 4]
    assert calls == [3]
    assert captured.traces == [
        trace_record(
            1,
            [
                span(1, "consume", 0, 9, inputs={}, outputs=[0, 1, 4]),
                span(
                    2,
                    "numbers",
                    1,
                    8,
                    parent=1,
                    span_type="RETRIEVER",
                    inputs={"n": 3},
                    outputs=[0, 1, 4],
                ),
                span(3, "child", 2, 3, parent=2, inputs={"i": 0}, outputs=0),
                span(4, "child", 4, 5, parent=2, inputs={"i": 1}, outputs=1),
                span(5, "child", 6, 7, parent=2, inputs={"i": 2}, outputs=4),
            ],
        )
    ]


def test_generator_return_value_recorded(captured):
    @tracekit.trace
    def gen():
        yield "a"
        return "done"

    def outer():
        result = yield from gen()
        assert result == "done"

    assert list(outer()) == ["a"]
    assert captured.traces == [
        trace_record(
            1, [span(1, "gen", 0, 1, inputs={}, outputs={"items": ["a"], "return": "done"})]
        )
    ]


def test_generator_context_not_kept_between_chunks(captured):
    @tracekit.trace
    def gen():
        assert tracekit.get_current_span().name == "gen"
        yield 1
        assert tracekit.get_current_span().name == "gen"
        yield 2

    with tracekit.start_span("outer") as outer:
        g = gen()
        assert next(g) == 1
        assert tracekit.get_current_span() is outer
        assert next(g) == 2
        assert tracekit.get_current_span() is outer
        with pytest.raises(StopIteration):
            next(g)
    assert tracekit.get_current_span() is None
    assert captured.traces == [
        trace_record(
            1,
            [
                span(1, "outer", 0, 3),
                span(2, "gen", 1, 2, parent=1, inputs={}, outputs=[1, 2]),
            ],
        )
    ]


def test_generator_throw_passes_through(captured):
    @tracekit.trace
    def gen():
        try:
            yield 1
        except KeyError:
            yield "recovered"
        yield 3

    g = gen()
    assert next(g) == 1
    assert g.throw(KeyError("k")) == "recovered"
    assert g.send(None) == 3
    error = ValueError("thrown in")
    with pytest.raises(ValueError, match="thrown in") as info:
        g.throw(error)
    assert info.value is error
    assert captured.traces == [
        trace_record(
            1,
            [
                span(
                    1,
                    "gen",
                    0,
                    2,
                    status="ERROR",
                    message="ValueError: thrown in",
                    inputs={},
                    events=[exc_event(1, "ValueError", "thrown in", "gen")],
                )
            ],
        )
    ]


def test_generator_closed_early(captured):
    @tracekit.trace
    def gen(n):
        yield from range(n)

    g = gen(10)
    assert next(g) == 0
    assert next(g) == 1
    g.close()
    g.close()  # a second close is a no-op

    for item in gen(5):  # broken out of: the loop drops the generator
        if item == 2:
            break

    assert captured.traces == [
        trace_record(
            1,
            [
                span(
                    1,
                    "gen",
                    0,
                    1,
                    inputs={"n": 10},
                    outputs=[0, 1],
                    attributes={"tracekit.closed_early": True},
                )
            ],
        ),
        trace_record(
            2,
            [
                span(
                    2,
                    "gen",
                    2,
                    3,
                    inputs={"n": 5},
                    outputs=[0, 1, 2],
                    attributes={"tracekit.closed_early": True},
                )
            ],
        ),
    ]


def test_generator_error_midway(captured):
    error = BoomError("stream broke")
    calls = []

    @tracekit.trace
    def gen():
        calls.append(1)
        yield 1
        raise error

    g = gen()
    assert next(g) == 1
    with pytest.raises(BoomError) as info:
        next(g)
    assert info.value is error
    with pytest.raises(StopIteration):
        next(g)
    assert calls == [1]
    assert captured.traces == [
        trace_record(
            1,
            [
                span(
                    1,
                    "gen",
                    0,
                    2,
                    status="ERROR",
                    message="BoomError: stream broke",
                    inputs={},
                    events=[exc_event(1, "BoomError", "stream broke", "gen")],
                )
            ],
        )
    ]


def test_generator_garbage_collected(captured):
    @tracekit.trace
    def gen():
        yield 1
        yield 2

    g = gen()
    assert next(g) == 1
    del g
    gc.collect()

    # Garbage collection of a generator caught in a reference cycle.
    g = gen()
    assert next(g) == 1
    holder = {"gen": g}
    holder["self"] = holder
    del g, holder
    gc.collect()

    assert captured.traces == [
        trace_record(
            1,
            [
                span(
                    1,
                    "gen",
                    0,
                    1,
                    inputs={},
                    outputs=[1],
                    attributes={"tracekit.closed_early": True},
                )
            ],
        ),
        trace_record(
            2,
            [
                span(
                    2,
                    "gen",
                    2,
                    3,
                    inputs={},
                    outputs=[1],
                    attributes={"tracekit.closed_early": True},
                )
            ],
        ),
    ]


def test_generator_never_iterated_records_nothing(captured):
    calls = []

    @tracekit.trace
    def gen():
        calls.append(1)
        yield 1

    g = gen()
    del g
    gc.collect()
    assert calls == []
    assert captured.traces == []


# -- async generators ------------------------------------------------------------


def test_async_generator_exhausted(captured):
    calls = []

    @tracekit.trace
    async def tool(i):
        return i + 1

    @tracekit.trace(name="stream", span_type="LLM")
    async def agen(n):
        calls.append(n)
        for i in range(n):
            await asyncio.sleep(0)
            yield await tool(i)

    @tracekit.trace
    async def main():
        return [item async for item in agen(2)]

    assert asyncio.run(main()) == [1, 2]
    assert calls == [2]
    assert captured.traces == [
        trace_record(
            1,
            [
                span(1, "main", 0, 7, inputs={}, outputs=[1, 2]),
                span(2, "stream", 1, 6, parent=1, span_type="LLM", inputs={"n": 2}, outputs=[1, 2]),
                span(3, "tool", 2, 3, parent=2, inputs={"i": 0}, outputs=1),
                span(4, "tool", 4, 5, parent=2, inputs={"i": 1}, outputs=2),
            ],
        )
    ]


def test_async_generator_aclose(captured):
    @tracekit.trace
    async def agen():
        for i in range(10):
            yield i

    async def main():
        g = agen()
        assert await g.__anext__() == 0
        assert await g.__anext__() == 1
        await g.aclose()
        await g.aclose()

    asyncio.run(main())
    assert captured.traces == [
        trace_record(
            1,
            [
                span(
                    1,
                    "agen",
                    0,
                    1,
                    inputs={},
                    outputs=[0, 1],
                    attributes={"tracekit.closed_early": True},
                )
            ],
        )
    ]


def test_async_generator_error_midway(captured):
    error = BoomError("async stream broke")

    @tracekit.trace
    async def agen():
        yield 1
        raise error

    async def main():
        got = []

        async def consume() -> None:
            async for item in agen():
                got.append(item)

        with pytest.raises(BoomError) as info:
            await consume()
        assert got == [1]
        return info.value

    assert asyncio.run(main()) is error
    assert captured.traces == [
        trace_record(
            1,
            [
                span(
                    1,
                    "agen",
                    0,
                    2,
                    status="ERROR",
                    message="BoomError: async stream broke",
                    inputs={},
                    events=[exc_event(1, "BoomError", "async stream broke", "agen")],
                )
            ],
        )
    ]


def test_async_generator_closed_by_asyncio_run_shutdown(captured):
    keep = []

    @tracekit.trace
    async def agen():
        for i in range(10):
            yield i

    async def main():
        g = agen()
        keep.append(g)  # still referenced when main() returns
        assert await g.__anext__() == 0

    asyncio.run(main())  # loop.shutdown_asyncgens() closes it
    assert captured.traces == [
        trace_record(
            1,
            [
                span(
                    1,
                    "agen",
                    0,
                    1,
                    inputs={},
                    outputs=[0],
                    attributes={"tracekit.closed_early": True},
                )
            ],
        )
    ]


def test_async_generator_garbage_collected_in_loop(captured):
    @tracekit.trace
    async def agen():
        yield 1
        yield 2

    async def main():
        g = agen()
        assert await g.__anext__() == 1
        del g
        gc.collect()
        for _ in range(5):  # the loop's finalizer hook schedules aclose()
            await asyncio.sleep(0)
        assert captured.traces != []

    asyncio.run(main())
    assert captured.traces == [
        trace_record(
            1,
            [
                span(
                    1,
                    "agen",
                    0,
                    1,
                    inputs={},
                    outputs=[1],
                    attributes={"tracekit.closed_early": True},
                )
            ],
        )
    ]


# -- start_span and the current span/trace -----------------------------------------


def test_start_span_full_surface(captured):
    with tracekit.start_span(
        "step", span_type="CHAIN", inputs={"q": "hi"}, attributes={"a": 1}
    ) as step:
        assert tracekit.get_current_span() is step
        step.set_outputs({"answer": 42})
        step.set_attribute("k", "v")
        step.set_attributes({"x": 1, "y": [1, 2]})
        step.add_event("retrieved", {"n": 3})
        step.add_event("explicit", timestamp_ns=123)
        step.set_token_usage({"input_tokens": 3, "output_tokens": 2, "total_tokens": 5})
        with tracekit.start_span("inner", span_type="LLM") as inner:
            assert tracekit.get_current_span() is inner
            assert inner.trace_id == step.trace_id == tid(1)
            inner.set_inputs("prompt")
            inner.record_exception(ValueError("handled"))
        assert tracekit.get_current_span() is step
    assert tracekit.get_current_span() is None
    # Setters on an ended span are ignored.
    step.set_attribute("late", True)
    step.set_outputs("late")
    step.add_event("late")

    assert captured.traces == [
        trace_record(
            1,
            [
                span(
                    1,
                    "step",
                    0,
                    5,
                    span_type="CHAIN",
                    inputs={"q": "hi"},
                    outputs={"answer": 42},
                    attributes={"a": 1, "k": "v", "x": 1, "y": [1, 2]},
                    events=[
                        {"name": "retrieved", "timestamp_ns": t(1), "attributes": {"n": 3}},
                        {"name": "explicit", "timestamp_ns": 123, "attributes": {}},
                    ],
                    token_usage={"input_tokens": 3, "output_tokens": 2, "total_tokens": 5},
                ),
                span(
                    2,
                    "inner",
                    2,
                    4,
                    parent=1,
                    span_type="LLM",
                    status="ERROR",
                    message="ValueError: handled",
                    inputs="prompt",
                    events=[
                        {
                            "name": "exception",
                            "timestamp_ns": t(3),
                            "attributes": {
                                "exception.type": "ValueError",
                                "exception.message": "handled",
                                "exception.stacktrace": "ValueError: handled\n",
                            },
                        }
                    ],
                ),
            ],
            token_usage={"input_tokens": 3, "output_tokens": 2, "total_tokens": 5},
        )
    ]


def test_start_span_exception_propagates(captured):
    error = BoomError("in block")
    with pytest.raises(BoomError) as info, tracekit.start_span("block"):
        raise error
    assert info.value is error
    assert tracekit.get_current_span() is None
    assert captured.traces == [
        trace_record(
            1,
            [
                span(
                    1,
                    "block",
                    0,
                    2,
                    status="ERROR",
                    message="BoomError: in block",
                    events=[
                        exc_event(
                            1, "BoomError", "in block", "test_start_span_exception_propagates"
                        )
                    ],
                )
            ],
        )
    ]


def test_get_current_span_inside_traced_function(captured):
    seen = []

    @tracekit.trace
    def work():
        current = tracekit.get_current_span()
        seen.append((current.name, current.span_id, current.trace_id))

    assert tracekit.get_current_span() is None
    work()
    assert tracekit.get_current_span() is None
    assert seen == [("work", sid(1), tid(1))]


def test_get_last_trace_id(captured):
    @tracekit.trace
    def child():
        return None

    @tracekit.trace
    def root():
        child()
        # The root has not ended yet: the last trace is not this one.
        return tracekit.get_last_trace_id()

    root()
    assert tracekit.get_last_trace_id() == tid(1)
    assert root() == tid(1)
    assert tracekit.get_last_trace_id() == tid(2)
    assert [r["trace_id"] for r in captured.traces] == [tid(1), tid(2)]


def test_update_current_trace(captured):
    @tracekit.trace
    def child():
        tracekit.update_current_trace(tags={"stage": "child"}, user_id="u-1")

    @tracekit.trace
    def root():
        tracekit.update_current_trace(
            tags={"env": "dev"}, metadata={"k": "v", "n": 2}, session_id="s-1"
        )
        child()

    root()
    assert captured.traces == [
        trace_record(
            1,
            [
                span(1, "root", 0, 3, inputs={}),
                span(2, "child", 1, 2, parent=1, inputs={}),
            ],
            tags={"env": "dev", "stage": "child"},
            metadata={"k": "v", "n": 2, "session_id": "s-1", "user_id": "u-1"},
        )
    ]


def test_update_current_trace_outside_a_trace_is_harmless(captured):
    tracekit.update_current_trace(tags={"a": "b"}, session_id="s")
    assert captured.traces == []
