"""Turn finished traces into `tracekit.trace/1` records (runs on the export worker).

Anything the application passed can be serialized: pydantic models,
dataclasses, enums, datetimes, bytes, sets, cyclic structures and objects
whose `repr` raises either become JSON-safe values or a marked placeholder.
Strings over `max_value_chars`, collections over `MAX_ITEMS` and whole traces
over `max_trace_chars` are truncated with a marker. Nothing here raises.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import math
import uuid
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from tracekit._guard import guard, internal_error

if TYPE_CHECKING:
    from tracekit._buffer import TraceState
    from tracekit._span import Span

SCHEMA = "tracekit.trace/1"
MAX_DEPTH = 32
MAX_ITEMS = 10_000
_SCALARS = (bool, type(None))
MAX_NAME_CHARS = 1_000  # names are never charged to the trace budget
MAX_INT_BITS = 4_000 * 3  # json cannot print integers of more than 4,300 digits


def marker(text: str) -> str:
    """The form of every placeholder tracekit writes into a payload."""
    return f"[tracekit: {text}]"


class _Walk:
    """One serialization pass, sharing a character budget across a trace."""

    __slots__ = ("budget", "max_chars", "path", "short")

    def __init__(self, max_chars: int, budget: int) -> None:
        self.max_chars = max_chars
        self.budget = budget
        self.path: set[int] = set()
        self.short = min(256, max_chars)

    def value(self, v: Any, depth: int = 0) -> Any:
        t = type(v)
        if t is str:
            return self.text(v)
        if t is int:
            return v if v.bit_length() <= MAX_INT_BITS else marker(f"{v.bit_length()}-bit integer")
        if t in _SCALARS:
            return v
        if t is float:
            return v if math.isfinite(v) else str(v)
        if depth >= MAX_DEPTH:
            return marker("max depth reached")
        try:
            return self._compound(v, t, depth + 1)
        except Exception:
            return self._repr(v)

    def text(self, s: str) -> str:
        n = len(s)
        if n <= self.short and n < self.budget and s.isascii():  # the common case, cheaply
            self.budget -= n
            return s
        if self.budget <= 0:
            return marker(f"trace size limit reached, {n} chars dropped")
        limit = min(self.max_chars, self.budget)
        self.budget -= min(n, limit)
        if n > limit:
            s = s[:limit] + "... " + marker(f"truncated {n - limit} chars")
        return s if s.isascii() else _valid_unicode(s)

    def _compound(self, v: Any, t: type, depth: int) -> Any:
        if t is dict or t is list:  # the common containers: `_enter` inline, no closure
            key = id(v)
            path = self.path
            if key in path:
                return marker("circular reference")
            path.add(key)
            try:
                return self._mapping(v, depth) if t is dict else self._sequence(v, depth)
            finally:
                path.discard(key)
        if isinstance(v, Mapping):
            return self._enter(v, lambda: self._mapping(v, depth))
        if isinstance(v, tuple) and hasattr(v, "_asdict"):  # namedtuple
            return self._enter(v, lambda: self._mapping(v._asdict(), depth))
        if isinstance(v, (list, tuple, set, frozenset)) or t.__name__ == "deque":
            return self._enter(v, lambda: self._sequence(v, depth))
        if isinstance(v, enum.Enum):
            return self.value(v.value, depth)
        if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
            return v.isoformat()
        if isinstance(v, datetime.timedelta):
            return v.total_seconds()
        if isinstance(v, (bytes, bytearray, memoryview)):
            return self.text(bytes(v).decode("utf-8", "backslashreplace"))
        if isinstance(v, (uuid.UUID, Decimal, PurePath)):
            return str(v)
        if isinstance(v, BaseException):
            return self.text(f"{type(v).__name__}: {v}")
        if isinstance(v, int):  # int subclasses such as IntFlag members
            return self.value(int(v), depth)
        if isinstance(v, float):
            return self.value(float(v), depth)
        if isinstance(v, str):
            return self.text(str(v))
        if isinstance(v, type):
            schema = getattr(v, "model_json_schema", None)  # a pydantic model class
            if callable(schema):
                return self._enter(v, lambda: self.value(schema(), depth))
            return f"{v.__module__}.{v.__qualname__}"
        # Look the method up on the class: instance __getattr__ (mocks, proxies)
        # must not fool us into calling something that is not there.
        if callable(getattr(t, "model_dump", None)):  # pydantic v2
            return self._enter(v, lambda: self._model(v, depth))
        if dataclasses.is_dataclass(v):
            return self._enter(
                v,
                lambda: self._mapping(
                    {f.name: getattr(v, f.name) for f in dataclasses.fields(v)}, depth
                ),
            )
        if callable(getattr(t, "dict", None)) and hasattr(t, "__fields__"):  # pydantic v1
            return self._enter(v, lambda: self.value(v.dict(), depth))
        return self._repr(v)

    def _model(self, v: Any, depth: int) -> Any:
        """A pydantic model: pydantic's own (compiled) JSON dump, parsed back (both in
        C), walked only when it is large enough to need truncating. Models holding
        arbitrary types take the slow path."""
        try:
            # serialize_as_any: a subclass stored in a field typed as its base (LangChain's
            # ChatGeneration in LLMResult.generations) keeps its own fields.
            text = v.model_dump_json(warnings=False, serialize_as_any=True)
        except Exception:
            return self.value(v.model_dump(warnings=False), depth)
        if len(text) <= self.max_chars and len(text) < self.budget:
            # No string inside can be longer than the whole: nothing to truncate.
            self.budget -= len(text)
            return _loads(text)
        return self.plain(_loads(text), depth)

    def plain(self, v: Any, depth: int = 0) -> Any:
        """Bound JSON-native data (dicts, lists, strings, numbers): no type dispatch,
        no cycle checks (JSON-native data has none)."""
        t = type(v)
        if t is str:
            if len(v) <= self.max_chars and len(v) < self.budget and v.isascii():
                self.budget -= len(v)
                return v
            return self.text(v)
        if depth >= MAX_DEPTH:
            return marker("max depth reached")
        if t is dict:
            if len(v) > MAX_ITEMS:
                return self._mapping(v, depth + 1)
            key, plain, inner = self._key, self.plain, depth + 1
            self.budget -= 8 * len(v)  # keys, roughly: the exact count is not worth its cost
            return {
                (k if type(k) is str and len(k) <= 64 and k.isascii() else key(k)): plain(x, inner)
                for k, x in v.items()
            }
        if t is list:
            if len(v) > MAX_ITEMS:
                return self._sequence(v, depth + 1)
            plain, inner = self.plain, depth + 1
            return [plain(x, inner) for x in v]
        if t is float and not math.isfinite(v):
            return str(v)
        return v if t in (int, float, bool, type(None)) else self.value(v, depth)

    def _enter(self, v: Any, build: Any) -> Any:
        key = id(v)
        if key in self.path:
            return marker("circular reference")
        self.path.add(key)
        try:
            return build()
        finally:
            self.path.discard(key)

    def _mapping(self, m: Mapping[Any, Any], depth: int) -> dict[str, Any]:
        items = list(m.items())  # one C-level snapshot, safe if another thread writes
        if len(items) <= MAX_ITEMS:
            to_key, value = self._key, self.value
            self.budget -= 8 * len(items)  # keys, roughly
            return {
                (k if type(k) is str and len(k) <= 64 and k.isascii() else to_key(k)): value(
                    x, depth
                )
                for k, x in items
            }
        out: dict[str, Any] = {}
        for i, (k, x) in enumerate(items):
            if i >= MAX_ITEMS:
                out[marker("truncated")] = f"{len(items) - i} more items"
                break
            key = self._key(k)
            out[key] = self.value(x, depth)
        return out

    def _sequence(self, s: Iterable[Any], depth: int) -> list[Any]:
        items = list(s)
        out = [self.value(x, depth) for x in items[:MAX_ITEMS]]
        if len(items) > MAX_ITEMS:
            out.append(marker(f"truncated {len(items) - MAX_ITEMS} items"))
        return out

    def _key(self, k: Any) -> str:
        """Keys are cut to MAX_NAME_CHARS and charged to the budget, never replaced
        by the budget marker (two keys must not collapse into one)."""
        key: str
        if type(k) is str:
            key = k
        else:
            try:
                key = k.value if isinstance(k, enum.Enum) and isinstance(k.value, str) else str(k)
            except Exception:
                return marker(f"unprintable {type(k).__name__} key")
        self.budget -= min(len(key), MAX_NAME_CHARS)
        if len(key) > MAX_NAME_CHARS:
            cut = len(key) - MAX_NAME_CHARS
            key = key[:MAX_NAME_CHARS] + "... " + marker(f"truncated {cut} chars")
        return key if key.isascii() else _valid_unicode(key)

    def _repr(self, v: Any) -> str:
        try:
            return self.text(repr(v))
        except Exception:
            try:
                name = type(v).__name__
            except Exception:
                name = "object"
            return marker(f"unserializable {name}")


_from_json: Callable[[str], Any]
try:  # installed with pydantic, whose models are the only callers of `_loads`
    from pydantic_core import from_json as _from_json
except ImportError:  # pragma: no cover - pydantic v1
    _from_json = json.loads


def _loads(text: str) -> Any:
    """Parse pydantic's JSON: with pydantic-core's parser (about twice as fast as
    `json.loads`, and the export worker holds the GIL meanwhile) when it can."""
    try:
        return _from_json(text)
    except ValueError:  # e.g. a lone surrogate's escape, which json.loads accepts
        return json.loads(text)


def _valid_unicode(s: str) -> str:
    """Lone surrogates (half an emoji cut by a slice) cannot be encoded anywhere:
    spell them as their `\\udXXX` escape instead."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return s.encode("utf-8", "backslashreplace").decode("utf-8")
    return s


def name(value: Any) -> str:
    """A span or trace name: a string of at most MAX_NAME_CHARS characters."""
    text = value if type(value) is str else _Walk(MAX_NAME_CHARS, MAX_NAME_CHARS).value(value)
    text = text if isinstance(text, str) else json.dumps(text)
    text = text if text.isascii() else _valid_unicode(text)
    if len(text) > MAX_NAME_CHARS:
        return (
            text[:MAX_NAME_CHARS] + "... " + marker(f"truncated {len(text) - MAX_NAME_CHARS} chars")
        )
    return text


def to_jsonable(value: Any, max_chars: int = 100_000, budget: int = 10_000_000) -> Any:
    """Return a JSON-safe copy of `value` (never raises)."""
    return _Walk(max_chars, budget).value(value)


def _fill(span: Span) -> None:
    """Run the span's deferred mapping (see `Span.defer`) with its setters open."""
    fills, span.deferred = span.deferred or [], None
    end, span.end_time_ns = span.end_time_ns, None
    try:
        for fill in fills:
            try:
                fill()
            except Exception as exc:
                internal_error(f"deferred mapping of {span.name!r}", exc)
    finally:
        span.end_time_ns = end


def sum_usage(spans: list[Span]) -> dict[str, int] | None:
    """Add up span token usage, skipping spans whose ancestor already carries usage."""
    by_id = {s.span_id: s for s in spans}
    total: dict[str, int] = {}
    for span in spans:
        if not span.token_usage:
            continue
        parent = by_id.get(span.parent_id) if span.parent_id else None
        counted_above = False
        while parent is not None:
            if parent.token_usage:
                counted_above = True
                break
            parent = by_id.get(parent.parent_id) if parent.parent_id else None
        if counted_above:
            continue
        for key, n in span.token_usage.items():
            if isinstance(n, int) and not isinstance(n, bool):
                total[key] = total.get(key, 0) + n
    return total or None


def span_record(span: Span, walk: _Walk) -> dict[str, Any]:
    record: dict[str, Any] = {
        "span_id": span.span_id,
        "parent_id": span.parent_id,
        "name": name(span.name),
        "span_type": span.span_type,
        "start_time_ns": span.start_time_ns,
        "end_time_ns": span.end_time_ns,
        "status": {"code": span.status, "message": span.status_message},
        "inputs": walk.value(span.inputs),
        "outputs": walk.value(span.outputs),
        "attributes": walk.value(dict(span.attributes)) if span.attributes else {},
        "events": walk.value(list(span.events)) if span.events else [],
    }
    if span.token_usage:
        record["token_usage"] = walk.value(dict(span.token_usage))
    return record


def trace_record(
    trace: TraceState,
    resource: Mapping[str, Any],
    max_value_chars: int,
    max_trace_chars: int,
    prices: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The `tracekit.trace/1` record of a finished trace.

    `prices` is the user's price table (`_cost.user_prices`); the price database
    prices the rest.
    """
    walk = _Walk(max_value_chars, max_trace_chars)
    spans = list(trace.spans)
    for span in spans:
        if span.deferred:
            _fill(span)
    root = trace.root if trace.root is not None else spans[0]
    metadata = dict(trace.metadata)
    if trace.dropped_spans:
        metadata["tracekit.dropped_spans"] = trace.dropped_spans
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "trace_id": trace.trace_id,
        "name": name(root.name),
        "status": root.status,
        "start_time_ns": root.start_time_ns,
        "end_time_ns": root.end_time_ns,
        "tags": {
            k: v if isinstance(v, str) else json.dumps(v)
            for k, v in walk.value(dict(trace.tags)).items()
        },
        "metadata": walk.value(metadata),
    }
    usage = sum_usage(spans)
    if usage:
        record["token_usage"] = usage
    record["resource"] = dict(resource)
    record["spans"] = [span_record(span, walk) for span in spans]
    with guard("cost"):  # estimated from the usage, like the usage counted once
        from tracekit import _cost

        _cost.add_costs(record, prices or {})
    return record
