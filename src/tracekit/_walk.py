"""Any value the application passed, as JSON-safe data (runs on the export worker).

Pydantic models, dataclasses, enums, datetimes, bytes, sets, cyclic structures and
objects whose `repr` raises either become JSON-safe values or a marked placeholder.
Strings over `max_value_chars`, collections over `MAX_ITEMS` and whole traces over
`max_trace_chars` (one `_Walk` shares its budget across a trace) are truncated with a
marker. Nothing here raises. The records built from these values are `_serialize`'s.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import math
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import Any

MAX_DEPTH = 32
MAX_ITEMS = 10_000
_SCALARS = (bool, type(None))
MAX_NAME_CHARS = 1_000  # names are never charged to the trace budget
MAX_INT_BITS = 4_000 * 3  # json cannot print integers of more than 4,300 digits


def marker(text: str) -> str:
    """The form of every placeholder tracekit writes into a payload."""
    return f"[tracekit: {text}]"


# What `_Walk._compound` does with a value, decided once per type (`_kind_of`): the
# chain of `isinstance` checks (several of them against ABCs) costs more than the
# serialization of a small value itself.
(
    _MODEL,
    _MAPPING,
    _TUPLE,
    _SEQUENCE,
    _ENUM,
    _ISOFORMAT,
    _TIMEDELTA,
    _BYTES,
    _STR,
    _EXCEPTION,
    _INT,
    _FLOAT,
    _STR_SUBCLASS,
    _TYPE,
    _DATACLASS,
    _PYDANTIC_V1,
    _OTHER,
) = range(17)
# id(type) -> (a weak reference to it, its kind): a class made at run time (a pydantic
# model per request, say) is not kept alive by this table, nor mistaken for another
# that later gets its id.
_KINDS: dict[int, tuple[weakref.ref[type], int]] = {}
_MAX_KINDS = 1_000  # types seen; beyond that the table starts again


def _kind_of(t: type) -> int:
    """The `_compound` branch for values of type `t` (the order of the checks matters:
    an IntEnum member is an enum before it is an int)."""
    kind = _OTHER
    if issubclass(t, Mapping):
        kind = _MAPPING
    elif issubclass(t, tuple):
        kind = _TUPLE  # a namedtuple if it has `_asdict`
    elif issubclass(t, (list, set, frozenset)) or t.__name__ == "deque":
        kind = _SEQUENCE
    elif issubclass(t, enum.Enum):
        kind = _ENUM
    elif issubclass(t, (datetime.datetime, datetime.date, datetime.time)):
        kind = _ISOFORMAT
    elif issubclass(t, datetime.timedelta):
        kind = _TIMEDELTA
    elif issubclass(t, (bytes, bytearray, memoryview)):
        kind = _BYTES
    elif issubclass(t, (uuid.UUID, Decimal, PurePath)):
        kind = _STR
    elif issubclass(t, BaseException):
        kind = _EXCEPTION
    elif issubclass(t, int):
        kind = _INT
    elif issubclass(t, float):
        kind = _FLOAT
    elif issubclass(t, str):
        kind = _STR_SUBCLASS
    elif issubclass(t, type):
        kind = _TYPE
    # Look the method up on the class: instance __getattr__ (mocks, proxies) must not
    # fool us into calling something that is not there.
    elif callable(getattr(t, "model_dump", None)):
        kind = _MODEL  # pydantic v2
    elif dataclasses.is_dataclass(t):
        kind = _DATACLASS
    elif callable(getattr(t, "dict", None)) and hasattr(t, "__fields__"):  # pydantic v1
        kind = _PYDANTIC_V1
    if len(_KINDS) >= _MAX_KINDS:
        _KINDS.clear()
    _KINDS[id(t)] = (weakref.ref(t), kind)  # every class takes weak references
    return kind


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
        known = _KINDS.get(id(t))
        kind = known[1] if known is not None and known[0]() is t else _kind_of(t)
        if kind == _MODEL:
            return self._model(v, depth)
        if kind == _MAPPING:
            return self._enter(v, lambda: self._mapping(v, depth))
        if kind == _TUPLE and hasattr(v, "_asdict"):  # namedtuple
            return self._enter(v, lambda: self._mapping(v._asdict(), depth))
        if kind in (_TUPLE, _SEQUENCE):
            return self._enter(v, lambda: self._sequence(v, depth))
        if kind == _ENUM:
            return self.value(v.value, depth)
        if kind == _ISOFORMAT:
            return v.isoformat()
        if kind == _TIMEDELTA:
            return v.total_seconds()
        if kind == _BYTES:
            return self.text(bytes(v).decode("utf-8", "backslashreplace"))
        if kind == _STR:  # uuid, Decimal, paths
            return str(v)
        if kind == _EXCEPTION:
            return self.text(f"{type(v).__name__}: {v}")
        if kind == _INT:  # int subclasses such as IntFlag members
            return self.value(int(v), depth)
        if kind == _FLOAT:
            return self.value(float(v), depth)
        if kind == _STR_SUBCLASS:
            return self.text(str(v))
        if kind == _TYPE:
            schema = getattr(v, "model_json_schema", None)  # a pydantic model class
            if callable(schema):
                return self._enter(v, lambda: self.value(schema(), depth))
            return f"{v.__module__}.{v.__qualname__}"
        if kind == _DATACLASS:
            return self._enter(
                v,
                lambda: self._mapping(
                    {f.name: getattr(v, f.name) for f in dataclasses.fields(v)}, depth
                ),
            )
        if kind == _PYDANTIC_V1:
            return self._enter(v, lambda: self.value(v.dict(), depth))
        return self._repr(v)

    def _model(self, v: Any, depth: int) -> Any:
        """A pydantic model: pydantic's own (compiled) JSON dump, parsed back (both in
        C), walked only when it is large enough to need truncating. Models holding
        arbitrary types (or a cycle, which pydantic refuses) take the slow path."""
        try:
            # serialize_as_any: a subclass stored in a field typed as its base (LangChain's
            # ChatGeneration in LLMResult.generations) keeps its own fields.
            serializer = getattr(type(v), "__pydantic_serializer__", None)
            if serializer is None:  # something else with a `model_dump` (a v1 shim, say)
                text: str | bytes = v.model_dump_json(warnings=False, serialize_as_any=True)
            else:  # the same dump, without `model_dump_json`'s call to `bytes.decode`
                text = serializer.to_json(v, warnings=False, serialize_as_any=True)
        except Exception:
            return self._enter(v, lambda: self.value(v.model_dump(warnings=False), depth))
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
            to_key, value, short = self._key, self.value, self.short
            self.budget -= 8 * len(items)  # keys, roughly
            out: dict[str, Any] = {}
            for k, x in items:
                if type(k) is not str or len(k) > 64 or not k.isascii():
                    k = to_key(k)
                # `value`'s common cases inline (short strings, None, booleans, ints):
                # one call fewer per item of every dict the worker serializes.
                t = type(x)
                if t is str:
                    n = len(x)
                    if n <= short and n < self.budget and x.isascii():
                        self.budget -= n
                        out[k] = x
                        continue
                elif x is None or t is bool or (t is int and x.bit_length() <= MAX_INT_BITS):
                    out[k] = x
                    continue
                out[k] = value(x, depth)
            return out
        out = {}
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


_from_json: Callable[[str | bytes], Any]
try:  # installed with pydantic, whose models are the only callers of `_loads`
    from pydantic_core import from_json as _from_json
except ImportError:  # pragma: no cover - pydantic v1
    _from_json = json.loads


def _loads(text: str | bytes) -> Any:
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
