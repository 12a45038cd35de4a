"""Remote destinations built from the configuration, each behind the delivery wrappers."""

from __future__ import annotations

import os
from pathlib import Path

from tracekit._config import Config
from tracekit.exporters.base import Exporter, RetryingExporter
from tracekit.exporters.delivery import CircuitBreakerExporter, SpoolingExporter
from tracekit.exporters.split import SplittingExporter
from tracekit.exporters.spool import DEFAULT_SPOOL_DIR, Spool, destination_key

SCHEMES = ("http", "https", "otlp", "otlp+http", "otlp+https", "databricks")
RETRY_BUDGET_S = 10.0  # a batch's attempts start within this many seconds (or the timeout)


def scheme_of(uri: str) -> str:
    return uri.split("://", 1)[0].lower() if "://" in uri else uri.lower()


def spool_root(config: Config) -> Path:
    """TRACEKIT_SPOOL_DIR, else `.tracekit/spool` in the working directory."""
    return Path(config.spool_dir or DEFAULT_SPOOL_DIR).expanduser()


def direct(
    uri: str, config: Config, recorded_host: str | None = None
) -> tuple[Exporter, str, str | None]:
    """The bare exporter for a remote URI, its destination name and experiment.

    `recorded_host` is the workspace a Databricks spool was meant for (`tracekit
    upload`). Raises ValueError for a URI it cannot use.
    """
    scheme = scheme_of(uri)
    if scheme == "databricks":
        from tracekit.exporters import databricks

        return databricks.direct(uri, config, recorded_host)
    if scheme in ("http", "https"):
        from tracekit.exporters._http import HttpClient
        from tracekit.exporters._settings import tracking_settings
        from tracekit.exporters.tracking import TrackingServerExporter

        settings = tracking_settings(uri, config.export_timeout, os.environ)
        client = HttpClient(
            settings.base_url, timeout=settings.timeout, headers=settings.headers, tls=settings.tls
        )
        exporter = TrackingServerExporter(
            client, experiment_id=config.experiment_id, experiment_name=config.experiment_name
        )
        return exporter, settings.base_url, config.experiment_id or config.experiment_name
    if scheme in ("otlp", "otlp+http", "otlp+https"):
        from tracekit.exporters.otlp import OtlpExporter, settings_for

        otlp = settings_for(uri)
        return OtlpExporter(otlp), "otlp+" + otlp.endpoint, None
    raise ValueError(f"not a remote destination: {uri!r}")


def build(uri: str, config: Config) -> Exporter:
    """A remote exporter wrapped in retries, a circuit breaker, a splitter of refused
    batches (413, a poison record) and a spool."""
    exporter, destination, experiment = direct(uri, config)
    retrying = RetryingExporter(
        exporter,
        max_attempts=3,
        initial_backoff=0.5,
        max_backoff=5.0,
        # Room for the waits between attempts: a budget of one request's timeout
        # would allow no retry after a `Retry-After: 1` when the timeout is 1 s.
        max_elapsed=max(config.export_timeout, RETRY_BUDGET_S),
        # A request that hung until its timeout is not repeated: the breaker opens and
        # later batches go to the spool at once instead of each waiting out timeouts.
        stall_after=config.export_timeout * 0.9,
    )
    breaker = CircuitBreakerExporter(retrying, cooldown=1.0, max_cooldown=60.0)
    description: dict[str, str | None] = {"uri": destination}
    if scheme_of(uri) == "databricks":  # credentials come from the environment at upload time
        description = {"uri": uri, "host": destination}
    if destination.startswith("http"):
        description.update(
            {"experiment_id": config.experiment_id, "experiment_name": config.experiment_name}
        )
    spool = Spool(
        spool_root(config) / destination_key(destination, experiment),
        int(config.spool_max_mb * 1024 * 1024),
        description,
    )
    splitting = SplittingExporter(breaker)
    spooling = SpoolingExporter(splitting, spool, destination)
    splitting.set_aside = spooling.set_aside
    return spooling
