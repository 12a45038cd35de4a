"""The spool: batches a destination could not take, kept on disk until it can.

One directory per destination under `TRACEKIT_SPOOL_DIR` (default
`.tracekit/spool`), named after it, holding `destination.json` (the URI and
experiment, never credentials) and one JSON-lines file per batch, in the file
store's format. A batch is written to a temporary name and renamed into
place, so readers never see half a file. A deliverer claims a file by
renaming it (`*.claimed-<pid>-<token>`, the token telling this process from
an earlier one that had the same pid, as happens across container
restarts), which only one process can do; it deletes the file once
delivered and renames it back otherwise. Claims of a process that is gone,
and claims older than `STALE_CLAIM_S`, are taken back. Lines that do not
parse (a torn write, garbage) are skipped. A batch the destination refused
as such, and a poison record (refused on its own), is set aside as
`*.rejected` for a human to look at (`tracekit upload` lists them). The
total size is bounded: of a batch that does not fit, the oldest records
that fit are kept and the rest refused (the caller counts them).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracekit._store import parse_line
from tracekit.exporters.base import TraceRecord
from tracekit.exporters.file import encode

DEFAULT_SPOOL_DIR = os.path.join(".tracekit", "spool")
DESTINATION_FILE = "destination.json"
REJECTED_SUFFIX = ".rejected"
STALE_CLAIM_S = 900.0  # no delivery holds a claim this long
_SUFFIX = ".jsonl"
_CLAIMED = re.compile(r"\.claimed-(\d+)(?:-([0-9a-f]+))?$")
_TEMPORARY = re.compile(r"^\..+\.(\d+)-\d+\.tmp$")  # see _write()
_counter = itertools.count()
_token: tuple[int, str] = (0, "")


def _claim_token() -> str:
    """`<pid>-<random>`, new in every process (a forked child included)."""
    global _token
    pid = os.getpid()
    if _token[0] != pid:
        _token = (pid, os.urandom(4).hex())
    return f"{pid}-{_token[1]}"


def destination_key(uri: str, experiment: str | None) -> str:
    """A directory name for a destination: readable, and unique by a short hash."""
    label = re.sub(r"[^A-Za-z0-9.-]+", "_", uri.split("://", 1)[-1]).strip("_")[:60]
    digest = hashlib.sha256(f"{uri}|{experiment or ''}".encode()).hexdigest()[:10]
    return f"{label or 'destination'}-{digest}"


@dataclass
class Claim:
    """A spooled batch that one deliverer holds.

    Its renames hold the spool's lock (`lock`), as the spool's writer does while it
    measures the room left: a file renamed while the directory is scanned can be
    missed by the scan, and the writer would then fill the room it still takes.
    """

    path: Path
    original: Path
    records: list[TraceRecord]
    lock: AbstractContextManager[Any] = field(
        default_factory=contextlib.nullcontext, repr=False, compare=False
    )

    def done(self) -> None:
        """The batch was delivered: remove it."""
        with self.lock, contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def release(self) -> None:
        """Not delivered: put it back for a later attempt."""
        with self.lock, contextlib.suppress(FileNotFoundError):
            os.rename(self.path, self.original)

    def keep_only(self, records: Sequence[TraceRecord]) -> None:
        """Part of it was delivered: put back only `records`, for a later attempt."""
        if not records:
            self.done()
            return
        with self.lock:
            try:
                _write(self.original, b"".join(encode(record) for record in records))
            except OSError:
                self.release()  # all of it again: delivering twice is safe, losing is not
                return
            self.done()

    def reject(self) -> None:
        """The destination refused it: set it aside (not delivered again, still counted)."""
        with self.lock, contextlib.suppress(FileNotFoundError):
            os.rename(self.path, self.original.with_name(self.original.name + REJECTED_SUFFIX))


class Spool:
    """The spool directory of one destination."""

    def __init__(
        self, directory: str | os.PathLike[str], max_bytes: int, destination: Mapping[str, Any]
    ) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.destination = dict(destination)
        # Held while the room left is measured and while a claim renames its file
        # (reentrant: `Claim.keep_only` releases under it).
        self._lock = threading.RLock()

    def put(self, records: Sequence[TraceRecord]) -> int:
        """Keep a batch; return how many of its records were kept: those that fit in
        `max_bytes`, oldest first (0 when the disk refused)."""
        return self.write(records)[0]

    def write(self, records: Sequence[TraceRecord]) -> tuple[int, str]:
        """Like `put()`, and the name of the file (meaningful when some were kept)."""
        name = self._name(_SUFFIX)
        return self._store(records, name), name

    def set_aside(self, records: Sequence[TraceRecord], why: object = None) -> Path | None:
        """Keep records the destination refused on their own as a `*.rejected` file
        (not delivered again); where, or None if they did not fit."""
        name = self._name(_SUFFIX + REJECTED_SUFFIX)
        return self.directory / name if self._store(records, name) == len(records) else None

    def _name(self, suffix: str) -> str:
        return f"{time.time_ns():020d}-{os.getpid()}-{next(_counter):06d}{suffix}"

    def _store(self, records: Sequence[TraceRecord], name: str) -> int:
        lines = [encode(record) for record in records]
        with self._lock:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                room = self.max_bytes - self.size()
                fit = 0
                for line in lines:
                    if len(line) > room:
                        break
                    room -= len(line)
                    fit += 1
                if not fit:
                    return 0
                self._describe()
                _write(self.directory / name, b"".join(lines[:fit]))
            except OSError:
                return 0
        return fit

    def rejected(self) -> list[Path]:
        """The `*.rejected` files: what the destination refused, set aside."""
        try:
            return sorted(p for p in self.directory.iterdir() if p.name.endswith(REJECTED_SUFFIX))
        except OSError:
            return []

    def _describe(self) -> None:
        path = self.directory / DESTINATION_FILE
        if not path.exists():
            _write(path, (json.dumps(self.destination, indent=2) + "\n").encode())

    def size(self) -> int:
        """Bytes held, claimed files included. This process's claims do not rename
        their files during the scan of a write (`Claim.lock`); another process's claim
        may, and a file it renames then can be missed: the spool may then go over its
        bound by that one batch."""
        total = 0
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.directory):
                if entry.name.startswith("."):
                    continue
                if entry.name.endswith((_SUFFIX, REJECTED_SUFFIX)) or _CLAIMED.search(entry.name):
                    with contextlib.suppress(FileNotFoundError):
                        total += entry.stat().st_size
        return total

    def pending(self) -> list[Path]:
        """Unclaimed batches, oldest first.

        Claims of processes that are gone are taken back, and so are the
        temporary files of writers that died before renaming them.
        """
        files: list[Path] = []
        try:
            entries = list(os.scandir(self.directory))
        except (FileNotFoundError, NotADirectoryError):
            return files
        for entry in entries:
            match = _CLAIMED.search(entry.name)
            if match:
                if _stale(entry, int(match.group(1)), match.group(2)):
                    original = self.directory / entry.name[: match.start()]
                    with contextlib.suppress(FileNotFoundError):
                        os.rename(entry.path, original)
                        files.append(original)
            elif entry.name.endswith(_SUFFIX) and not entry.name.startswith("."):
                files.append(Path(entry.path))
            elif (temporary := _TEMPORARY.match(entry.name)) and not _alive(
                int(temporary.group(1))
            ):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
        return sorted(files, key=lambda p: p.name)

    def claims(self) -> Iterator[Claim]:
        """Claim pending batches one at a time, oldest first.

        A file with nothing readable in it is removed, not handed out.
        """
        for path in self.pending():
            claimed = path.with_name(f"{path.name}.claimed-{_claim_token()}")
            with contextlib.suppress(OSError):
                os.utime(path)  # before the rename: a claim's age counts from now
            try:
                with self._lock:
                    os.rename(path, claimed)
            except OSError:
                continue  # another process claimed it first (or we may not)
            try:
                records = _read(claimed)
            except OSError:
                Claim(claimed, path, [], self._lock).release()
                continue
            claim = Claim(claimed, path, records, self._lock)
            if not records:
                claim.done()
                continue
            yield claim


def _write(path: Path, data: bytes) -> None:
    """Write a file under a temporary name and rename it into place."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{next(_counter)}.tmp")
    try:
        with open(temporary, "wb") as file:
            file.write(data)
        os.rename(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _stale(entry: os.DirEntry[str], pid: int, token: str | None) -> bool:
    """Whether a claim's holder is gone (or has held it too long)."""
    if pid == os.getpid():
        if token is not None and f"{pid}-{token}" != _claim_token():
            return True  # an earlier process that had this pid
    elif not _alive(pid):
        return True
    try:
        return time.time() - entry.stat().st_mtime > STALE_CLAIM_S
    except FileNotFoundError:
        return False


def _read(path: Path) -> list[TraceRecord]:
    records = []
    with open(path, "rb") as file:
        for line in file:
            record = parse_line(line)  # None for a torn, garbled or hostile line: skipped
            if record is not None:
                records.append(record)
    return records


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def spools(root: str | os.PathLike[str]) -> list[Spool]:
    """Every destination's spool under `root` (for `tracekit upload`)."""
    found: list[Spool] = []
    root = Path(root)
    if not root.is_dir():
        return found
    for directory in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            destination = json.loads((directory / DESTINATION_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        found.append(Spool(directory, 1 << 62, destination))
    return found
