"""Exporters: where finished traces go, chosen from the configuration.

`build(config)` turns `TRACEKIT_TRACKING_URI` (or `configure(tracking_uri=)`),
`TRACEKIT_EXPORTER` and `configure(exporter=)` into one exporter.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tracekit import _importguard
from tracekit._config import DEFAULT_STORE, Config
from tracekit.exporters.base import (
    SUCCESS,
    BaseExporter,
    Exporter,
    ExportResult,
    FanoutExporter,
    RetryingExporter,
    TraceRecord,
)

logger = logging.getLogger("tracekit")

__all__ = [
    "SUCCESS",
    "BaseExporter",
    "ExportResult",
    "Exporter",
    "FanoutExporter",
    "RetryingExporter",
    "TraceRecord",
    "build",
    "prepare",
    "store_directory",
]

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s'\"]*@")
_REMOTE = ("http", "https", "otlp", "otlp+http", "otlp+https", "databricks")
_WORDS = ("console", "memory", "databricks", "otlp", "otel")


def store_directory(uri: str) -> Path | None:
    """The directory of a file-store URI (`file://DIR` or a plain path), else None."""
    if uri.lower() in _WORDS:
        return None
    match = _SCHEME.match(uri)
    if match is None:
        return Path(uri).expanduser()
    if match.group(1).lower() == "file":
        return Path(uri[len("file://") :]).expanduser()
    return None


def redact(uri: str) -> str:
    """Text fit for a log line: the `user:password@` of every URL in it removed."""
    return _USERINFO.sub(r"\1", uri)


def _one(uri: str, config: Config) -> Exporter:
    if uri.lower() == "console":
        from tracekit.exporters.console import ConsoleExporter

        return ConsoleExporter()
    if uri.lower() == "memory":
        from tracekit.exporters.memory import default_exporter

        return default_exporter()
    if uri.lower() == "otel":  # the app's own OpenTelemetry TracerProvider
        try:
            from tracekit.exporters.otel import OtelBridgeExporter
        except ImportError:
            logger.warning(
                "tracekit: the `otel` destination needs opentelemetry-api (pip install "
                "opentelemetry-sdk and register a TracerProvider); writing to the file store "
                "%r instead",
                DEFAULT_STORE,
            )
            from tracekit.exporters.file import FileExporter

            return FileExporter(Path(DEFAULT_STORE))
        return OtelBridgeExporter()
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else uri.lower()
    if scheme in _REMOTE:
        try:
            from tracekit.exporters import remote

            return remote.build(uri, config)
        except Exception as exc:  # a URL we cannot use: say so, keep the traces locally
            logger.warning(
                "tracekit: cannot use the tracking URI %r (%s: %s); writing to the file store "
                "%r instead",
                redact(uri),
                type(exc).__name__,
                redact(str(exc)),
                DEFAULT_STORE,
            )
            from tracekit.exporters.file import FileExporter

            return FileExporter(Path(DEFAULT_STORE))
    directory = store_directory(uri)
    if directory is None:
        logger.warning(
            "tracekit: tracking URI (TRACEKIT_TRACKING_URI or configure(tracking_uri=)) %r is "
            "not a known destination; writing to the file store %r instead",
            redact(uri),
            DEFAULT_STORE,
        )
        directory = Path(DEFAULT_STORE)
    from tracekit.exporters.file import FileExporter

    return FileExporter(directory)


def _from_factory(spec: str) -> Exporter | None:
    module_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
        return _complete(factory(), spec + "()")
    except Exception as exc:
        logger.warning(
            "tracekit: TRACEKIT_EXPORTER=%r could not be loaded (%s: %s); ignoring it",
            spec,
            type(exc).__name__,
            exc,
        )
        return None


class _Completed(BaseExporter):
    """Gives an exporter object that only has `export()` the rest of the protocol."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def export(self, traces: Sequence[TraceRecord]) -> ExportResult:
        return self.inner.export(traces)  # type: ignore[no-any-return]

    def force_flush(self, timeout: float | None = None) -> bool:
        method = getattr(self.inner, "force_flush", None)
        return bool(method(timeout)) if callable(method) else True

    def shutdown(self, timeout: float | None = None) -> None:
        method = getattr(self.inner, "shutdown", None)
        if callable(method):
            method(timeout)


def _complete(obj: Any, origin: str) -> Exporter | None:
    if not callable(getattr(obj, "export", None)):
        logger.warning(
            "tracekit: %s gave %r, which has no export() method; ignoring it", origin, obj
        )
        return None
    if callable(getattr(obj, "force_flush", None)) and callable(getattr(obj, "shutdown", None)):
        return obj  # type: ignore[no-any-return]
    return _Completed(obj)


def prepare(config: Config) -> None:
    """Import every module `build(config)` and the exporters it builds will need,
    and those serializing a record needs on the worker (`_chat`, `_cost`).

    `build()` calls it first, under the fork guard (`tracekit._importguard`), on the export worker:
    after that the worker imports nothing. The cost (an HTTP stack for a remote
    destination) is paid only for what is configured, and not by a traced call.
    """
    # The record's chat and cost are added on the worker (the price database itself is
    # imported there too, behind a fork guard: see `_cost`).
    modules = ["tracekit.exporters.file", "tracekit.exporters.memory", "tracekit._chat"]
    modules += ["tracekit._cost", "tracekit._records"]
    for uri in config.tracking_uris:
        low = uri.lower()
        scheme = low.split("://", 1)[0] if "://" in low else low
        if low == "console":
            modules.append("tracekit.exporters.console")
        elif low == "otel":
            modules.append("tracekit.exporters.otel")
        elif scheme in _REMOTE:
            modules += ["tracekit.exporters.remote", "tracekit.exporters._http"]
            modules += ["tracekit.exporters._settings", "tracekit.exporters.tracking"]
            modules += ["tracekit.exporters.otlp", "tracekit.exporters._otlp"]
            if scheme == "databricks":
                modules.append("tracekit.exporters.databricks")
    if config.exporter_factory:
        modules.append(config.exporter_factory.partition(":")[0])
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: S112 - build() reports it, with the destination named
            continue
    if any(name.endswith("._otlp") for name in modules):
        from tracekit.exporters import _otlp

        preload = getattr(_otlp, "preload", None)  # the protobuf encoder's modules
        if callable(preload):
            preload()
        elif _otlp.protobuf_available():
            importlib.import_module("google.protobuf.json_format")


def build(config: Config) -> Exporter:
    """The exporter the configuration asks for (never raises).

    Imports what it needs first (`prepare`), under the fork guard: it runs on the
    export worker, and a fork meanwhile waits for it.
    """
    with _importguard.imports():
        prepare(config)
        return _build(config)


def _build(config: Config) -> Exporter:
    exporters: list[Exporter] = [_one(uri, config) for uri in config.tracking_uris]
    if config.exporter_factory:
        custom = _from_factory(config.exporter_factory)
        if custom is not None:
            exporters.append(custom)
    exporters.extend(
        e for e in (_complete(obj, "configure(exporter=...)") for obj in config.exporters) if e
    )
    if not exporters:
        exporters.append(_one(DEFAULT_STORE, config))
    return exporters[0] if len(exporters) == 1 else FanoutExporter(exporters)
