"""Exporters: where finished traces go, chosen from the configuration.

`build(config)` turns `TRACEKIT_TRACKING_URI` (or `configure(tracking_uri=)`),
`TRACEKIT_EXPORTER` and `configure(exporter=)` into one exporter.
"""

from __future__ import annotations

import importlib
import logging
import re
from pathlib import Path

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
    "store_directory",
]

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_LATER = ("http", "https", "databricks", "otlp", "otlp+http", "otlp+https")


def store_directory(uri: str) -> Path | None:
    """The directory of a file-store URI (`file://DIR` or a plain path), else None."""
    if uri in ("console", "memory", "databricks") or uri.startswith("databricks://"):
        return None
    match = _SCHEME.match(uri)
    if match is None:
        return Path(uri).expanduser()
    if match.group(1).lower() == "file":
        return Path(uri[len("file://") :]).expanduser()
    return None


def _one(uri: str) -> Exporter:
    if uri == "console":
        from tracekit.exporters.console import ConsoleExporter

        return ConsoleExporter()
    if uri == "memory":
        from tracekit.exporters.memory import InMemoryExporter

        return InMemoryExporter()
    directory = store_directory(uri)
    if directory is None:
        scheme = uri.split("://", 1)[0].lower()
        why = "is not supported yet" if scheme in _LATER else "is not a known destination"
        logger.warning(
            "tracekit: TRACEKIT_TRACKING_URI destination %r %s; writing to the file store %r "
            "instead",
            uri,
            why,
            DEFAULT_STORE,
        )
        directory = Path(DEFAULT_STORE)
    from tracekit.exporters.file import FileExporter

    return FileExporter(directory)


def _from_factory(spec: str) -> Exporter | None:
    module_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
        exporter = factory()
        if not callable(getattr(exporter, "export", None)):
            raise TypeError(f"{spec}() returned {exporter!r}, which has no export() method")
        return exporter  # type: ignore[no-any-return]
    except Exception as exc:
        logger.warning(
            "tracekit: TRACEKIT_EXPORTER=%r could not be loaded (%s: %s); ignoring it",
            spec,
            type(exc).__name__,
            exc,
        )
        return None


def build(config: Config) -> Exporter:
    """The exporter the configuration asks for (never raises)."""
    exporters: list[Exporter] = [_one(uri) for uri in config.tracking_uris]
    if config.exporter_factory:
        custom = _from_factory(config.exporter_factory)
        if custom is not None:
            exporters.append(custom)
    exporters.extend(config.exporters)
    if not exporters:
        exporters.append(_one(DEFAULT_STORE))
    return exporters[0] if len(exporters) == 1 else FanoutExporter(exporters)
