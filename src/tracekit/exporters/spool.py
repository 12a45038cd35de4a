"""The spool: batches a destination could not take, kept on disk until it can.

One directory per destination under `TRACEKIT_SPOOL_DIR` (default
`.tracekit/spool`), named after it, holding `destination.json` (the URI and
experiment, never credentials) and one JSON-lines file per batch, in the file
store's format. A batch is written to a temporary name and renamed into
place, so readers never see half a file. A deliverer claims a file by
renaming it (`*.claimed-<pid>`), which only one process can do; it deletes
the file once delivered and renames it back otherwise. Files claimed by a
process that died are taken back. The total size is bounded: a batch that
does not fit is refused (the caller counts it).
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracekit.exporters.base import TraceRecord
from tracekit.exporters.file import encode

DEFAULT_SPOOL_DIR = os.path.join(".tracekit", "spool")
DESTINATION_FILE = "destination.json"
_SUFFIX = ".jsonl"
_CLAIMED = re.compile(r"\.claimed-(\d+)$")
_counter = itertools.count()


def destination_key(uri: str, experiment: str | None) -> str:
    """A directory name for a destination: readable, and unique by a short hash."""
    label = re.sub(r"[^A-Za-z0-9.-]+", "_", uri.split("://", 1)[-1]).strip("_")[:60]
    digest = hashlib.sha256(f"{uri}|{experiment or ''}".encode()).hexdigest()[:10]
    return f"{label or 'destination'}-{digest}"


@dataclass
class Claim:
    """A spooled batch that one deliverer holds."""

    path: Path
    original: Path
    records: list[TraceRecord]

    def done(self) -> None:
        """The batch was delivered: remove it."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def release(self) -> None:
        """Not delivered: put it back for a later attempt."""
        with contextlib.suppress(FileNotFoundError):
            os.rename(self.path, self.original)


class Spool:
    """The spool directory of one destination."""

    def __init__(
        self, directory: str | os.PathLike[str], max_bytes: int, destination: Mapping[str, Any]
    ) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.destination = dict(destination)
        self._lock = threading.Lock()

    def put(self, records: Sequence[TraceRecord]) -> bool:
        """Keep a batch; False if it does not fit in `max_bytes` (or the disk refused)."""
        data = b"".join(encode(record) for record in records)
        with self._lock:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                if self.size() + len(data) > self.max_bytes:
                    return False
                self._describe()
                name = f"{time.time_ns():020d}-{os.getpid()}-{next(_counter):06d}{_SUFFIX}"
                temporary = self.directory / ("." + name + ".tmp")
                with open(temporary, "wb") as file:
                    file.write(data)
                os.rename(temporary, self.directory / name)
            except OSError:
                return False
        return True

    def _describe(self) -> None:
        path = self.directory / DESTINATION_FILE
        if not path.exists():
            path.write_text(json.dumps(self.destination, indent=2) + "\n", encoding="utf-8")

    def size(self) -> int:
        """Bytes held, claimed files included."""
        total = 0
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.directory):
                if entry.name.endswith(_SUFFIX) or _CLAIMED.search(entry.name):
                    with contextlib.suppress(FileNotFoundError):
                        total += entry.stat().st_size
        return total

    def pending(self) -> list[Path]:
        """Unclaimed batches, oldest first (claims of dead processes are taken back)."""
        files: list[Path] = []
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return files
        for entry in entries:
            match = _CLAIMED.search(entry.name)
            if match and not _alive(int(match.group(1))):
                original = self.directory / entry.name[: match.start()]
                with contextlib.suppress(FileNotFoundError):
                    os.rename(entry.path, original)
                files.append(original)
            elif entry.name.endswith(_SUFFIX) and not entry.name.startswith("."):
                files.append(Path(entry.path))
        return sorted(files, key=lambda p: p.name)

    def claims(self) -> Iterator[Claim]:
        """Claim pending batches one at a time, oldest first."""
        for path in self.pending():
            claimed = path.with_name(f"{path.name}.claimed-{os.getpid()}")
            try:
                os.rename(path, claimed)
            except FileNotFoundError:
                continue  # another process claimed it first
            try:
                records = _read(claimed)
            except OSError:
                Claim(claimed, path, []).release()
                continue
            yield Claim(claimed, path, records)


def _read(path: Path) -> list[TraceRecord]:
    records = []
    with open(path, "rb") as file:
        for line in file:
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and "trace_id" in record:
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
