"""A reverse proxy on 127.0.0.1 that injects faults in front of an HTTP server (e.g. MLflow).

``mode`` can be changed at any time:

- ``"pass"``: forward the request upstream and relay the answer.
- ``"refuse"``: nothing listens on the port (connections are refused); a request on an
  already open connection is read and the connection closed without an answer.
- ``"503"`` / ``"429"``: answer that status with ``Retry-After: <retry_after>``, not forwarded.
- ``"stall"``: read the request and never answer (until the mode changes or the proxy stops,
  then close the connection).
- ``"pass_then_stall"``: forward the request (so it takes effect upstream), then never answer.

``max_body``: a request whose body is longer is answered 413 and not forwarded (nginx's
``client_max_body_size``). ``scripted``: ``(path_prefix, status)`` pairs; the next request
whose path starts with a prefix is answered that status (with ``Retry-After``) instead of
being forwarded, once per pair.

``requests`` records ``(method, path, mode_at_arrival)`` for every request read.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import urlsplit

MODES = frozenset({"pass", "refuse", "503", "429", "stall", "pass_then_stall"})
# Hop-by-hop headers, and the ones each side sets itself.
_NOT_RELAYED = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
     "transfer-encoding", "upgrade", "host", "content-length"}
)  # fmt: skip


class FaultProxy:
    """A threaded HTTP reverse proxy with a switchable fault ``mode``."""

    def __init__(
        self, upstream: str, port: int = 0, *, mode: str = "pass", retry_after: str = "1"
    ) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.upstream_timeout = 60.0
        self.retry_after = retry_after
        self.port = port
        self.url = ""
        self.requests: list[tuple[str, str, str]] = []
        self.max_body: int | None = None
        self.scripted: list[tuple[str, int]] = []
        self._mode = self._check(mode)
        self._cond = threading.Condition()
        self._switch = threading.Lock()  # serializes listener close / re-bind
        self._server: ThreadingHTTPServer | None = None
        self._conns: set[socket.socket] = set()  # open client connections
        self._stopped = True

    @staticmethod
    def _check(mode: str) -> str:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}, expected one of {sorted(MODES)}")
        return mode

    @property
    def mode(self) -> str:
        """The current fault mode."""
        with self._cond:
            return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        self._check(mode)
        with self._switch:
            if mode != "refuse" and not self._stopped:
                self._listen()  # re-bind the same port before the new mode applies
            with self._cond:
                self._mode = mode
                self._cond.notify_all()  # release stalled requests
            if mode == "refuse":
                self._close_listener()  # the server is down: also drop open connections

    def count(self, path_prefix: str | None = None) -> int:
        """How many requests were read (whose path starts with ``path_prefix``)."""
        with self._cond:
            return sum(
                1 for _, p, _ in self.requests if path_prefix is None or p.startswith(path_prefix)
            )

    def start(self) -> FaultProxy:
        """Bind the port (a free one if 0) and start serving."""
        with self._switch:
            self._stopped = False
            self._listen()
            if self.mode == "refuse":
                self._close_listener()
        return self

    def stop(self) -> None:
        """Stop serving and release stalled requests. Idempotent."""
        with self._switch:
            with self._cond:
                self._stopped = True
                self._cond.notify_all()
            self._close_listener()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _listen(self) -> None:
        if self._server is not None:
            return
        server = _Server(("127.0.0.1", self.port), _handler(self))
        self.port = int(server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = server
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def _close_listener(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._cond:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def _opened(self, conn: socket.socket) -> None:
        with self._cond:
            self._conns.add(conn)

    def _closed(self, conn: socket.socket) -> None:
        with self._cond:
            self._conns.discard(conn)

    def _arrived(self, method: str, path: str) -> str:
        with self._cond:
            mode = "refuse" if self._stopped else self._mode
            self.requests.append((method, path, mode))
            return mode

    def _scripted(self, path: str) -> int | None:
        with self._cond:
            for i, (prefix, status) in enumerate(self.scripted):
                if path.startswith(prefix):
                    del self.scripted[i]
                    return status
        return None

    def _hold(self, mode: str) -> None:
        """Block while ``mode`` is current and the proxy runs."""
        with self._cond:
            self._cond.wait_for(lambda: self._mode != mode or self._stopped)

    def forward(
        self, method: str, path: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        """Send one request upstream; return status, reason, headers and body."""
        conn = http.client.HTTPConnection(
            self.upstream_host, self.upstream_port, timeout=self.upstream_timeout
        )
        try:
            sent = {k: v for k, v in headers if k.lower() not in _NOT_RELAYED}
            sent["Host"] = f"{self.upstream_host}:{self.upstream_port}"
            conn.request(method, path, body=body or None, headers=sent)  # sets Content-Length
            resp = conn.getresponse()
            return resp.status, resp.reason, resp.getheaders(), resp.read()
        finally:
            conn.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # stalled handlers never block shutdown
    allow_reuse_address = True  # re-bind the same port after "refuse"

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients that hang up (or connections dropped by "refuse") are not errors."""


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms stalls
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            proxy._opened(self.connection)

        def finish(self) -> None:
            proxy._closed(self.connection)
            super().finish()

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                while self.rfile.readline().strip():  # trailers
                    pass
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(
            self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes
        ) -> None:
            self.send_response_only(status, reason)
            for k, v in headers:
                if k.lower() not in _NOT_RELAYED:
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _handle(self) -> None:
            mode = proxy._arrived(self.command, urlsplit(self.path).path)
            body = self._body()
            if mode == "pass" and proxy.max_body is not None and len(body) > proxy.max_body:
                page = b"<html><head><title>413 Request Entity Too Large</title></head></html>"
                self._send(413, "Request Entity Too Large", [("Content-Type", "text/html")], page)
                return
            scripted = proxy._scripted(urlsplit(self.path).path) if mode == "pass" else None
            if scripted is not None:
                mode = str(scripted)
            if mode in ("refuse", "stall", "pass_then_stall"):
                if mode == "pass_then_stall":
                    with contextlib.suppress(OSError, http.client.HTTPException):
                        proxy.forward(self.command, self.path, list(self.headers.items()), body)
                if mode != "refuse":
                    proxy._hold(mode)
                self.close_connection = True  # drop it without an answer
                return
            if mode.isdigit():  # "503", "429" or a scripted status
                status = int(mode)
                message = http.client.responses[status]
                payload = json.dumps({"error_code": "TEMPORARILY_UNAVAILABLE", "message": message})
                headers = [("Content-Type", "application/json"), ("Retry-After", proxy.retry_after)]
                self._send(status, message, headers, payload.encode())
                return
            try:
                answer = proxy.forward(self.command, self.path, list(self.headers.items()), body)
            except (OSError, http.client.HTTPException) as e:
                payload = json.dumps({"error_code": "BAD_GATEWAY", "message": str(e)}).encode()
                answer = (502, "Bad Gateway", [("Content-Type", "application/json")], payload)
            self._send(*answer)

        def __getattr__(self, name: str) -> object:
            """Every ``do_<METHOD>`` is :meth:`_handle`."""
            if name.startswith("do_"):
                return self._handle
            raise AttributeError(name)

    return Handler
