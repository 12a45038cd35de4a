"""A local stand-in for a Databricks workspace's front door, before a real ``mlflow server``.

It does what tracekit meets at a workspace and nothing more:

- ``POST /oidc/v1/token``: the OAuth client-credentials grant (form-encoded
  ``grant_type=client_credentials``, ``scope=all-apis``; the client id and secret in HTTP
  Basic auth, as the Databricks SDKs send them, or as form fields). It answers
  ``{"access_token", "token_type": "Bearer", "expires_in"}`` for a known client, 401
  ``invalid_client`` otherwise. ``expires_in`` is configurable; every token request is
  recorded in ``token_requests``.
- ``/api/*`` and ``/v1/traces``: ``Authorization: Bearer <token>`` must carry one of
  ``pats`` or an unexpired issued token, else 401
  ``{"error_code": "UNAUTHENTICATED", "message": ...}``.
- throttling: while ``throttle_until`` (monotonic) is in the future, answer 429
  ``REQUEST_LIMIT_EXCEEDED`` with ``Retry-After: <retry_after>``.
- the rest is forwarded to the MLflow server (no credentials passed on).

Every request is recorded in ``requests`` (arrival time, method, path, status,
Authorization header)::

    with WorkspaceFront(mlflow_server.url, pats={"dapi-good"}) as front:
        os.environ["DATABRICKS_HOST"] = front.url
        ...
        assert all(r.status == 200 for r in front.api_requests())
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

TOKEN_PATH = "/oidc/v1/token"  # noqa: S105 - a path
_NOT_RELAYED = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "host", "content-length", "authorization"}
)


@dataclass(frozen=True)
class Seen:
    """One request as the front saw it."""

    time: float  # time.monotonic() at arrival
    method: str
    path: str
    status: int
    authorization: str

    @property
    def api(self) -> bool:
        return self.path != TOKEN_PATH


@dataclass(frozen=True)
class TokenRequest:
    time: float
    grant_type: str
    scope: str
    client_id: str
    basic: bool  # the client id and secret came in HTTP Basic auth
    status: int


class WorkspaceFront:
    """A threaded HTTP server on 127.0.0.1 in front of ``upstream`` (the MLflow server)."""

    def __init__(
        self,
        upstream: str,
        *,
        pats: Iterable[str] = (),
        clients: dict[str, str] | None = None,
        expires_in: float = 3600,
        retry_after: str = "1",
    ) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.pats = set(pats)
        self.clients = dict(clients or {})
        self.expires_in = expires_in
        self.retry_after = retry_after
        self.throttle_until = 0.0
        self.requests: list[Seen] = []
        self.token_requests: list[TokenRequest] = []
        self._issued: dict[str, float] = {}  # token -> monotonic expiry
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- what tests look at -------------------------------------------------------------

    def api_requests(self) -> list[Seen]:
        with self._lock:
            return [r for r in self.requests if r.api]

    def statuses(self) -> list[int]:
        return [r.status for r in self.api_requests()]

    def issued(self) -> list[str]:
        with self._lock:
            return list(self._issued)

    def revoke(self) -> None:
        """Every issued token stops working (as if revoked or expired server-side)."""
        with self._lock:
            self._issued = dict.fromkeys(self._issued, 0.0)

    def most_in_one_second(self) -> int:
        """The most API requests that arrived within any window of one second."""
        times = sorted(r.time for r in self.api_requests())
        most, j = 0, 0
        for i, start in enumerate(times):
            while j < len(times) and times[j] < start + 1.0:
                j += 1
            most = max(most, j - i)
        return most

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> WorkspaceFront:
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> WorkspaceFront:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the handler's decisions --------------------------------------------------------

    def _grant(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, object]]:
        form = {k: v[0] for k, v in parse_qs(body.decode("latin-1")).items()}
        client_id, secret, basic = form.get("client_id", ""), form.get("client_secret", ""), False
        authorization = headers.get("authorization", "")
        if authorization.startswith("Basic "):
            pair = base64.b64decode(authorization[6:]).decode()
            client_id, _, secret = pair.partition(":")
            basic = True
        grant, scope = form.get("grant_type", ""), form.get("scope", "")
        if grant != "client_credentials" or scope != "all-apis":
            status, answer = 400, {"error": "invalid_request", "error_description": "bad grant"}
        elif self.clients.get(client_id) != secret or not client_id:
            status = 401
            answer = {
                "error": "invalid_client",
                "error_description": "Client authentication failed",
            }
        else:
            token = "front-oauth-" + uuid.uuid4().hex
            with self._lock:
                self._issued[token] = time.monotonic() + self.expires_in
            status = 200
            answer = {"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in}
        with self._lock:
            self.token_requests.append(
                TokenRequest(time.monotonic(), grant, scope, client_id, basic, status)
            )
        return status, answer

    def _authorized(self, authorization: str) -> bool:
        if not authorization.startswith("Bearer "):
            return False
        token = authorization[len("Bearer ") :]
        with self._lock:
            return token in self.pats or self._issued.get(token, 0.0) > time.monotonic()

    def _throttled(self, now: float) -> bool:
        with self._lock:
            return now < self.throttle_until

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.requests.append(seen)

    def forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            sent = {k: v for k, v in headers.items() if k.lower() not in _NOT_RELAYED}
            conn.request(method, path, body=body or None, headers=sent)
            resp = conn.getresponse()
            return resp.status, resp.getheaders(), resp.read()
        finally:
            conn.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients that hang up are not errors."""


def _handler(front: WorkspaceFront) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            head = [f"HTTP/1.1 {status} {http.client.responses.get(status, '')}"]
            head += [f"{k}: {v}" for k, v in headers if k.lower() not in _NOT_RELAYED]
            head.append(f"Content-Length: {len(body)}")
            # One write: headers and body apart meet Nagle and delayed ACKs.
            self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)

        def _json(self, status: int, answer: object, *extra: tuple[str, str]) -> None:
            headers = [("Content-Type", "application/json"), *extra]
            self._reply(status, headers, json.dumps(answer).encode())

        def _handle(self) -> None:
            arrived = time.monotonic()
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            path = urlsplit(self.path).path
            authorization = headers.get("authorization", "")
            if path == TOKEN_PATH and self.command == "POST":
                status, answer = front._grant(headers, body)
                front._record(Seen(arrived, self.command, path, status, authorization))
                self._json(status, answer)
                return
            if not front._authorized(authorization):
                status = 401
                answer: object = {
                    "error_code": "UNAUTHENTICATED",
                    "message": "Invalid access token.",
                }
                front._record(Seen(arrived, self.command, path, status, authorization))
                self._json(status, answer)
                return
            if front._throttled(arrived):
                front._record(Seen(arrived, self.command, path, 429, authorization))
                answer = {"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "Too many requests"}
                self._json(429, answer, ("Retry-After", front.retry_after))
                return
            try:
                status, reply, data = front.forward(
                    self.command, self.path, dict(self.headers.items()), body
                )
            except (OSError, http.client.HTTPException) as exc:
                status, reply = 502, [("Content-Type", "application/json")]
                data = json.dumps({"error_code": "BAD_GATEWAY", "message": str(exc)}).encode()
            front._record(Seen(arrived, self.command, path, status, authorization))
            self._reply(status, [(k, v) for k, v in reply if k.lower() == "content-type"], data)

        def do_GET(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

    return Handler
