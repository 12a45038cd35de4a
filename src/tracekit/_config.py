"""Configuration: every environment variable is parsed here, and only here.

Explicit arguments to `tracekit.configure()` beat the environment. A bad value
logs one warning naming the variable and the fallback; nothing here raises.
The credentials and transport settings of remote destinations (MLflow's and
OpenTelemetry's own variables) are read by `exporters/_settings.py`, with the
same helpers, when such a destination is configured.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tracekit.integrations import _registry

logger = logging.getLogger("tracekit")

DEFAULT_STORE = ".tracekit"
INTEGRATIONS = _registry.NAMES  # the names TRACEKIT_AUTOLOG accepts

SpanProcessor = Callable[[dict[str, Any]], "dict[str, Any] | None"]


@dataclass(frozen=True)
class Config:
    """The effective configuration (see docs/configuration.md)."""

    enabled: bool = True
    tracking_uris: tuple[str, ...] = ()  # empty: the default file store
    experiment_id: str | None = None
    experiment_name: str | None = None
    autolog: tuple[str, ...] = ()
    sampling_ratio: float = 1.0
    capture_content: bool = True
    service_name: str | None = None
    resource_attributes: Mapping[str, str] = field(default_factory=dict)
    shutdown_timeout: float = 5.0
    spool_dir: str | None = None
    spool_max_mb: float = 256.0
    export_timeout: float = 10.0  # seconds per request to a remote destination
    export_interval: float = 1.0
    exporter_factory: str | None = None
    exporters: tuple[Any, ...] = ()  # exporter objects given to configure()
    propagate_context_to_threads: bool = True
    propagate_context: bool = True  # send `traceparent` with the SDK calls traced
    otel_context: bool = True  # root spans join an active OpenTelemetry span's trace
    span_processors: tuple[SpanProcessor, ...] = ()
    # Prices for names the price database does not know (see _cost.py).
    prices: Mapping[str, Any] | None = None
    prices_file: str | None = None  # TRACEKIT_PRICES: a JSON or TOML file of them
    # Bounds. Every drop they cause is counted and reported once.
    orphan_timeout: float = 30.0
    max_spans_per_trace: int = 10_000
    max_in_flight_traces: int = 10_000
    max_queued_spans: int = 20_000
    export_batch_spans: int = 512
    max_value_chars: int = 100_000
    max_trace_chars: int = 10_000_000


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _warn(var: str, raw: str, expected: str, fallback: object) -> None:
    logger.warning(
        "tracekit: ignoring %s=%r (expected %s); using %r instead", var, raw, expected, fallback
    )


def _env(env: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    """The first of `names` set to a non-blank value, as (name, value)."""
    for name in names:
        value = env.get(name)
        if value is not None and value.strip():
            return name, value.strip()
    return None


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    found = _env(env, name)
    if found is None:
        return default
    raw = found[1].lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    _warn(name, found[1], "true or false", default)
    return default


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    found = _env(env, name)
    if found is None:
        return default
    try:
        value = float(found[1])
    except ValueError:
        value = float("nan")
    if not low <= value <= high:  # also rejects nan
        _warn(name, found[1], f"a number from {low:g} to {high:g}", default)
        return default
    return value


def _split(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _autolog(env: Mapping[str, str]) -> tuple[str, ...]:
    found = _env(env, "TRACEKIT_AUTOLOG")
    if found is None:
        return ()
    names = tuple(name.lower() for name in _split(found[1]))
    if "all" in names:
        return INTEGRATIONS
    unknown = [name for name in names if name not in INTEGRATIONS]
    if unknown:
        _warn(
            "TRACEKIT_AUTOLOG",
            found[1],
            "a list of " + ", ".join(INTEGRATIONS) + " or all",
            [n for n in names if n in INTEGRATIONS],
        )
    return tuple(name for name in names if name in INTEGRATIONS)


def _resource_attributes(env: Mapping[str, str]) -> dict[str, str]:
    from urllib.parse import unquote

    found = _env(env, "OTEL_RESOURCE_ATTRIBUTES")
    attributes: dict[str, str] = {}
    if found is None:
        return attributes
    for item in _split(found[1]):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            _warn("OTEL_RESOURCE_ATTRIBUTES", item, "key=value pairs", "the item skipped")
            continue
        attributes[unquote(key.strip())] = unquote(value.strip())  # the spec percent-encodes
    return attributes


def _tracking_uris(env: Mapping[str, str]) -> tuple[str, ...]:
    found = _env(env, "TRACEKIT_TRACKING_URI")
    if found is not None:
        return _split(found[1])
    mlflow = _env(env, "MLFLOW_TRACKING_URI")
    # MLflow's own local stores (a path, file:, sqlite:) have a format of their
    # own; only remote servers are shared destinations.
    if mlflow is not None and mlflow[1].lower().startswith(("http://", "https://", "databricks")):
        return (mlflow[1],)
    if mlflow is None and _model_serving(env):
        return ("databricks",)
    return ()


def _model_serving(env: Mapping[str, str]) -> bool:
    """Databricks Model Serving's convention: `ENABLE_MLFLOW_TRACING=true`, an experiment id
    and workspace credentials, and no tracking URI, send traces to that workspace."""
    if _env(env, "MLFLOW_EXPERIMENT_ID") is None or _env(env, "DATABRICKS_HOST") is None:
        return False
    oauth = _env(env, "DATABRICKS_CLIENT_ID") and _env(env, "DATABRICKS_CLIENT_SECRET")
    if _env(env, "DATABRICKS_TOKEN") is None and not oauth:
        return False
    return _bool(env, "ENABLE_MLFLOW_TRACING", False)


def from_env(env: Mapping[str, str] | None = None) -> Config:
    """Read the configuration from environment variables (never raises)."""
    env = os.environ if env is None else env
    experiment_id = _env(env, "TRACEKIT_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_ID")
    experiment_name = _env(env, "TRACEKIT_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_NAME")
    service = _env(env, "TRACEKIT_SERVICE_NAME", "OTEL_SERVICE_NAME")
    spool = _env(env, "TRACEKIT_SPOOL_DIR")
    factory = _env(env, "TRACEKIT_EXPORTER")
    prices = _env(env, "TRACEKIT_PRICES")
    if factory is not None and ":" not in factory[1]:
        _warn("TRACEKIT_EXPORTER", factory[1], "package.module:factory", None)
        factory = None
    return Config(
        enabled=_bool(env, "TRACEKIT_ENABLED", True),
        tracking_uris=_tracking_uris(env),
        experiment_id=experiment_id[1] if experiment_id else None,
        experiment_name=experiment_name[1] if experiment_name else None,
        autolog=_autolog(env),
        sampling_ratio=_float(env, "TRACEKIT_SAMPLING_RATIO", 1.0, 0.0, 1.0),
        capture_content=_bool(env, "TRACEKIT_CAPTURE_CONTENT", True),
        service_name=service[1] if service else None,
        resource_attributes=_resource_attributes(env),
        shutdown_timeout=_float(env, "TRACEKIT_SHUTDOWN_TIMEOUT", 5.0, 0.0, 3600.0),
        spool_dir=spool[1] if spool else None,
        spool_max_mb=_float(env, "TRACEKIT_SPOOL_MAX_MB", 256.0, 0.0, 1_000_000.0),
        export_timeout=_float(env, "TRACEKIT_EXPORT_TIMEOUT", 10.0, 0.1, 600.0),
        export_interval=_float(env, "TRACEKIT_EXPORT_INTERVAL", 1.0, 0.01, 3600.0),
        exporter_factory=factory[1] if factory else None,
        propagate_context_to_threads=_bool(env, "TRACEKIT_THREAD_CONTEXT", True),
        propagate_context=_bool(env, "TRACEKIT_PROPAGATE_CONTEXT", True),
        otel_context=_bool(env, "TRACEKIT_OTEL_CONTEXT", True),
        prices_file=prices[1] if prices else None,
    )


_FIELDS = {f.name for f in dataclasses.fields(Config)}
_RENAMED = {"tracking_uri": "tracking_uris"}


def merge(base: Config, overrides: Mapping[str, Any]) -> Config:
    """Apply explicit `configure()` arguments over `base`, validating each.

    Unknown names raise TypeError (a programming error, like any bad keyword);
    bad values warn and keep the value from `base`.
    """
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        name = _RENAMED.get(key, key)
        if name not in _FIELDS:
            raise TypeError(f"tracekit.configure() got an unexpected keyword argument {key!r}")
        if value is None:
            continue
        default = getattr(base, name)
        checked = _check(name, value, default)
        if checked is not _INVALID:
            changes[name] = checked
    return dataclasses.replace(base, **changes)


_INVALID = object()


def _check(name: str, value: Any, default: Any) -> Any:
    if name == "tracking_uris":
        if isinstance(value, (str, os.PathLike)):
            return _split(os.fspath(value))  # type: ignore[arg-type]
        if isinstance(value, Sequence) and all(isinstance(v, (str, os.PathLike)) for v in value):
            return tuple(str(os.fspath(v)) for v in value)
        logger.warning(
            "tracekit: ignoring configure(tracking_uri=%r) (expected a string, a path or a list "
            "of them); keeping %r",
            value,
            default,
        )
        return _INVALID
    if name in ("span_processors", "autolog", "exporters"):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            value = _split(value) if name == "autolog" and isinstance(value, str) else (value,)
        return tuple(value)
    if name == "prices" and not isinstance(value, Mapping):
        logger.warning(
            "tracekit: ignoring configure(prices=%r) (expected a mapping of model names to "
            "prices or a file path); keeping %r",
            value,
            default,
        )
        return _INVALID
    if name == "sampling_ratio":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1
    elif name in ("export_interval", "export_timeout"):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0.01
    elif isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
    else:
        ok = True
    if not ok:
        logger.warning("tracekit: ignoring configure(%s=%r); keeping %r", name, value, default)
        return _INVALID
    return float(value) if isinstance(default, float) else value
