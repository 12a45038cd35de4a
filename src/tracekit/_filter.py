"""MLflow's `search_traces` filter grammar: parsed once, evaluated on the file store,
or written back (with tracekit's metadata names mapped to MLflow's) for a server.

    status = 'OK' AND tags.env = 'prod' AND timestamp_ms > 1700000000000
    name LIKE 'answer%' AND execution_time_ms >= 500
    metadata.`mlflow.trace.session` = 's-1'      (or metadata.session_id = 's-1')

Clauses are joined by AND. A key is an attribute (`status`/`state`, `name`,
`timestamp_ms`/`timestamp`, `execution_time_ms`/`execution_time`, `trace_id`/
`request_id`, optionally prefixed `attributes.`/`trace.`), `tags.KEY` (`tag.`)
or `metadata.KEY` (`request_metadata.`); a key with dots or spaces goes in
backticks. Comparators: `=`, `!=`, `<`, `<=`, `>`, `>=`, `LIKE`, `ILIKE`, `IN`,
`NOT IN`. Values: 'strings', "strings", numbers, and (lists, of, them).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tracekit._entities import TraceInfo

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<op><=|>=|!=|<>|=|<|>)
      | (?P<paren>[(),])
      | (?P<word>(?:`[^`]+`|[A-Za-z_][\w]*)(?:\.(?:`[^`]+`|[A-Za-z_][\w]*))*)
    )""",
    re.VERBOSE,
)
_ATTRIBUTES = {
    "status": "status",
    "state": "status",
    "name": "name",
    "timestamp": "timestamp_ms",
    "timestamp_ms": "timestamp_ms",
    "execution_time": "execution_time_ms",
    "execution_time_ms": "execution_time_ms",
    "trace_id": "trace_id",
    "request_id": "trace_id",
}
_ATTRIBUTE_PREFIXES = ("attributes", "attribute", "attr", "trace")
_TAG_PREFIXES = ("tags", "tag")
_METADATA_PREFIXES = ("metadata", "request_metadata")
# tracekit's metadata keys and MLflow's for the same thing.
MLFLOW_METADATA = {"session_id": "mlflow.trace.session", "user_id": "mlflow.trace.user"}
_TRACEKIT_METADATA = {v: k for k, v in MLFLOW_METADATA.items()}


class FilterError(ValueError):
    """A filter string that does not parse, with where and why."""


@dataclass(frozen=True)
class Clause:
    kind: str  # "attribute", "tag" or "metadata"
    key: str
    op: str
    value: Any


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", r"\1", body)


def _key(word: str) -> tuple[str, str]:
    parts = [p[1:-1] if p.startswith("`") else p for p in re.findall(r"`[^`]+`|[^.]+", word)]
    head = parts[0].lower()
    if len(parts) > 1 and head in _TAG_PREFIXES:
        return "tag", ".".join(parts[1:])
    if len(parts) > 1 and head in _METADATA_PREFIXES:
        return "metadata", ".".join(parts[1:])
    if len(parts) == 2 and head in _ATTRIBUTE_PREFIXES:
        parts = parts[1:]
    name = parts[0].lower() if len(parts) == 1 else ""
    if name not in _ATTRIBUTES:
        raise FilterError(
            f"unknown key {word!r}: use one of {', '.join(sorted(_ATTRIBUTES))}, "
            "tags.KEY or metadata.KEY"
        )
    return "attribute", _ATTRIBUTES[name]


def parse(text: str | None) -> list[Clause]:
    """The clauses of a filter string (raises FilterError)."""
    if text is None or not text.strip():
        return []
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            if not text[pos:].strip():
                break
            raise FilterError(f"cannot parse the filter at {text[pos:]!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    clauses: list[Clause] = []
    i = 0
    while i < len(tokens):
        if clauses:
            if tokens[i] != ("word", tokens[i][1]) or tokens[i][1].upper() != "AND":
                raise FilterError(f"expected AND before {tokens[i][1]!r} (only AND joins clauses)")
            i += 1
        if i >= len(tokens) or tokens[i][0] != "word":
            raise FilterError(f"expected a key in {text!r}")
        kind, key = _key(tokens[i][1])
        i += 1
        op, i = _operator(tokens, i, text)
        value, i = _value(tokens, i, op, text)
        clauses.append(Clause(kind, key, op, value))
    return clauses


def _operator(tokens: list[tuple[str, str]], i: int, text: str) -> tuple[str, int]:
    if i < len(tokens) and tokens[i][0] == "op":
        return ("!=" if tokens[i][1] == "<>" else tokens[i][1]), i + 1
    if i < len(tokens) and tokens[i][0] == "word":
        word = tokens[i][1].upper()
        if word in ("LIKE", "ILIKE", "IN"):
            return word, i + 1
        if word == "NOT" and i + 1 < len(tokens) and tokens[i + 1][1].upper() == "IN":
            return "NOT IN", i + 2
    raise FilterError(f"expected a comparator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN) in {text!r}")


def _scalar(token: tuple[str, str], text: str) -> Any:
    kind, raw = token
    if kind == "string":
        return _unquote(raw)
    if kind == "number":
        return float(raw) if "." in raw else int(raw)
    raise FilterError(f"expected a 'quoted string' or a number, not {raw!r}, in {text!r}")


def _value(tokens: list[tuple[str, str]], i: int, op: str, text: str) -> tuple[Any, int]:
    if i >= len(tokens):
        raise FilterError(f"expected a value at the end of {text!r}")
    if op not in ("IN", "NOT IN"):
        return _scalar(tokens[i], text), i + 1
    if tokens[i] != ("paren", "("):
        raise FilterError(f"expected ( after {op} in {text!r}")
    values, i = [], i + 1
    while i < len(tokens) and tokens[i] != ("paren", ")"):
        if tokens[i] != ("paren", ","):
            values.append(_scalar(tokens[i], text))
        i += 1
    if i >= len(tokens):
        raise FilterError(f"missing ) in {text!r}")
    return values, i + 1


# -- evaluation on the file store ------------------------------------------------------


def _like(pattern: str, flags: int) -> re.Pattern[str]:
    parts = [".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern]
    return re.compile("".join(parts), flags | re.DOTALL)


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "LIKE": lambda a, b: _like(str(b), 0).fullmatch(str(a)) is not None,
    "ILIKE": lambda a, b: _like(str(b), re.IGNORECASE).fullmatch(str(a)) is not None,
    "IN": lambda a, b: a in b,
    "NOT IN": lambda a, b: a not in b,
}


def _actual(clause: Clause, info: TraceInfo) -> Any:
    if clause.kind == "tag":
        return info.tags.get(clause.key)
    if clause.kind == "metadata":
        other = MLFLOW_METADATA.get(clause.key) or _TRACEKIT_METADATA.get(clause.key)
        value = info.metadata.get(clause.key, info.metadata.get(other) if other else None)
        return None if value is None else str(value)
    return {
        "status": info.state,
        "name": info.name,
        "timestamp_ms": info.request_time,
        "execution_time_ms": info.execution_duration,
        "trace_id": info.trace_id,
    }[clause.key]


def matches(clauses: list[Clause], info: TraceInfo) -> bool:
    """Whether a trace passes every clause (a missing value passes none but `!=`)."""
    for clause in clauses:
        actual = _actual(clause, info)
        if actual is None:
            if clause.op in ("!=", "NOT IN"):
                continue
            return False
        try:
            if not _COMPARE[clause.op](actual, clause.value):
                return False
        except TypeError:  # e.g. a number compared with a string
            return False
    return True


# -- written back for a tracking server --------------------------------------------------


def _quote(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return str(value)


def _mlflow_id(value: Any) -> Any:
    return "tr-" + value if isinstance(value, str) and len(value) == 32 else value


def to_mlflow(clauses: list[Clause]) -> str:
    """The filter in the form an MLflow server evaluates (tracekit's metadata names mapped)."""
    parts = []
    for clause in clauses:
        if clause.kind == "attribute":
            key = "trace.request_id" if clause.key == "trace_id" else "trace." + clause.key
        elif clause.kind == "tag":
            key = f"tags.`{clause.key}`"
        else:
            key = f"metadata.`{MLFLOW_METADATA.get(clause.key, clause.key)}`"
        value = clause.value
        if clause.kind == "attribute" and clause.key == "trace_id":  # MLflow's `tr-<hex>` form
            value = [_mlflow_id(v) for v in value] if isinstance(value, list) else _mlflow_id(value)
        if isinstance(value, list):
            rendered = "(" + ", ".join(_quote(v) for v in value) + ")"
        else:
            rendered = _quote(value)
        parts.append(f"{key} {clause.op} {rendered}")
    return " AND ".join(parts)


def order_key(order_by: list[str] | None) -> list[tuple[str, bool]]:
    """`["timestamp_ms DESC", "name"]` as (field, descending) pairs, for the file store."""
    keys: list[tuple[str, bool]] = []
    for item in order_by or []:
        words = item.split()
        if not words or len(words) > 2:
            raise FilterError(f"cannot order by {item!r}")
        kind, key = _key(words[0])
        if kind != "attribute":
            raise FilterError(f"cannot order by {item!r}: only by trace attributes")
        direction = words[1].upper() if len(words) == 2 else "ASC"
        if direction not in ("ASC", "DESC"):
            raise FilterError(f"cannot order by {item!r}: ASC or DESC")
        keys.append((key, direction == "DESC"))
    return keys
