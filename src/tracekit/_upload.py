"""`tracekit upload`: deliver spooled batches, or a whole file store, to a remote destination.

Both send directly (no retries, no spool): a batch that fails stops the
upload and stays where it was, so running the command again later goes on
where it stopped. A batch the destination refuses as such (HTTP 413, 400...)
is split and its halves sent; a trace it refuses on its own (or the exporter
raises on) is set aside as `*.rejected` beside the spool, reported, and the
upload goes on. Claims keep a running application and an upload from
delivering the same batch twice.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from tracekit import _store
from tracekit._config import Config, from_env
from tracekit.exporters.base import Exporter, ExportResult, TraceRecord, _safe_export
from tracekit.exporters.split import SplittingExporter
from tracekit.exporters.spool import REJECTED_SUFFIX, Spool, spools

BATCH_TRACES = 100


def _exporter(uri: str, config: Config, recorded_host: str | None = None) -> Exporter:
    from tracekit.exporters import remote

    exporter, _, _ = remote.direct(uri, config, recorded_host)
    return exporter


def upload_spool(root: Path, to: str | None = None) -> tuple[int, int]:
    """Deliver every spooled batch under `root`; (traces delivered, batches left)."""
    delivered = left = 0
    base = from_env()
    for spool in spools(root):
        if not spool.pending():
            _report_set_aside(spool)
            continue
        uri = to or str(spool.destination.get("uri") or "")
        host = None if to else spool.destination.get("host")  # a Databricks workspace
        n, remaining = _drain(spool, uri, _config_for(base, spool, to), host)
        delivered += n
        left += remaining
    return delivered, left


def _config_for(base: Config, spool: Spool, to: str | None) -> Config:
    """The experiment the batches were meant for, unless the environment names one."""
    if base.experiment_id or base.experiment_name:
        return base
    meant = spool.destination
    same = not to or to.rstrip("/") == str(meant.get("uri") or "").rstrip("/")
    return dataclasses.replace(
        base,
        # An experiment id means nothing on another server; a name does.
        experiment_id=meant.get("experiment_id") if same else None,
        experiment_name=meant.get("experiment_name"),
    )


def _drain(
    spool: Spool, uri: str, config: Config, recorded_host: str | None = None
) -> tuple[int, int]:
    try:
        direct = _exporter(uri, config, recorded_host)
    except ValueError as exc:
        print(f"{spool.directory}: cannot deliver to {uri!r}: {exc}", file=sys.stderr)
        return 0, len(spool.pending())
    uri = _shown(direct, uri)

    def set_aside(records: Sequence[TraceRecord], result: ExportResult) -> Path | None:
        where = spool.set_aside(records)
        if where is not None:
            print(
                f"{uri} refused trace {records[0].get('trace_id')} on its own "
                f"({result.message}); set aside as {where.name}",
                file=sys.stderr,
            )
        return where

    exporter = SplittingExporter(direct, set_aside)
    delivered = rejected = 0
    stopped = True  # by a failure (cleared when every claim was settled)
    try:
        for claim in spool.claims():
            before = exporter.set_aside_traces
            result = _safe_export(exporter, claim.records)
            refused = exporter.set_aside_traces - before
            rejected += bool(refused)
            if not result.ok and result.undelivered is not None:
                delivered += len(claim.records) - len(result.undelivered)
                delivered -= refused
                claim.keep_only(result.undelivered)
                print(
                    f"cannot deliver to {uri} ({result.message}); "
                    f"{len(spool.pending())} batch(es) stay in {spool.directory}: run "
                    "`tracekit upload` again when it answers",
                    file=sys.stderr,
                )
                break
            if result.rejected:  # this batch can never succeed: set it aside, go on
                claim.reject()
                print(
                    f"{uri} refused {len(claim.records)} trace(s) ({result.message}); set aside "
                    f"as {claim.original.name}{REJECTED_SUFFIX}",
                    file=sys.stderr,
                )
                rejected += 1
                continue
            if not result.ok:
                claim.release()
                left = len(spool.pending())
                print(
                    f"cannot deliver to {uri} ({result.message}); {left} batch(es) stay in "
                    f"{spool.directory}: run `tracekit upload` again when it answers",
                    file=sys.stderr,
                )
                break
            claim.done()
            delivered += len(claim.records) - refused
        else:
            stopped = False  # everything this upload found went out
    finally:
        exporter.shutdown(None)
    # A running application writes each batch to the spool before it sends it: what
    # appeared after this upload went through the spool is that application's to send.
    left = len(spool.pending()) if stopped else 0
    print(f"{uri}: delivered {delivered} trace(s) from {spool.directory}; {left} batch(es) left")
    _report_set_aside(spool)
    return delivered, left + rejected


def _report_set_aside(spool: Spool) -> None:
    """Say what waits for a human: traces the destination refused on their own."""
    files = spool.rejected()
    if not files:
        return
    traces = sum(len(_store.read_lines(path).records) for path in files)
    print(
        f"{spool.directory}: {traces} trace(s) in {len(files)} *{REJECTED_SUFFIX} file(s) were "
        "refused by the destination on their own (too large, or malformed) and are set aside; "
        "they are not delivered again",
        file=sys.stderr,
    )


def upload_store(store: Path, to: str) -> tuple[int, int]:
    """Send every trace of a file store to `to`; (traces delivered, traces not delivered)."""
    records = _store.load(store)
    if not records:
        print(f"Nothing to upload: no traces in {store}.")
        return 0, 0
    try:
        direct = _exporter(to, from_env())
    except ValueError as exc:
        print(f"cannot deliver to {to!r}: {exc}", file=sys.stderr)
        return 0, len(records)
    to = _shown(direct, to)

    def skip(batch: Sequence[TraceRecord], result: ExportResult) -> Path | None:
        trace_id = batch[0].get("trace_id")
        print(f"{to} refused trace {trace_id} ({result.message}); skipped", file=sys.stderr)
        return store  # it stays in the store

    exporter = SplittingExporter(direct, skip)
    delivered = 0
    try:
        for batch in _batches(records, BATCH_TRACES):
            result = _safe_export(exporter, batch)
            if not result.ok:
                if result.undelivered is not None:
                    delivered += len(batch) - len(result.undelivered)
                print(
                    f"cannot deliver to {to} ({result.message}); stopped after {delivered} of "
                    f"{len(records)} trace(s)",
                    file=sys.stderr,
                )
                break
            delivered += len(batch)
    finally:
        exporter.shutdown(None)
    delivered -= exporter.set_aside_traces
    print(
        f"{to}: delivered {delivered} of {len(records)} trace(s) from {store}"
        + (f"; {exporter.set_aside_traces} refused" if exporter.set_aside_traces else "")
    )
    return delivered, len(records) - delivered


def _shown(exporter: Exporter, uri: str) -> str:
    """How the destination is named in messages: its address without credentials in it
    (a URL's user:password), the workspace host for Databricks."""
    return str(getattr(exporter, "destination", None) or uri)


def _batches(records: Sequence[TraceRecord], size: int) -> list[Sequence[TraceRecord]]:
    return [records[i : i + size] for i in range(0, len(records), size)]
