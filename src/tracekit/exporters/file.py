"""The file store: JSON lines under a directory (the default destination).

Each finished trace (or fragment) is one line of `traces.jsonl`. Writers
append with `O_APPEND` under an exclusive `flock`, one `write` per batch, so
many threads and processes can share a store. When the file passes
`max_file_bytes` it is renamed to `traces-<UTC time>-<pid>-<n>.jsonl` and a new
one is started; readers look at every `*.jsonl` in the directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tracekit.exporters.base import (
    SUCCESS,
    BaseExporter,
    EncodedRecord,
    ExportResult,
    TraceRecord,
)

try:
    import fcntl
except ImportError:  # Windows: one process per store, threads still safe
    fcntl = None  # type: ignore[assignment]

ACTIVE_FILE = "traces.jsonl"
DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024


def _json_default(value: Any) -> str:
    # Only reachable when a span processor put something odd into a record.
    try:
        return repr(value)
    except Exception:
        return "[tracekit: unserializable]"


def _strict(value: Any) -> Any:
    raise TypeError(type(value).__name__)


_to_json: Callable[..., bytes] | None
try:  # pydantic-core comes with every supported SDK; tracekit does not require it
    from pydantic_core import to_json as _to_json
except ImportError:  # pragma: no cover - exercised only without pydantic
    _to_json = None


def encode(record: TraceRecord) -> bytes:
    """One JSON line for a record (an `EncodedRecord` is one already).

    Records are JSON-native data (`_serialize` made them so), which pydantic-core
    writes three times faster than `json.dumps`, and the export worker holds the
    GIL for every microsecond of it. What it cannot write as `json.dumps` would
    (a lone surrogate, an object a span processor added) takes the slow path.
    """
    if type(record) is EncodedRecord:
        return record.line
    if _to_json is not None:
        try:
            return _to_json(record, fallback=_strict, inf_nan_mode="constants") + b"\n"
        except Exception:  # noqa: S110 - the slow path below handles every value
            pass
    line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=_json_default)
    # A lone surrogate (half an emoji cut by a slice) is not valid UTF-8: write it
    # as the JSON escape `\udXXX` instead, which every JSON reader accepts.
    return line.encode("utf-8", "backslashreplace") + b"\n"


class FileExporter(BaseExporter):
    """Appends trace records as JSON lines to `directory/traces.jsonl`."""

    def __init__(
        self, directory: str | os.PathLike[str], max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    ) -> None:
        self.directory = Path(directory).expanduser()
        self.max_file_bytes = max_file_bytes
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    @property
    def path(self) -> Path:
        return self.directory / ACTIVE_FILE

    def export(self, traces: Sequence[TraceRecord]) -> ExportResult:
        if not traces:
            return SUCCESS
        if self._pid and self._pid != os.getpid():
            # Forked, maybe while another thread held the lock: start afresh.
            self._lock = threading.Lock()
        lines = [encode(record) for record in traces]
        written = [0]
        try:
            with self._lock:
                self._append(b"".join(lines), written)
        except OSError as exc:
            # A full disk may have taken the first records: only the rest is lost.
            whole = 0
            for line in lines:
                if written[0] < len(line):
                    break
                written[0] -= len(line)
                whole += 1
            return ExportResult(
                ok=False,
                retryable=True,
                message=f"{self.path}: {exc}",
                undelivered=traces[whole:] if whole else None,
            )
        return SUCCESS

    def encoded_record(self, record: TraceRecord) -> TraceRecord:
        """The record as its line, which is all `export` needs (`base.Encoding`)."""
        return EncodedRecord(encode(record))

    def keep(self, traces: Sequence[TraceRecord]) -> ExportResult:
        """At exit, what the worker did not reach: the store is local, so write it."""
        return self.export(traces)

    def _append(self, data: bytes, written: list[int]) -> None:
        """Append `data` under the store's lock; `written[0]` counts the bytes of
        `data` that reached the file (all of them unless a write fails)."""
        fd = self._open()
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            fd = self._current(fd)
            size = os.fstat(fd).st_size
            for _ in range(3):  # others may fill the new file before we hold its lock
                if not size or size + len(data) <= self.max_file_bytes:
                    break
                fd = self._rotate(fd)
                size = os.fstat(fd).st_size
            if size and hasattr(os, "pread") and os.pread(fd, 1, size - 1) != b"\n":
                # A writer died mid-line: end its torn line so ours stays readable.
                os.write(fd, b"\n")
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                written[0] += n
                view = view[n:]
        finally:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _open(self) -> int:
        if self._fd is not None and self._pid != os.getpid():
            # Forked: the descriptor (and its lock) is shared with the parent.
            self._close()
        if self._fd is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            self._pid = os.getpid()
        return self._fd

    def _current(self, fd: int) -> int:
        """Reopen if another process rotated the file while we waited for the lock."""
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(self.path))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        return self._reopen_locked(fd)

    def _rotate(self, fd: int) -> int:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.directory / f"traces-{stamp}-{os.getpid()}-{time.monotonic_ns()}.jsonl"
        os.rename(self.path, target)
        return self._reopen_locked(fd)

    def _reopen_locked(self, old: int) -> int:
        if fcntl is not None:
            fcntl.flock(old, fcntl.LOCK_UN)
        os.close(old)
        self._fd = None
        fd = self._open()
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        return self._current(fd) if fcntl is not None else fd

    def _close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def shutdown(self, timeout: float | None = None) -> None:
        with self._lock:
            self._close()
