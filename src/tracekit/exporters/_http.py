"""A small HTTP client for the remote exporters (standard library only).

One keep-alive connection per client, reopened after errors; a timeout on
every request; TLS settings; gzip; optionally credentials consulted on every
request (`Auth`, e.g. an OAuth token source that caches its token) and a
`RateLimiter` that spaces the requests. Proxies and CA bundles are honoured
the way `requests` users expect: `HTTPS_PROXY` / `HTTP_PROXY` (lower case
first, credentials in the proxy URL), `NO_PROXY`, and `REQUESTS_CA_BUNDLE` /
`CURL_CA_BUNDLE` beside OpenSSL's own `SSL_CERT_FILE` / `SSL_CERT_DIR`.

Why not urllib3 or requests: exit must cut a request to a stalled server
short from another thread (shutting the socket down), and a forked child
must find no pool and no lock of its parent's; one connection that we own
does both in a few lines, with nothing to import beyond `http.client`, while
a pool would hide the socket and add 20-40 ms of imports to the first
export. Proxies (an absolute URI to an HTTP proxy, a CONNECT tunnel for
HTTPS) and CA bundles are the parts of `requests` users rely on here, and
they take a few lines too. Imported only when a remote
destination is configured. Failures come back as `ExportResult`s the delivery
wrappers understand: connection errors, timeouts, 429 and 5xx are retryable,
and `Retry-After` (seconds or an HTTP date) is carried along.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import encodings.idna  # noqa: F401 - socket imports it on first connect: not on the worker
import gzip
import http.client
import math
import os
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Protocol
from urllib.parse import unquote, urlsplit
from urllib.request import (  # type: ignore[attr-defined]  # not in typeshed
    getproxies_environment,
    proxy_bypass_environment,
)

from tracekit import __version__
from tracekit.exporters.base import SUCCESS, ExportResult

USER_AGENT = f"tracekit/{__version__}"
_RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class TLSOptions:
    """How to verify the server and whether to present a client certificate."""

    verify: bool = True
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None


@dataclass
class Response:
    """A finished HTTP exchange."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class AuthError(Exception):
    """Credentials could not be obtained (e.g. the token endpoint refused); carries the result."""

    def __init__(self, result: ExportResult) -> None:
        super().__init__(result.message)
        self.result = result


class InvalidHeaderError(ValueError):
    """A header value HTTP does not allow (a token with a line break pasted into a
    variable): a configuration error. The message names the header, never its value."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"the {name} header's value has a line break or another character HTTP does not "
            "allow (it was not sent)"
        )
        self.header = name


# Control characters but tab (RFC 9110 field values); non-Latin-1 text cannot be sent either.
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]|[^\x00-\xff]")


def check_headers(headers: dict[str, str]) -> None:
    """Raise InvalidHeaderError for the first header whose value cannot be sent as is."""
    for name, value in headers.items():
        if _BAD_VALUE.search(value):
            raise InvalidHeaderError(name)


class Auth(Protocol):
    """Credentials consulted on every request."""

    def headers(self) -> dict[str, str]:
        """The headers to send now (raises AuthError when there are none to be had)."""
        ...

    def rejected(self, headers: dict[str, str]) -> None:
        """The server answered 401 to a request that carried `headers`."""
        ...

    def close(self) -> None:
        """Release connections (may be called from another thread)."""
        ...


class RateLimiter:
    """Spaces requests at least `1.05 / rate` seconds apart (thread-safe).

    So no window of one second holds more than `rate` requests, with 5% to
    spare for the jitter between sending a request and its arrival.
    """

    MARGIN = 1.05

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.interval = self.MARGIN / rate
        self._lock = threading.Lock()
        self._last: float | None = None

    def wait(self, stop: threading.Event) -> bool:
        """Wait for this request's turn; False if `stop` was set meanwhile."""
        with self._lock:
            if self._last is not None:
                delay = self._last + self.interval - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    return False
            self._last = time.monotonic()
            return True


@dataclass
class HttpClient:
    """Sends requests to one origin (`scheme://host:port`) over a reused connection.

    Thread-safe: requests are serialized on one connection (the exporters run
    on one worker thread; the spool drainer is the only other caller).
    """

    base_url: str
    timeout: float = 10.0
    headers: dict[str, str] = field(default_factory=dict, repr=False)  # credentials
    tls: TLSOptions = field(default_factory=TLSOptions)
    gzip_requests: bool = False
    auth: Auth | None = field(default=None, repr=False)  # consulted per request, after headers
    pacer: RateLimiter | None = None  # spaces every request sent, retries included

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {self.base_url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self.proxy = proxy_for(self.scheme, self.host, self.port)
        self._lock = threading.Lock()
        self._conn: http.client.HTTPConnection | None = None
        self._closing = threading.Event()  # cuts a pacing wait short

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Send one request; raises OSError (incl. timeouts), http.client.HTTPException,
        AuthError (no credentials to be had) or InvalidHeaderError."""
        credentials = self.auth.headers() if self.auth is not None else {}
        all_headers = {"User-Agent": USER_AGENT, **self.headers, **credentials, **(headers or {})}
        # http.client would refuse such a value with the value in its message (a token).
        check_headers(all_headers)
        if body is not None and self.gzip_requests:
            body = gzip.compress(body, compresslevel=5)
            all_headers["Content-Encoding"] = "gzip"
        with self._lock:
            for attempt in (1, 2):
                reused = self._conn is not None and self._conn.sock is not None
                conn = self._connection(timeout)
                try:
                    if self.pacer is not None:
                        if conn.sock is None:
                            conn.connect()  # so the request leaves as soon as it is its turn
                        if not self.pacer.wait(self._closing):
                            raise ConnectionAbortedError("the client was closed")
                    target = self.prefix + path
                    if self.proxy is not None and self.scheme == "http":
                        # An HTTP proxy takes the absolute URI (HTTPS goes through a tunnel).
                        target = f"http://{self.host}:{self.port}{target}"
                        all_headers.update(self.proxy.headers)
                    conn.request(method, target, body=body, headers=all_headers)
                    raw = conn.getresponse()
                    data = raw.read()
                except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                    # A kept-alive connection the server had closed while idle: send
                    # once more on a new one. A new connection failing is not resent.
                    self._close()
                    if attempt == 2 or not reused:
                        raise
                    continue
                except BaseException:
                    self._close()
                    raise
                if raw.will_close:
                    self._close()
                if raw.status == 401 and self.auth is not None:
                    self.auth.rejected(credentials)  # once: the next request asks again
                return Response(raw.status, {k.lower(): v for k, v in raw.getheaders()}, data)
        raise AssertionError("unreachable")

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        wanted = self.timeout if timeout is None else timeout
        if self._conn is None:
            proxy = self.proxy
            host, port = (proxy.host, proxy.port) if proxy is not None else (self.host, self.port)
            if self.scheme == "https":
                self._conn = http.client.HTTPSConnection(
                    host, port, timeout=wanted, context=_ssl_context(self.tls)
                )
                if proxy is not None:
                    self._conn.set_tunnel(self.host, self.port, headers=proxy.headers)
            else:
                self._conn = http.client.HTTPConnection(host, port, timeout=wanted)
        else:
            self._conn.timeout = wanted
            if self._conn.sock is not None:
                self._conn.sock.settimeout(wanted)
        return self._conn

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        """Close the connection, also from another thread while a request waits on it.

        Does not take the request lock: shutdown must not wait for a stalled
        server. Shutting the socket down wakes the waiting request, which fails.
        """
        self._closing.set()
        if self.auth is not None:
            self.auth.close()
        conn = self._conn
        sock = conn.sock if conn is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._lock.acquire(timeout=1.0):
            try:
                self._close()
            finally:
                self._lock.release()


@dataclass(frozen=True)
class Proxy:
    """An HTTP proxy: where it listens, and its credentials as a header (never logged)."""

    host: str
    port: int
    headers: dict[str, str] = field(default_factory=dict, repr=False)


def proxy_for(scheme: str, host: str, port: int) -> Proxy | None:
    """The proxy `requests` would use for `scheme://host:port`, from the environment
    (`https_proxy`/`HTTPS_PROXY`, `http_proxy`/`HTTP_PROXY`, `all_proxy`, `no_proxy`)."""
    proxies = getproxies_environment()
    url = proxies.get(scheme) or proxies.get("all")
    if not url or proxy_bypass_environment(f"{host}:{port}", proxies):
        return None
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    headers = {}
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        headers["Proxy-Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
    default = 443 if parts.scheme == "https" else 80
    return Proxy(parts.hostname, parts.port or default, headers)


def _ca_bundle(tls: TLSOptions) -> str | None:
    """The CA file to verify with: the destination's own setting, else the bundle
    `requests` would use (OpenSSL reads SSL_CERT_FILE / SSL_CERT_DIR by itself)."""
    if tls.ca_file:
        return tls.ca_file
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        value = os.environ.get(name)
        if value:
            return value
    return None


def _ssl_context(tls: TLSOptions) -> ssl.SSLContext:
    bundle = _ca_bundle(tls)
    if bundle and os.path.isdir(bundle):
        context = ssl.create_default_context(capath=bundle)
    else:
        context = ssl.create_default_context(cafile=bundle)
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.client_cert:
        context.load_cert_chain(tls.client_cert, tls.client_key)
    return context


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:  # "inf" or "nan" would hold the circuit open for ever
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        date = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if date.tzinfo is None:  # "-0000": UTC, not the local time .timestamp() would assume
        date = date.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, date.timestamp() - (time.time() if now is None else now))


def result_of(response: Response, what: str) -> ExportResult:
    """An ExportResult for a response: success, or a failure saying what and why."""
    if response.ok:
        return SUCCESS
    detail = response.body[:300].decode("utf-8", "replace").strip()
    return ExportResult(
        ok=False,
        retryable=response.status in _RETRYABLE_STATUS,
        retry_after=retry_after(response.headers.get("retry-after")),
        message=f"{what}: HTTP {response.status}" + (f" {detail}" if detail else ""),
        status=response.status,
    )


def result_of_error(exc: BaseException, what: str) -> ExportResult:
    """An ExportResult for a request that raised (refused, reset, timed out, bad TLS)."""
    if isinstance(exc, AuthError):
        return exc.result
    if isinstance(exc, InvalidHeaderError):
        return ExportResult(ok=False, configuration=True, message=f"{what}: {exc}")
    if isinstance(exc, TimeoutError):
        reason = "timed out"
    elif isinstance(exc, ConnectionRefusedError):
        reason = "connection refused"
    elif isinstance(exc, socket.gaierror):
        reason = f"the host name does not resolve ({exc})"
    else:
        reason = f"{type(exc).__name__}: {exc}"
    retryable = not isinstance(exc, ssl.SSLCertVerificationError)
    return ExportResult(ok=False, retryable=retryable, message=f"{what}: {reason}")
