"""The viewer's HTTP server: a read-only JSON API over the index, and the page.

Standard library only (`http.server`): the viewer installs nothing. Routes:

    GET /                          the page (static/index.html, app.js, app.css)
    GET /api/traces?...            one page of the list (filters, sort, paging)
    GET /api/traces/<id>           one trace's full record, with its assessments
    GET /api/facets                values the filters can take
    GET /api/sessions?...          sessions, most recently active first
    GET /api/sessions/<id>?...     a page of a session's traces in order, as turns
    GET /api/wait?generation=N     long poll: returns when the store has new lines

Requests whose `Host` is some domain name (not localhost, an IP address or the
name given with --host) are refused, so a web page elsewhere cannot read the
store through DNS rebinding.
"""

from __future__ import annotations

import ipaddress
import json
import math
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tracekit._ui.index import Query, StoreIndex

STATIC = Path(__file__).parent / "static"
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
WAIT_SECONDS = 20.0
POLL_SECONDS = 0.3
# The page loads only its own script and style, and trace data is never markup.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class UIServer(ThreadingHTTPServer):
    """Serves one store's viewer until `shutdown()`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, store: Path, host: str = "127.0.0.1", port: int = 0, index: StoreIndex | None = None
    ) -> None:
        self.index = index or StoreIndex(store)  # indexed at the first request or refresh()
        self.closing = False
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), self.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"

    def allows(self, host_header: str) -> bool:
        """Whether a request's `Host` names this server, not some other site's domain.

        A DNS-rebinding page reaches the server under its own domain name: refuse
        names other than localhost and the one given with --host. An address written
        as such (127.0.0.1, or this machine's address when listening on 0.0.0.0) is
        fine: no other site can be served under it.
        """
        try:
            name = urlsplit("//" + host_header).hostname or ""  # lowercase, no port or []
        except ValueError:  # "[::1" and the like
            return False
        if name in ("localhost", str(self.server_address[0]).lower()):
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True

    def close(self) -> None:
        self.closing = True
        self.shutdown()
        self.server_close()
        self.index.close()


def _int(values: dict[str, list[str]], name: str, default: int | None = None) -> int | None:
    try:
        return int(values[name][0])
    except (KeyError, ValueError, IndexError):
        return default


def _query(values: dict[str, list[str]]) -> Query:
    def text(name: str) -> str:
        return values.get(name, [""])[0].strip()

    since, until = _int(values, "since"), _int(values, "until")  # milliseconds
    return Query(
        text=text("q"),
        status=text("status"),
        tag=text("tag"),
        session=text("session"),
        user=text("user"),
        model=text("model"),
        since_ns=since * 1_000_000 if since is not None else None,
        until_ns=until * 1_000_000 if until is not None else None,
        sort=text("sort") or "start",
        ascending=text("order") == "asc",
        offset=_int(values, "offset", 0) or 0,
        limit=_int(values, "limit", 50) or 50,
    )


def _turn(record: dict[str, Any]) -> dict[str, Any]:
    """A trace as one turn of a conversation: its root's inputs and outputs."""
    spans = record.get("spans") or []
    root = next((s for s in spans if s.get("parent_id") is None), spans[0] if spans else {})
    keys = (
        "trace_id",
        "name",
        "status",
        "start_time_ns",
        "end_time_ns",
        "token_usage",
        "cost",
        "assessments",
    )
    turn = {k: record.get(k) for k in keys}
    turn["inputs"] = root.get("inputs")
    turn["outputs"] = root.get("outputs")
    return turn


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # NaN and Infinity: the file store writes them, JSON.parse cannot
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def to_json(body: Any) -> str:
    """JSON a browser can parse (no NaN or Infinity literals)."""
    try:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return json.dumps(_finite(body), ensure_ascii=False, separators=(",", ":"))


class _Handler(BaseHTTPRequestHandler):
    server: UIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a quiet server: the terminal shows only the URL

    def do_GET(self) -> None:
        if not self.server.allows(self.headers.get("Host", "")):
            self._send(HTTPStatus.FORBIDDEN, b"unknown host\n", "text/plain")
            return
        parts = urlsplit(self.path)
        path, values = parts.path, parse_qs(parts.query)
        try:
            if path.startswith("/api/"):
                self._api(path[5:], values)
            else:
                self._static(path)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _static(self, path: str) -> None:
        name = "index.html" if path in ("/", "/index.html") else path.removeprefix("/static/")
        target = STATIC / name
        if "/" in name or target.suffix not in TYPES or not target.is_file():
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
            return
        self._send(HTTPStatus.OK, target.read_bytes(), TYPES[target.suffix] + "; charset=utf-8")

    def _api(self, route: str, values: dict[str, list[str]]) -> None:
        index = self.server.index
        head, _, rest = route.partition("/")
        rest = unquote(rest)
        body: Any
        if route == "wait":
            body = {"generation": self._wait(_int(values, "generation", 0) or 0)}
        else:
            index.refresh(min_interval=POLL_SECONDS)
            if route == "traces":
                total, traces = index.search(_query(values))
                body = {"total": total, "traces": traces}
            elif head == "traces" and rest:
                body = index.get(rest)
            elif route == "facets":
                body = index.facets()
            elif route == "sessions":
                offset, limit = _int(values, "offset", 0) or 0, _int(values, "limit", 50) or 50
                total, sessions = index.sessions(offset, limit)
                body = {"total": total, "sessions": sessions}
            elif head == "sessions" and rest:
                offset, limit = _int(values, "offset", 0) or 0, _int(values, "limit", 200) or 200
                total, ids = index.session_trace_ids(rest, offset, limit)
                turns = [index.get(t) for t in ids]
                body = {
                    "session_id": rest,
                    "total": total,
                    "offset": offset,
                    "turns": [_turn(r) for r in turns if r],
                }
            else:
                body = None
            if body is None:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"not found: /api/{route}"})
                return
            if isinstance(body, dict):
                body = {**body, "skipped": index.skipped(), "generation": index.generation}
        self._json(HTTPStatus.OK, body)

    def _wait(self, seen: int) -> int:
        index = self.server.index
        deadline = time.monotonic() + WAIT_SECONDS
        while not self.server.closing and time.monotonic() < deadline:
            index.refresh(min_interval=POLL_SECONDS)
            if index.generation != seen:
                break
            time.sleep(POLL_SECONDS / 2)
        return index.generation

    def _json(self, status: HTTPStatus, body: Any) -> None:
        self._send(status, to_json(body).encode(), "application/json")

    def _send(self, status: HTTPStatus, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        self.wfile.write(data)
