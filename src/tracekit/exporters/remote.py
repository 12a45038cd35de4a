"""Remote destinations built from the configuration, each behind the delivery wrappers."""

from __future__ import annotations

import os
from pathlib import Path

from tracekit._config import Config
from tracekit.exporters.base import Exporter, RetryingExporter
from tracekit.exporters.delivery import CircuitBreakerExporter, SpoolingExporter
from tracekit.exporters.spool import DEFAULT_SPOOL_DIR, Spool, destination_key


def spool_root(config: Config) -> Path:
    """TRACEKIT_SPOOL_DIR, else `.tracekit/spool` in the working directory."""
    return Path(config.spool_dir or DEFAULT_SPOOL_DIR).expanduser()


def deliver(exporter: Exporter, config: Config, uri: str, experiment: str | None) -> Exporter:
    """Wrap a remote exporter in retries, a circuit breaker and a spool."""
    timeout = config.export_timeout
    retrying = RetryingExporter(
        exporter, max_attempts=3, initial_backoff=0.5, max_backoff=5.0, max_elapsed=timeout
    )
    breaker = CircuitBreakerExporter(retrying, cooldown=1.0, max_cooldown=60.0)
    destination = {"uri": uri}
    if experiment:
        destination["experiment"] = experiment
    spool = Spool(
        spool_root(config) / destination_key(uri, experiment),
        int(config.spool_max_mb * 1024 * 1024),
        destination,
    )
    return SpoolingExporter(breaker, spool, uri)


def tracking_server(uri: str, config: Config) -> Exporter:
    """`http(s)://HOST[:PORT][/PREFIX]`: an MLflow-compatible tracking server."""
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
    experiment = config.experiment_id or config.experiment_name
    return deliver(exporter, config, settings.base_url, experiment)


def otlp(uri: str, config: Config) -> Exporter:
    """`otlp` or `otlp+http(s)://HOST:PORT[/PATH]`: any OpenTelemetry backend."""
    from tracekit.exporters.otlp import OtlpExporter, settings_for

    settings = settings_for(uri)
    return deliver(OtlpExporter(settings), config, "otlp+" + settings.endpoint, None)


def build(scheme: str, uri: str, config: Config) -> Exporter:
    """The remote exporter for a URI whose scheme is http(s) or otlp[+http(s)]."""
    return tracking_server(uri, config) if scheme in ("http", "https") else otlp(uri, config)
