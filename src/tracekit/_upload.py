"""`tracekit upload`: deliver spooled batches, or a whole file store, to a remote destination."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from tracekit import _store
from tracekit._config import Config, from_env
from tracekit.exporters.base import Exporter, TraceRecord, _safe_export
from tracekit.exporters.spool import Spool, spools

BATCH_TRACES = 100


def _exporter(uri: str, config: Config) -> Exporter:
    from tracekit.exporters import remote

    exporter, _, _ = remote.direct(uri, config)
    return exporter


def upload_spool(root: Path, to: str | None = None) -> tuple[int, int]:
    """Deliver every spooled batch under `root`; (traces delivered, batches left)."""
    delivered = left = 0
    base = from_env()
    for spool in spools(root):
        uri = to or str(spool.destination.get("uri") or "")
        config = base
        if not to:  # the experiment the batches were meant for, unless the environment says
            config = dataclasses.replace(
                base,
                experiment_id=base.experiment_id or spool.destination.get("experiment_id"),
                experiment_name=base.experiment_name or spool.destination.get("experiment_name"),
            )
        n, remaining = _drain(spool, uri, config)
        delivered += n
        left += remaining
    return delivered, left


def _drain(spool: Spool, uri: str, config: Config) -> tuple[int, int]:
    try:
        exporter = _exporter(uri, config)
    except ValueError as exc:
        print(f"{spool.directory}: cannot deliver to {uri!r}: {exc}")
        return 0, len(spool.pending())
    delivered = 0
    try:
        for claim in spool.claims():
            result = _safe_export(exporter, claim.records)
            if not result.ok:
                claim.release()
                print(f"{uri}: {result.message}; stopped, the rest stays in {spool.directory}")
                break
            claim.done()
            delivered += len(claim.records)
    finally:
        exporter.shutdown(None)
    left = len(spool.pending())
    print(f"{uri}: delivered {delivered} trace(s) from {spool.directory}; {left} batch(es) left")
    return delivered, left


def upload_store(store: Path, to: str) -> tuple[int, int]:
    """Send every trace of a file store to `to`; (traces delivered, traces not delivered)."""
    records = _store.load(store)
    exporter = _exporter(to, from_env())
    delivered = 0
    try:
        for batch in _batches(records, BATCH_TRACES):
            result = _safe_export(exporter, batch)
            if not result.ok:
                print(f"{to}: {result.message}; stopped after {delivered} trace(s)")
                break
            delivered += len(batch)
    finally:
        exporter.shutdown(None)
    print(f"{to}: delivered {delivered} of {len(records)} trace(s) from {store}")
    return delivered, len(records) - delivered


def _batches(records: Sequence[TraceRecord], size: int) -> list[Sequence[TraceRecord]]:
    return [records[i : i + size] for i in range(0, len(records), size)]
