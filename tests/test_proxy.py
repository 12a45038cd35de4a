"""Proxies and CA bundles, honoured as `requests` users expect: HTTP_PROXY (an absolute URI
to the proxy, its credentials as Proxy-Authorization), HTTPS_PROXY (a CONNECT tunnel),
NO_PROXY, REQUESTS_CA_BUNDLE. A forwarding proxy on loopback counts what it relays."""

from __future__ import annotations

import base64
import contextlib
import http.client
import select
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from tests.test_otlp_export import Receiver

import tracekit
from tracekit import _state
from tracekit.exporters._http import proxy_for


class ForwardingProxy:
    """An HTTP proxy: relays absolute-URI requests and tunnels CONNECT; counts both."""

    def __init__(self) -> None:
        self.relayed: list[tuple[str, str]] = []  # (method, absolute URI)
        self.tunnels: list[str] = []  # host:port
        self.auth: list[str | None] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_CONNECT(self) -> None:
                proxy.auth.append(self.headers.get("Proxy-Authorization"))
                proxy.tunnels.append(self.path)
                host, _, port = self.path.rpartition(":")
                upstream = socket.create_connection((host, int(port)), timeout=30)
                self.send_response(200, "Connection established")
                self.end_headers()
                self.close_connection = True
                sockets = [self.connection, upstream]
                with contextlib.suppress(OSError):
                    while True:
                        ready, _, _ = select.select(sockets, [], [], 30)
                        if not ready:
                            break
                        for sock in ready:
                            data = sock.recv(65536)
                            if not data:
                                upstream.close()
                                return
                            (upstream if sock is self.connection else self.connection).sendall(data)
                upstream.close()

            def _relay(self) -> None:
                proxy.auth.append(self.headers.get("Proxy-Authorization"))
                proxy.relayed.append((self.command, self.path))
                target = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("proxy-authorization", "connection", "host")
                }
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                try:
                    path = target.path + (f"?{target.query}" if target.query else "")
                    conn.request(self.command, path, body=body or None, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                finally:
                    conn.close()
                self.send_response(response.status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._relay()

            def do_POST(self) -> None:
                self._relay()

            def do_PATCH(self) -> None:
                self._relay()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def forwarding() -> Iterator[ForwardingProxy]:
    proxy = ForwardingProxy()
    yield proxy
    proxy.close()


@pytest.fixture(autouse=True)
def _no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    _state.reset()
    yield
    _state.reset()


def traced(n: int) -> list[str]:
    ids = []
    for i in range(n):
        with tracekit.start_span("step", inputs={"i": i}):
            pass
        ids.append(str(tracekit.get_last_trace_id()))
    return ids


def send(uri: str, tmp_path: Path, n: int = 3) -> list[str]:
    tracekit.configure(tracking_uri=uri, spool_dir=str(tmp_path / "spool"))
    ids = traced(n)
    assert tracekit.flush(20)
    _state.reset()
    return ids


def test_http_proxy_relays_every_request_with_its_credentials(
    tmp_path: Path, forwarding: ForwardingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector = Receiver()
    try:
        host = forwarding.url.removeprefix("http://")
        monkeypatch.setenv("HTTP_PROXY", f"http://alice:s%40cret@{host}")
        ids = send(f"otlp+{collector.url}/v1/traces", tmp_path)
    finally:
        collector.close()
    assert sorted(collector.trace_ids()) == sorted(ids)
    assert forwarding.relayed == [("POST", f"{collector.url}/v1/traces")] * len(collector.received)
    expected = "Basic " + base64.b64encode(b"alice:s@cret").decode()
    assert set(forwarding.auth) == {expected}


def test_no_proxy_bypasses_it(
    tmp_path: Path, forwarding: ForwardingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector = Receiver()
    try:
        monkeypatch.setenv("HTTP_PROXY", forwarding.url)
        monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
        ids = send(f"otlp+{collector.url}/v1/traces", tmp_path)
    finally:
        collector.close()
    assert sorted(collector.trace_ids()) == sorted(ids)
    assert forwarding.relayed == []
    assert proxy_for("http", "127.0.0.1", 80) is None


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def test_https_proxy_tunnels_and_requests_ca_bundle_verifies(
    tmp_path: Path,
    forwarding: ForwardingProxy,
    monkeypatch: pytest.MonkeyPatch,
    certificate: tuple[Path, Path],
) -> None:
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    collector = Receiver(context)
    try:
        monkeypatch.setenv("HTTPS_PROXY", forwarding.url)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))  # the server's self-signed CA
        ids = send(f"otlp+{collector.url}/v1/traces", tmp_path)
    finally:
        collector.close()
    assert sorted(collector.trace_ids()) == sorted(ids)
    port = collector.url.rsplit(":", 1)[1]
    assert forwarding.tunnels == [f"127.0.0.1:{port}"]  # one kept-alive tunnel
    assert forwarding.relayed == []
