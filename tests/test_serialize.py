"""Serialization of hostile values: never raises, always `json.dumps`-able, bounded."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import json
import pathlib
import uuid
from typing import Any
from unittest import mock

import pydantic
import pytest

import tracekit
from tracekit._walk import MAX_ITEMS, to_jsonable
from tracekit.testing import capture


def dumps(value: Any) -> str:
    """Strict JSON, as every backend will parse it (no NaN, no huge ints)."""
    return json.dumps(value, allow_nan=False)


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


class Level(enum.IntEnum):
    HIGH = 3


class Point(collections.namedtuple("Point", "x y")):
    pass


class When(pydantic.BaseModel):
    at: datetime.datetime
    color: Color


class Message(pydantic.BaseModel):
    role: str
    content: str
    when: When
    raw: bytes = b"x"
    tags: set[str] = set()


@dataclasses.dataclass
class Inner:
    n: int
    d: datetime.date


@dataclasses.dataclass
class Outer:
    name: str
    inner: Inner
    items: list[Any]


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("repr failed")

    __str__ = __repr__


class NonStrRepr:
    def __repr__(self) -> Any:
        return 42


class Anything:
    """Answers every attribute (like a Mock or a proxy), counting the calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        def method(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return {"surprise": name}

        return method

    def __repr__(self) -> str:
        return "<Anything>"


class ExplodingDict(dict):
    def items(self) -> Any:
        raise RuntimeError("items failed")

    def __repr__(self) -> str:
        return "<ExplodingDict>"


class BadKey:
    def __str__(self) -> str:
        raise RuntimeError("str failed")

    __repr__ = __str__

    def __hash__(self) -> int:
        return 7


class BadStrError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str of the exception failed")


UTC = datetime.timezone.utc


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(
            Message(
                role="user",
                content="hi",
                when=When(at=datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), color=Color.RED),
                tags={"a"},
            ),
            {
                "role": "user",
                "content": "hi",
                "when": {"at": "2024-01-02T03:04:05Z", "color": "red"},  # pydantic's JSON form
                "raw": "x",
                "tags": ["a"],
            },
            id="pydantic-v2",
        ),
        pytest.param(
            Outer("o", Inner(1, datetime.date(2024, 5, 6)), [Inner(2, datetime.date(2020, 1, 1))]),
            {
                "name": "o",
                "inner": {"n": 1, "d": "2024-05-06"},
                "items": [{"n": 2, "d": "2020-01-01"}],
            },
            id="dataclass",
        ),
        pytest.param([Color.RED, Color.BLUE, Level.HIGH], ["red", 2, 3], id="enums"),
        pytest.param(
            datetime.datetime(2024, 1, 2, 3, 4, 5, 600000), "2024-01-02T03:04:05.600000", id="dt"
        ),
        pytest.param(datetime.date(2024, 1, 2), "2024-01-02", id="date"),
        pytest.param(datetime.timedelta(minutes=1, seconds=30), 90.0, id="timedelta"),
        pytest.param("héllo ✓".encode(), "héllo ✓", id="bytes-utf8"),
        pytest.param(bytearray(b"ab"), "ab", id="bytearray"),
        pytest.param(frozenset({"only"}), ["only"], id="frozenset"),
        pytest.param(Point(1, 2), {"x": 1, "y": 2}, id="namedtuple"),
        pytest.param((1, "a", None), [1, "a", None], id="tuple"),
        pytest.param(collections.deque([1, 2]), [1, 2], id="deque"),
        pytest.param(
            uuid.UUID("12345678-1234-5678-1234-567812345678"),
            "12345678-1234-5678-1234-567812345678",
            id="uuid",
        ),
        pytest.param(decimal.Decimal("1.10"), "1.10", id="decimal"),
        pytest.param(pathlib.PurePosixPath("/a/b.txt"), "/a/b.txt", id="path"),
        pytest.param(ValueError("bad"), "ValueError: bad", id="exception"),
        pytest.param({"a": [1, {"b": (2, 3)}]}, {"a": [1, {"b": [2, 3]}]}, id="nested"),
        pytest.param(True, True, id="bool"),
        pytest.param(None, None, id="none"),
        pytest.param(1.5, 1.5, id="float"),
    ],
)
def test_to_jsonable_known_types(value, expected):
    result = to_jsonable(value)
    assert result == expected
    dumps(result)


def test_binary_bytes_become_a_string():
    result = to_jsonable(b"\xff\xfe\x00ok")
    assert isinstance(result, str)
    assert result.endswith("ok")
    assert "\\xff" in result
    assert json.loads(dumps(result)) == result


def test_sets_become_lists():
    result = to_jsonable({"s": {3, 1, 2}})
    assert sorted(result["s"]) == [1, 2, 3]
    dumps(result)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_floats_are_json_safe(value):
    result = to_jsonable({"x": value, "l": [value]})
    text = dumps(result)
    assert str(value).lower().lstrip("-") in text.lower()


def test_huge_integers_are_json_safe():
    result = to_jsonable({"big": 10**5000, "neg": -(10**4500), "ok": 10**20})
    text = dumps(result)
    assert json.loads(text)["ok"] == 10**20


def test_non_string_dict_keys():
    result = to_jsonable({1: "int", None: "none", (1, 2): "tuple", 2.5: "float", Color.RED: "enum"})
    assert all(type(k) is str for k in result)
    assert sorted(result.values()) == ["enum", "float", "int", "none", "tuple"]
    assert result["1"] == "int"
    assert result["red"] == "enum"
    dumps(result)


def test_unprintable_dict_key():
    result = to_jsonable({BadKey(): 1, "fine": 2})
    assert result["fine"] == 2
    assert len(result) == 2
    assert all(type(k) is str for k in result)
    dumps(result)


def test_cycles_are_cut_but_shared_references_are_not():
    cyclic_list: list[Any] = [1]
    cyclic_list.append(cyclic_list)
    cyclic_dict: dict[str, Any] = {"a": 1}
    cyclic_dict["self"] = cyclic_dict
    cyclic_dict["list"] = [cyclic_dict]
    shared = [1, 2]

    result = to_jsonable({"list": cyclic_list, "dict": cyclic_dict, "shared": [shared, shared]})
    assert result == {
        "list": [1, "[tracekit: circular reference]"],
        "dict": {
            "a": 1,
            "self": "[tracekit: circular reference]",
            "list": ["[tracekit: circular reference]"],
        },
        "shared": [[1, 2], [1, 2]],
    }
    dumps(result)


def test_objects_whose_repr_raises():
    result = to_jsonable({"bad": BadRepr(), "nonstr": NonStrRepr(), "dict": ExplodingDict(a=1)})
    assert set(result) == {"bad", "nonstr", "dict"}
    assert isinstance(result["bad"], str)
    assert "BadRepr" in result["bad"]
    assert isinstance(result["nonstr"], str)
    assert "NonStrRepr" in result["nonstr"]
    assert result["dict"] == "<ExplodingDict>"
    dumps(result)


def test_objects_answering_every_attribute_are_not_called():
    anything = Anything()
    result = to_jsonable({"a": anything})
    assert result == {"a": "<Anything>"}
    assert anything.calls == []

    for m in (mock.Mock(), mock.MagicMock(), mock.NonCallableMagicMock()):
        result = to_jsonable([m])
        assert isinstance(result[0], str)
        assert "Mock" in result[0]
        assert m.mock_calls == []
        dumps(result)


def test_iterators_are_not_consumed():
    it = iter([1, 2, 3])

    def gen():
        yield 1

    g = gen()
    result = to_jsonable({"it": it, "gen": g})
    assert all(isinstance(v, str) for v in result.values())
    assert next(it) == 1
    assert next(g) == 1


def test_huge_string_truncated_with_marker():
    result = to_jsonable("x" * 1000, max_chars=100)
    assert result.startswith("x" * 100)
    assert "x" * 101 not in result
    assert result.endswith("[tracekit: truncated 900 chars]")
    assert to_jsonable("y" * 100, max_chars=100) == "y" * 100


def test_huge_bytes_and_repr_are_truncated():
    class HugeRepr:
        def __repr__(self) -> str:
            return "r" * 10_000

    result = to_jsonable([b"b" * 10_000, HugeRepr()], max_chars=100)
    assert result[0].endswith("[tracekit: truncated 9900 chars]")
    assert result[1].endswith("[tracekit: truncated 9900 chars]")
    assert len(dumps(result)) < 500


def test_huge_dict_keys_are_bounded():
    """A key is payload like any other: one huge key must not bypass the size limits."""
    result = to_jsonable({"k" * 1_000_000: 1, 10**6000: 2}, max_chars=100, budget=10_000)
    text = dumps(result)
    assert len(text) < 20_000
    assert len(result) == 2


def test_huge_collections_are_truncated():
    result = to_jsonable(
        {"list": list(range(MAX_ITEMS + 50)), "dict": dict.fromkeys(range(MAX_ITEMS + 5), 0)}
    )
    assert len(result["list"]) == MAX_ITEMS + 1
    assert result["list"][:3] == [0, 1, 2]
    assert "tracekit: truncated 50 items" in result["list"][-1]
    assert len(result["dict"]) == MAX_ITEMS + 1
    dumps(result)


def test_very_deep_nesting():
    deep_list: list[Any] = []
    cursor = deep_list
    deep_dict: dict[str, Any] = {}
    dcursor = deep_dict
    for _ in range(100_000):
        cursor.append([])
        cursor = cursor[0]
        dcursor["d"] = {}
        dcursor = dcursor["d"]
    result = to_jsonable({"list": deep_list, "dict": deep_dict})
    text = dumps(result)
    assert "max depth" in text
    assert len(text) < 2_000


# -- through a traced function ------------------------------------------------------


def hostile_values() -> dict[str, Any]:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    return {
        "model": Message(
            role="user",
            content="hi",
            when=When(at=datetime.datetime(2024, 1, 1, tzinfo=UTC), color=Color.BLUE),
        ),
        "dc": Inner(1, datetime.date(2024, 1, 1)),
        "enum": Color.RED,
        "dt": datetime.datetime(2024, 1, 1, 12, 0),
        "td": datetime.timedelta(seconds=1.5),
        "bytes": b"\x00\xff",
        "set": {1},
        "nt": Point(1, 2),
        "uuid": uuid.UUID(int=1),
        "dec": decimal.Decimal("NaN"),
        "path": pathlib.Path("p"),
        "cyclic": cyclic,
        "bad": BadRepr(),
        "anything": Anything(),
        "mock": mock.MagicMock(),
        "floats": [float("nan"), float("inf")],
        "keys": {1: "a", None: "b", BadKey(): "c"},
        "surrogate": "\ud800 lone surrogate",
    }


def test_hostile_values_through_a_traced_function(captured):
    values = hostile_values()

    @tracekit.trace
    def handle(payload, *extra, **options):
        tracekit.get_current_span().set_attributes(
            {"attr": payload["bad"], "mock": payload["mock"]}
        )
        tracekit.get_current_span().add_event("evt", {"cyclic": payload["cyclic"]})
        return payload

    assert handle(values, BadRepr(), option=Anything()) is values
    (record,) = captured.traces
    dumps(record)
    (span,) = record["spans"]
    assert span["status"] == {"code": "OK", "message": ""}
    payload = span["inputs"]["payload"]
    assert set(payload) == set(values)
    assert payload["model"]["when"] == {"at": "2024-01-01T00:00:00Z", "color": 2}
    assert payload["dc"] == {"n": 1, "d": "2024-01-01"}
    assert payload["enum"] == "red"
    assert payload["dt"] == "2024-01-01T12:00:00"
    assert payload["td"] == 1.5
    assert payload["set"] == [1]
    assert payload["nt"] == {"x": 1, "y": 2}
    assert payload["cyclic"] == ["[tracekit: circular reference]"]
    assert span["outputs"]["uuid"] == "00000000-0000-0000-0000-000000000001"
    assert values["anything"].calls == []
    assert span["inputs"]["options"]["option"] == "<Anything>"
    assert isinstance(span["attributes"]["attr"], str)
    assert span["events"][0]["attributes"] == {"cyclic": ["[tracekit: circular reference]"]}


def test_exception_whose_str_raises(captured):
    error = BadStrError()

    @tracekit.trace
    def fail():
        raise error

    with pytest.raises(BadStrError) as info:
        fail()
    assert info.value is error
    (record,) = captured.traces
    dumps(record)
    (span,) = record["spans"]
    assert span["status"]["code"] == "ERROR"
    assert span["events"][0]["name"] == "exception"
    assert span["events"][0]["attributes"]["exception.type"] == "BadStrError"


def test_update_current_trace_with_unprintable_keys_never_raises(captured, monkeypatch):
    monkeypatch.setenv("TRACEKIT_TESTING", "0")  # production mode: what the user sees

    @tracekit.trace
    def handle():
        tracekit.update_current_trace(tags={BadKey(): "x"}, metadata={BadKey(): 1, "ok": 2})
        return "done"

    assert handle() == "done"
    (record,) = captured.traces
    dumps(record)
    assert record["metadata"]["ok"] == 2


def test_hostile_tag_values_do_not_lose_the_trace(captured, monkeypatch):
    # Production mode: an internal error is swallowed, so a lost trace shows as
    # a missing record rather than a crashed worker thread.
    monkeypatch.setenv("TRACEKIT_TESTING", "0")

    @tracekit.trace
    def handle():
        tracekit.update_current_trace(
            tags={"bad": BadRepr(), "ok": "yes"}, metadata={"bad": BadRepr()}
        )

    handle()
    (record,) = captured.traces
    dumps(record)
    assert record["tags"]["ok"] == "yes"
    assert isinstance(record["tags"]["bad"], str)
    assert isinstance(record["metadata"]["bad"], str)


def test_huge_integer_through_a_traced_function(captured):
    @tracekit.trace
    def handle(n):
        return n + 1

    assert handle(10**5000) == 10**5000 + 1
    (record,) = captured.traces
    dumps(record)


def test_max_value_chars():
    with capture(max_value_chars=50) as small:

        @tracekit.trace
        def handle(text):
            tracekit.get_current_span().set_attribute("long", "a" * 60)
            return text.upper()

        handle("b" * 1000)
        (record,) = small.traces
    (span,) = record["spans"]
    assert span["inputs"] == {"text": "b" * 50 + "... [tracekit: truncated 950 chars]"}
    assert span["outputs"] == "B" * 50 + "... [tracekit: truncated 950 chars]"
    assert span["attributes"] == {"long": "a" * 50 + "... [tracekit: truncated 10 chars]"}


def test_max_trace_chars():
    with capture(max_trace_chars=5_000) as small:
        with tracekit.start_span("root", inputs={"text": "r" * 100_000}):
            for i in range(20):
                with tracekit.start_span(f"child-{i}", inputs="c" * 100_000) as child:
                    child.set_outputs(["o" * 100_000])
        (record,) = small.traces
    text = dumps(record)
    assert len(record["spans"]) == 21
    assert len(text) < 30_000
    assert "trace size limit reached" in text
    assert record["spans"][0]["inputs"]["text"].startswith("r" * 1000)


def test_span_names_survive_the_trace_size_limit():
    """Payloads are cut at max_trace_chars; the tree (span and trace names) stays readable."""
    with capture(max_trace_chars=1_000) as small:

        @tracekit.trace
        def step(i, text):
            return text

        @tracekit.trace
        def pipeline():
            for i in range(5):
                step(i, "x" * 10_000)

        pipeline()
        (record,) = small.traces
    assert record["name"] == "pipeline"
    assert [s["name"] for s in record["spans"]] == ["pipeline"] + ["step"] * 5
    assert "trace size limit reached" in dumps(record)


def test_huge_keys_count_toward_max_trace_chars():
    with capture(max_trace_chars=5_000, max_value_chars=1_000) as small:
        with tracekit.start_span("root", inputs={"k" * 1_000_000: "v"}) as root:
            root.set_attribute("a" * 1_000_000, 1)
        (record,) = small.traces
    assert len(dumps(record)) < 20_000


# -- token usage ------------------------------------------------------------------


def test_token_usage_counted_once_per_branch(captured):
    with tracekit.start_span("root"):
        with tracekit.start_span("chain", span_type="CHAT_MODEL") as chain:
            chain.set_token_usage({"input_tokens": 10, "output_tokens": 5, "total_tokens": 15})
            with tracekit.start_span("provider", span_type="LLM") as provider:
                provider.set_token_usage(
                    {
                        "input_tokens": 10,
                        "output_tokens": 5,
                        "total_tokens": 15,
                        "cache_read_input_tokens": 4,
                    }
                )
                with tracekit.start_span("deeper") as deeper:
                    deeper.set_token_usage({"input_tokens": 100, "total_tokens": 100})
        with (
            tracekit.start_span("tool", span_type="TOOL"),
            tracekit.start_span("llm", span_type="LLM") as llm,
        ):
            llm.set_token_usage(
                {
                    "input_tokens": 1,
                    "output_tokens": 2,
                    "total_tokens": 3,
                    "reasoning_tokens": 1,
                }
            )
        with tracekit.start_span("no-usage"):
            pass
    (record,) = captured.traces
    assert record["token_usage"] == {
        "input_tokens": 11,
        "output_tokens": 7,
        "total_tokens": 18,
        "reasoning_tokens": 1,
    }
    usage = {s["name"]: s.get("token_usage") for s in record["spans"]}
    assert usage == {
        "root": None,
        "chain": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
        "provider": {
            "input_tokens": 10,
            "output_tokens": 5,
            "total_tokens": 15,
            "cache_read_input_tokens": 4,
        },
        "deeper": {"input_tokens": 100, "total_tokens": 100},
        "tool": None,
        "llm": {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3, "reasoning_tokens": 1},
        "no-usage": None,
    }
    for span in record["spans"]:
        if span["name"] in ("root", "tool", "no-usage"):
            assert "token_usage" not in span


def test_absent_token_usage_stays_absent(captured):
    @tracekit.trace
    def answer():
        with tracekit.start_span("llm", span_type="LLM") as llm:
            llm.set_token_usage({})

    answer()
    (record,) = captured.traces
    assert "token_usage" not in record
    assert all("token_usage" not in span for span in record["spans"])


def test_token_usage_sum_ends_on_a_parent_cycle(captured):
    """Parent links that form a cycle (a malformed trace; tracekit's own spans never
    do) end the walk up a span's ancestors instead of looping forever."""
    with tracekit.start_span("root"):
        with tracekit.start_span("a", span_type="LLM") as a:
            a.set_token_usage({"input_tokens": 3, "total_tokens": 3})
        with tracekit.start_span("b") as b, tracekit.start_span("c") as c:
            a.parent_id, b.parent_id, c.parent_id = b.span_id, c.span_id, b.span_id
    (record,) = captured.traces
    assert record["token_usage"] == {"input_tokens": 3, "total_tokens": 3}
