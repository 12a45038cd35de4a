"""Settings of the remote destinations, read from the environment when one is configured.

The tracking server honours MLflow's client variables (`MLFLOW_TRACKING_TOKEN`,
`MLFLOW_TRACKING_USERNAME`/`_PASSWORD`, `MLFLOW_TRACKING_INSECURE_TLS`,
`MLFLOW_TRACKING_SERVER_CERT_PATH`, `MLFLOW_TRACKING_CLIENT_CERT_PATH`); OTLP
honours the standard `OTEL_EXPORTER_OTLP_[TRACES_]*` variables. Bad values warn
(naming the variable and the fallback) like every other setting.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from tracekit._config import _bool, _env, _float, _split, _warn
from tracekit.exporters._http import TLSOptions
from tracekit.exporters._otlp import OTLP_PATH

DEFAULT_OTLP_ENDPOINT = "http://localhost:4318/v1/traces"


@dataclass(frozen=True)
class TrackingSettings:
    """Where and how to reach an MLflow-compatible tracking server."""

    base_url: str
    headers: dict[str, str] = field(default_factory=dict, repr=False)  # credentials
    tls: TLSOptions = field(default_factory=TLSOptions)
    timeout: float = 10.0


def tracking_settings(
    uri: str, timeout: float, env: Mapping[str, str] | None = None
) -> TrackingSettings:
    """Settings for `http(s)://HOST[:PORT][/PREFIX]` from MLflow's client variables."""
    env = os.environ if env is None else env
    headers: dict[str, str] = {}
    token = _env(env, "MLFLOW_TRACKING_TOKEN")
    user = _env(env, "MLFLOW_TRACKING_USERNAME")
    password = _env(env, "MLFLOW_TRACKING_PASSWORD")
    if token is not None:
        headers["Authorization"] = "Bearer " + token[1]
    elif user is not None:
        pair = f"{user[1]}:{password[1] if password else ''}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
    ca = _env(env, "MLFLOW_TRACKING_SERVER_CERT_PATH")
    client_cert = _env(env, "MLFLOW_TRACKING_CLIENT_CERT_PATH")
    tls = TLSOptions(
        verify=not _bool(env, "MLFLOW_TRACKING_INSECURE_TLS", False),
        ca_file=ca[1] if ca else None,
        client_cert=client_cert[1] if client_cert else None,
    )
    base_url, userinfo = _without_userinfo(uri.rstrip("/"))
    if userinfo is not None and "Authorization" not in headers:
        headers["Authorization"] = userinfo
    return TrackingSettings(base_url, headers, tls, timeout)


def _without_userinfo(url: str) -> tuple[str, str | None]:
    """`url` without `user:password@`, and that userinfo as a basic Authorization value.

    The credentials must reach the server as a header, and never the log lines,
    spool directory names or `destination.json` that name the destination.
    """
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.netloc.rpartition("@")[2]
    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}".encode()
    value = "Basic " + base64.b64encode(pair).decode("ascii")
    return parts._replace(netloc=host).geturl(), value


@dataclass(frozen=True)
class OtlpSettings:
    """Where and how to send OTLP/HTTP."""

    endpoint: str
    headers: dict[str, str] = field(default_factory=dict, repr=False)  # credentials
    protobuf: bool = True
    timeout: float = 10.0
    gzip: bool = False
    tls: TLSOptions = field(default_factory=TLSOptions)


def _otlp(env: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """OTEL_EXPORTER_OTLP_TRACES_<name>, else OTEL_EXPORTER_OTLP_<name>."""
    return _env(env, f"OTEL_EXPORTER_OTLP_TRACES_{name}", f"OTEL_EXPORTER_OTLP_{name}")


def _headers(found: tuple[str, str] | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    if found is None:
        return headers
    for item in _split(found[1]):
        key, sep, value = item.partition("=")
        name, value = unquote(key.strip()), unquote(value.strip())
        if not sep or not _TOKEN.fullmatch(name) or not _sendable(value):
            # A header http.client cannot send would fail every export, for ever. The
            # value may be a secret: only a valid name is shown.
            shown = f"{name}=<hidden>" if sep and _TOKEN.fullmatch(name) else "<hidden>"
            _warn(
                found[0],
                shown,
                "key=value pairs of HTTP header names and values",
                "the item skipped",
            )
            continue
        headers[name] = value
    return headers


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP header name (RFC 9110)


def _sendable(value: str) -> bool:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return not any(c in value for c in "\r\n\0")


def _endpoint(uri: str, env: Mapping[str, str]) -> str:
    if "://" in uri:  # otlp+http://HOST:PORT[/PATH]
        scheme, sep, target = uri.partition("+")
        if not sep or scheme.lower() != "otlp" or "://" not in target:
            raise ValueError(
                f"expected otlp+http://HOST:PORT[/PATH] or otlp+https://..., not {uri!r}"
            )
        parts = urlsplit(target)
        return target if parts.path not in ("", "/") else target.rstrip("/") + OTLP_PATH
    traces = _env(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if traces is not None:
        return traces[1]  # the signal-specific endpoint is used as it is
    base = _env(env, "OTEL_EXPORTER_OTLP_ENDPOINT")
    if base is not None:
        return base[1].rstrip("/") + OTLP_PATH
    return DEFAULT_OTLP_ENDPOINT


def otlp_settings(
    uri: str, protobuf_available: bool, env: Mapping[str, str] | None = None
) -> OtlpSettings:
    """Settings for `otlp` or `otlp+http(s)://HOST:PORT[/PATH]` from the OTEL_* variables."""
    env = os.environ if env is None else env
    endpoint = _endpoint(uri, env)
    protocol = _otlp(env, "PROTOCOL")
    # Unset: protobuf (tracekit encodes it itself; a caller may say it cannot), quietly.
    protobuf = protobuf_available
    if protocol is not None:
        value = protocol[1].lower()
        if value == "http/json":
            protobuf = False
        elif value == "http/protobuf" and not protobuf_available:
            _warn(
                protocol[0],
                protocol[1],
                "opentelemetry-proto installed (pip install 'tracekit[otlp]') for protobuf",
                "http/json",
            )
        elif value != "http/protobuf":  # grpc is not spoken here
            fallback = "http/protobuf" if protobuf_available else "http/json"
            _warn(protocol[0], protocol[1], "http/protobuf or http/json", fallback)
    timeout_ms = 10_000.0
    found_timeout = _otlp(env, "TIMEOUT")
    if found_timeout is not None:
        timeout_ms = _float(env, found_timeout[0], 10_000.0, 1.0, 3_600_000.0)
    compression = _otlp(env, "COMPRESSION")
    gzip = False
    if compression is not None:
        gzip = compression[1].lower() == "gzip"
        if compression[1].lower() not in ("gzip", "none"):
            _warn(compression[0], compression[1], "gzip or none", "none")
    ca = _otlp(env, "CERTIFICATE")
    cert = _otlp(env, "CLIENT_CERTIFICATE")
    key = _otlp(env, "CLIENT_KEY")
    tls = TLSOptions(
        ca_file=ca[1] if ca else None,
        client_cert=cert[1] if cert else None,
        client_key=key[1] if key else None,
    )
    headers = _headers(_otlp(env, "HEADERS"))
    endpoint, userinfo = _without_userinfo(endpoint)
    if userinfo is not None and not any(k.lower() == "authorization" for k in headers):
        headers["Authorization"] = userinfo
    return OtlpSettings(
        endpoint=endpoint,
        headers=headers,
        protobuf=protobuf,
        timeout=timeout_ms / 1000.0,
        gzip=gzip,
        tls=tls,
    )
