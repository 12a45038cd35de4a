"""A SQLite index of a file store, so the viewer lists a big store fast.

The store is append-only JSON lines, rotated by renaming (`exporters/file.py`).
The index remembers, per file, its identity (device and inode, which a rename
keeps) and how many bytes it has read, and reads only what was appended since:
a 100,000-trace store is parsed once, and every later open reads the few new
lines. A file that shrank, changed its first bytes or vanished (someone edited or
deleted it: tracekit never does) makes the index start over.

The index lives in the user's cache directory (`$XDG_CACHE_HOME/tracekit/ui/`,
one database per store path), not in the store: the viewer never writes to the
store, which may be read-only or shared. A trace's full record is read back from
its lines by offset, so the index holds only what the list filters and sorts on.

Feedback and expectations (`assessments.jsonl`, beside the traces but not trace
lines) are not indexed: `tracekit._read.assessment_records` reads that file,
and the result is kept until the file changes (its size, inode or mtime), which
also counts as news for the pages that wait on the store.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracekit import _store
from tracekit._read import ASSESSMENTS_FILE, assessment_records

_loads: Callable[[bytes], Any]
try:  # pydantic-core (installed with every SDK) parses a store's lines 1.5x faster
    from pydantic_core import from_json as _loads
except ImportError:  # pragma: no cover - tracekit does not require it
    _loads = json.loads

SCHEMA = 1
HEAD = 256  # first bytes of a file, to notice a file replaced under the same inode
BLOCK = 16 * 1024 * 1024
MAX_PAGE = 500

_TABLES = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS files(
    ident TEXT PRIMARY KEY, name TEXT, size INTEGER, head BLOB, bad INTEGER);
CREATE TABLE IF NOT EXISTS fragments(trace_id TEXT, ident TEXT, start INTEGER, length INTEGER);
CREATE INDEX IF NOT EXISTS fragments_trace ON fragments(trace_id);
CREATE TABLE IF NOT EXISTS traces(
    trace_id TEXT PRIMARY KEY, name TEXT, status TEXT, start_ns INTEGER, end_ns INTEGER,
    duration_ns INTEGER, spans INTEGER, tokens INTEGER, cost REAL, session TEXT, user TEXT,
    root INTEGER);
CREATE INDEX IF NOT EXISTS traces_start ON traces(start_ns, trace_id);
CREATE INDEX IF NOT EXISTS traces_duration ON traces(duration_ns, trace_id);
CREATE INDEX IF NOT EXISTS traces_tokens ON traces(tokens, trace_id);
CREATE INDEX IF NOT EXISTS traces_cost ON traces(cost, trace_id);
CREATE INDEX IF NOT EXISTS traces_session ON traces(session, start_ns);
CREATE TABLE IF NOT EXISTS tags(trace_id TEXT, key TEXT, value TEXT, PRIMARY KEY(trace_id, key));
CREATE INDEX IF NOT EXISTS tags_kv ON tags(key, value, trace_id);
CREATE TABLE IF NOT EXISTS models(trace_id TEXT, model TEXT, PRIMARY KEY(trace_id, model));
CREATE INDEX IF NOT EXISTS models_model ON models(model, trace_id);
"""

# A fragment of a trace already indexed (a fork, a late span) folds into its row.
_UPSERT = """
INSERT INTO traces VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(trace_id) DO UPDATE SET
    name = CASE WHEN excluded.root AND NOT root THEN excluded.name ELSE name END,
    status = CASE WHEN excluded.root AND NOT root THEN excluded.status ELSE status END,
    start_ns = min(coalesce(start_ns, excluded.start_ns), coalesce(excluded.start_ns, start_ns)),
    end_ns = max(coalesce(end_ns, excluded.end_ns), coalesce(excluded.end_ns, end_ns)),
    spans = spans + excluded.spans,
    tokens = CASE WHEN tokens IS NULL AND excluded.tokens IS NULL THEN NULL
                  ELSE coalesce(tokens, 0) + coalesce(excluded.tokens, 0) END,
    cost = CASE WHEN cost IS NULL AND excluded.cost IS NULL THEN NULL
                ELSE coalesce(cost, 0) + coalesce(excluded.cost, 0) END,
    session = coalesce(excluded.session, session),
    user = coalesce(excluded.user, user),
    root = root OR excluded.root,
    duration_ns = max(coalesce(end_ns, excluded.end_ns), coalesce(excluded.end_ns, end_ns))
        - min(coalesce(start_ns, excluded.start_ns), coalesce(excluded.start_ns, start_ns))
"""
BATCH = 2000  # records per round of executemany calls

_LIST = "trace_id, name, status, start_ns, end_ns, duration_ns, spans, tokens, cost, session, user"
SORTS = {"start": "start_ns", "duration": "duration_ns", "tokens": "tokens", "cost": "cost"}


def default_path(store: Path) -> Path:
    """Where the index of `store` lives: one database per store in the cache dir."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    key = hashlib.sha256(str(store.resolve()).encode()).hexdigest()[:20]
    return Path(base) / "tracekit" / "ui" / f"{key}.sqlite"


@dataclass
class Query:
    """What the trace list asks for; every filter is optional."""

    text: str = ""  # part of the name, or the start of a trace id
    status: str = ""
    tag: str = ""  # "key" or "key=value"
    session: str = ""
    user: str = ""
    model: str = ""
    since_ns: int | None = None
    until_ns: int | None = None
    sort: str = "start"
    ascending: bool = False
    offset: int = 0
    limit: int = 50


def _models(record: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for span in record["spans"]:
        attributes = span.get("attributes") or {}
        for key in ("gen_ai.request.model", "gen_ai.response.model"):
            if isinstance(attributes.get(key), str):
                found.add(attributes[key])
        inputs = span.get("inputs")
        if isinstance(inputs, dict) and isinstance(inputs.get("model"), str):
            found.add(inputs["model"])
    return found


def _number(value: Any) -> float | None:
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if is_number else None


def _row(record: dict[str, Any]) -> tuple[Any, ...]:
    spans = record["spans"]
    usage = record.get("token_usage") if isinstance(record.get("token_usage"), dict) else {}
    cost = record.get("cost") if isinstance(record.get("cost"), dict) else {}
    tokens = _number((usage or {}).get("total_tokens"))
    meta = record.get("metadata") if isinstance(record.get("metadata"), dict) else {}
    session, user = (meta or {}).get("session_id"), (meta or {}).get("user_id")
    start, end = record.get("start_time_ns"), record.get("end_time_ns")
    return (
        record["trace_id"],
        str(record.get("name") or ""),
        str(record.get("status") or ""),
        start if start is not None else 0,  # never NULL: the list's order uses the index
        end,
        end - start if start is not None and end is not None else None,
        len(spans),
        int(tokens) if tokens is not None else None,
        _number((cost or {}).get("total_cost")),
        str(session) if session is not None else None,
        str(user) if user is not None else None,
        bool(spans) and spans[0].get("parent_id") is None,
    )


class StoreIndex:
    """The index of one store; safe to share between the server's threads."""

    def __init__(self, store: Path, path: Path | None = None) -> None:
        self.store = store
        self.path = path or default_path(store)
        self.generation = 0  # grows whenever new lines were indexed
        self._lock = threading.RLock()
        self._checked = 0.0
        self._db = self._connect()
        # assessments.jsonl: (device, inode, size, mtime) when read, and what it held
        self._feedback_stamp: tuple[int, ...] | None = None
        self._feedback: dict[str, list[dict[str, Any]]] = {}

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
        except (OSError, sqlite3.Error):  # no writable cache: index in memory for this run
            self.path = Path(":memory:")
            db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA synchronous=OFF")  # a cache: a crash costs a rebuild, nothing else
        db.executescript(_TABLES)
        version = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if version is None or version[0] != str(SCHEMA):
            self._clear(db)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA),))
        return db

    @staticmethod
    def _clear(db: sqlite3.Connection) -> None:
        for table in ("files", "fragments", "traces", "tags", "models"):
            db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- keeping up with the store ---------------------------------------------------

    def refresh(self, min_interval: float = 0.0) -> bool:
        """Index what was appended since the last call; True if anything was."""
        with self._lock:
            now = time.monotonic()
            if now - self._checked < min_interval:
                return False
            self._checked = now
            try:
                changed = self._refresh()
            except sqlite3.Error:  # a damaged cache file: start over in memory
                self._db.close()
                self.path = Path(":memory:")
                self._db = self._connect()
                changed = self._refresh()
            changed |= self._feedback_changed()
            if changed:
                self.generation += 1
            return changed

    def _feedback_changed(self) -> bool:
        """Re-read assessments.jsonl if it changed since the last look."""
        try:
            stat = (self.store / ASSESSMENTS_FILE).stat()
            stamp: tuple[int, ...] | None = (
                stat.st_dev,
                stat.st_ino,
                stat.st_size,
                stat.st_mtime_ns,
            )
        except OSError:
            stamp = None
        if stamp == self._feedback_stamp:
            return False
        self._feedback_stamp = stamp
        self._feedback = assessment_records(self.store) if stamp else {}
        return True

    def _files(self) -> dict[str, tuple[Path, int]]:
        found: dict[str, tuple[Path, int]] = {}
        with contextlib.suppress(OSError):
            for path in self.store.glob("*.jsonl"):
                if path.name == ASSESSMENTS_FILE:  # feedback lines, not trace records
                    continue
                try:
                    stat = path.stat()
                except OSError:  # rotated away since the listing
                    continue
                found[f"{stat.st_dev}:{stat.st_ino}"] = (path, stat.st_size)
        return found

    def _refresh(self) -> bool:
        db = self._db
        files = self._files()
        known = {
            ident: (size, head)
            for ident, size, head in db.execute("SELECT ident, size, head FROM files")
        }
        rebuild = any(ident not in files for ident in known)
        for ident, (path, size) in files.items():
            if ident in known:
                done, head = known[ident]
                rebuild |= size < done or not _head(path).startswith(head)
        if rebuild:
            db.execute("BEGIN")
            self._clear(db)
            db.execute("COMMIT")
            known = {}
        changed = rebuild
        # Oldest first, as `_store.load` reads them, so a fragment's root wins the name.
        for ident, (path, size) in sorted(files.items(), key=lambda kv: _store._age(kv[1][0])):
            done = known.get(ident, (0, b""))[0]
            if ident in known:
                db.execute("UPDATE files SET name = ? WHERE ident = ?", (path.name, ident))
            if size > done:
                changed |= self._index_file(ident, path, done, ident not in known)
        return changed

    def _index_file(self, ident: str, path: Path, offset: int, new: bool) -> bool:
        db = self._db
        try:
            handle = path.open("rb")
        except OSError:
            return False
        with handle:
            db.execute("BEGIN")
            try:
                added, bad, end = self._read_lines(handle, ident, path, offset, new)
            except OSError:  # the file went away mid-read: keep what the index had
                db.execute("ROLLBACK")
                return False
            except BaseException:  # Ctrl-C during a first indexing: nothing half-written
                db.execute("ROLLBACK")
                raise
            db.execute(
                "UPDATE files SET size = ?, head = ?, bad = bad + ? WHERE ident = ?",
                (end, _head(path), bad, ident),
            )
            db.execute("COMMIT")
        return bool(added or bad)

    def _read_lines(
        self, handle: Any, ident: str, path: Path, offset: int, new: bool
    ) -> tuple[int, int, int]:
        """Index the complete lines from `offset`: (records, bad lines, where they end)."""
        db = self._db
        added = bad = 0
        end = offset
        if new:
            db.execute("INSERT INTO files VALUES (?, ?, 0, ?, 0)", (ident, path.name, b""))
        handle.seek(offset)
        batch = _Batch()
        for start, line in _lines(handle, offset):
            end = start + len(line)
            try:
                record = _loads(line)
            except ValueError:
                record = None
            if not _store._well_formed(record):
                bad += 1 if line.strip() else 0
                continue
            batch.add(record, ident, start, len(line))
            added += 1
            if len(batch.traces) >= BATCH:
                batch.flush(db)
        batch.flush(db)
        return added, bad, end

    # -- reading ---------------------------------------------------------------------

    def skipped(self) -> int:
        """Lines of the store that are not trace records (torn or corrupt)."""
        with self._lock:
            return int(self._db.execute("SELECT coalesce(sum(bad), 0) FROM files").fetchone()[0])

    def search(self, query: Query) -> tuple[int, list[dict[str, Any]]]:
        """The total number of matches and one page of trace summaries."""
        where, params = _where(query)
        column = SORTS.get(query.sort, "start_ns")
        order = "ASC" if query.ascending else "DESC"
        limit = max(1, min(query.limit, MAX_PAGE))
        # Every ORDER BY matches an index (column, trace_id): a page is read off the
        # index, not sorted, however big the store.
        sql = f"SELECT {_LIST} FROM traces t {where} ORDER BY {column} {order}, trace_id {order}"  # noqa: S608 - fixed parts, values bound
        with self._lock:
            total = self._db.execute(f"SELECT count(*) FROM traces t {where}", params).fetchone()  # noqa: S608
            rows = self._db.execute(
                sql + " LIMIT ? OFFSET ?", [*params, limit, max(0, query.offset)]
            ).fetchall()
            return int(total[0]), [self._summary(row) for row in rows]

    def _summary(self, row: tuple[Any, ...]) -> dict[str, Any]:
        keys = [
            "trace_id",
            "name",
            "status",
            "start_time_ns",
            "end_time_ns",
            "duration_ns",
            "span_count",
            "total_tokens",
            "total_cost",
            "session_id",
            "user_id",
        ]
        summary = dict(zip(keys, row, strict=True))
        trace_id = row[0]
        summary["tags"] = dict(
            self._db.execute("SELECT key, value FROM tags WHERE trace_id = ?", (trace_id,))
        )
        summary["assessments"] = len(self._feedback.get(trace_id, ()))
        summary["models"] = sorted(
            m
            for (m,) in self._db.execute("SELECT model FROM models WHERE trace_id = ?", (trace_id,))
        )
        return summary

    def facets(self) -> dict[str, list[str]]:
        """Values the filters can take: statuses, models, tag keys."""
        with self._lock:
            db = self._db
            return {
                "status": [
                    s for (s,) in db.execute("SELECT DISTINCT status FROM traces ORDER BY 1")
                ],
                "model": [m for (m,) in db.execute("SELECT DISTINCT model FROM models ORDER BY 1")],
                "tag": [k for (k,) in db.execute("SELECT DISTINCT key FROM tags ORDER BY 1")],
            }

    def sessions(self, offset: int = 0, limit: int = 50) -> tuple[int, list[dict[str, Any]]]:
        """Sessions, the most recently active first."""
        with self._lock:
            db = self._db
            total = db.execute(
                "SELECT count(DISTINCT session) FROM traces WHERE session IS NOT NULL"
            ).fetchone()[0]
            rows = db.execute(
                "SELECT session, count(*), min(start_ns), max(end_ns), max(user), sum(tokens), "
                "sum(cost) "
                "FROM traces WHERE session IS NOT NULL GROUP BY session "
                "ORDER BY max(start_ns) DESC LIMIT ? OFFSET ?",
                (max(1, min(limit, MAX_PAGE)), max(0, offset)),
            ).fetchall()
        keys = (
            "session_id",
            "trace_count",
            "start_time_ns",
            "end_time_ns",
            "user_id",
            "tokens",
            "cost",
        )
        return int(total), [dict(zip(keys, row, strict=True)) for row in rows]

    def session_trace_ids(
        self, session: str, offset: int = 0, limit: int = 200
    ) -> tuple[int, list[str]]:
        """How many traces a session has, and a page of them in the order they started."""
        with self._lock:
            total = self._db.execute(
                "SELECT count(*) FROM traces WHERE session = ?", (session,)
            ).fetchone()
            rows = self._db.execute(
                "SELECT trace_id FROM traces WHERE session = ? ORDER BY start_ns, trace_id "
                "LIMIT ? OFFSET ?",
                (session, max(1, min(limit, MAX_PAGE)), max(0, offset)),
            ).fetchall()
        return int(total[0]), [r[0] for r in rows]

    def get(self, trace_id: str) -> dict[str, Any] | None:
        """One trace's full record, read back from its lines (fragments merged), with
        the feedback and expectations logged on it under "assessments" as `tracekit
        show` merges them."""
        for attempt in range(2):
            record = self._read(trace_id)
            if record is not None:
                found = self.assessments(trace_id)
                return {**record, "assessments": found} if found else record
            if attempt:
                return None
            self.refresh()  # a file rotated between the index and the read
        return None

    def assessments(self, trace_id: str) -> list[dict[str, Any]]:
        """The feedback and expectations logged on one trace, oldest first."""
        with self._lock:
            if self._feedback_stamp is None and not self._feedback:
                self._feedback_changed()
            return list(self._feedback.get(trace_id, []))

    def resolve(self, prefix: str) -> list[str]:
        """Trace ids that start with `prefix` (at most two: enough to see ambiguity)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT trace_id FROM traces WHERE trace_id >= ? AND trace_id < ? LIMIT 2",
                (prefix, prefix + "\uffff"),
            ).fetchall()
        return [r[0] for r in rows]

    def _read(self, trace_id: str) -> dict[str, Any] | None:
        with self._lock:
            where = self._db.execute(
                "SELECT f.name, g.start, g.length FROM fragments g JOIN files f USING (ident) "
                "WHERE g.trace_id = ? ORDER BY g.rowid",
                (trace_id,),
            ).fetchall()
        if not where:
            return None
        fragments = []
        for name, start, length in where:
            try:
                with (self.store / name).open("rb") as handle:
                    handle.seek(start)
                    record = json.loads(handle.read(length))
            except (OSError, ValueError):
                return None
            if not _store._well_formed(record) or record["trace_id"] != trace_id:
                return None
            fragments.append(record)
        return _store.merge(fragments)


class _Batch:
    """Rows for many records, written with one executemany per table (in order, so
    a trace's fragments still fold into its row one after the other)."""

    def __init__(self) -> None:
        self.traces: list[tuple[Any, ...]] = []
        self.fragments: list[tuple[str, str, int, int]] = []
        self.tags: list[tuple[str, str, str]] = []
        self.models: list[tuple[str, str]] = []

    def add(self, record: dict[str, Any], ident: str, start: int, length: int) -> None:
        row = _row(record)
        trace_id = row[0]
        self.traces.append(row)
        self.fragments.append((trace_id, ident, start, length))
        tags = record.get("tags")
        if isinstance(tags, dict):
            self.tags += [(trace_id, str(k), str(v)) for k, v in tags.items()]
        self.models += [(trace_id, m) for m in _models(record)]

    def flush(self, db: sqlite3.Connection) -> None:
        db.executemany(_UPSERT, self.traces)
        db.executemany("INSERT INTO fragments VALUES (?, ?, ?, ?)", self.fragments)
        db.executemany("INSERT OR REPLACE INTO tags VALUES (?, ?, ?)", self.tags)
        db.executemany("INSERT OR IGNORE INTO models VALUES (?, ?)", self.models)
        self.traces, self.fragments, self.tags, self.models = [], [], [], []


def _head(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(HEAD)
    except OSError:
        return b""


def _lines(handle: Any, offset: int) -> Iterator[tuple[int, bytes]]:
    """Complete lines (with their start offsets) from `offset`; a torn tail waits."""
    carry = b""
    position = offset
    while True:
        block = handle.read(BLOCK)
        if not block:
            return
        data = carry + block
        cut = data.rfind(b"\n") + 1
        carry = data[cut:]
        start = 0
        for line in data[:cut].splitlines(keepends=True):
            yield position + start, line
            start += len(line)
        position += cut


def _where(query: Query) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if query.text:
        clauses.append("(t.name LIKE ? ESCAPE '\\' OR substr(t.trace_id, 1, ?) = ?)")
        escaped = query.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        prefix = query.text.lower().removeprefix("tr-")
        params += [f"%{escaped}%", len(prefix), prefix]
    for column, value in (("status", query.status), ("session", query.session)):
        if value:
            clauses.append(f"t.{column} = ?")
            params.append(value)
    if query.user:
        clauses.append("t.user = ?")
        params.append(query.user)
    # IN (subquery) lets SQLite build the matching set once from the (key, value) index.
    if query.tag:
        key, has_value, value = query.tag.partition("=")
        if has_value:
            clauses.append("t.trace_id IN (SELECT trace_id FROM tags WHERE key = ? AND value = ?)")
            params += [key.strip(), value.strip()]
        else:
            clauses.append("t.trace_id IN (SELECT trace_id FROM tags WHERE key = ?)")
            params.append(key.strip())
    if query.model:
        clauses.append("t.trace_id IN (SELECT trace_id FROM models WHERE model = ?)")
        params.append(query.model)
    if query.since_ns is not None:
        clauses.append("t.start_ns >= ?")
        params.append(query.since_ns)
    if query.until_ns is not None:
        clauses.append("t.start_ns <= ?")
        params.append(query.until_ns)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params
