"""Replay recorded provider HTTP interactions (vcrpy YAML cassettes) over real sockets.

Tests point the real SDK clients (openai, anthropic, google-genai, langchain-openai) at a
local server with ``base_url`` so that the whole client stack, its HTTP transport included,
runs against wire data recorded from the live APIs::

    from tests.replay import load_or_skip, replay_server

    cassette = load_or_skip("openai/chat_completions_nonstream_basic.yaml")
    with replay_server(cassette) as server:
        client = openai.OpenAI(api_key="test", base_url=server.base_url + "/v1", max_retries=0)
        client.chat.completions.create(**cassette.request_json(0))
        assert server.requests[0].path == "/v1/chat/completions"

The cassettes live in ``tests/cassettes`` (copied from the project's shared recordings); their
sources and licenses are in ``tests/cassettes/PROVENANCE.md``.
Formats handled: plain vcrpy YAML (text bodies and gzip ``!!binary`` bodies), scalar header
values (one header, not one per character), header-less files (a Content-Type is inferred from
the body) and pydantic-ai's ``parsed_body`` files (the mapping is served as JSON).

Matching: each incoming request is answered with the first not yet used interaction, in recorded
order, whose method (case-insensitively) and path (without query string, percent-decoded) match.
``path_map`` rewrites the incoming path's prefix first, e.g. ``{"/v1/": "/api/v1/"}`` lets an
OpenAI client with ``base_url=server.base_url + "/v1"`` replay an OpenRouter cassette recorded
on ``/api/v1/...`` (or simply use ``base_url=server.base_url + "/api/v1"``). A request that
matches nothing gets HTTP 599 (with ``x-should-retry: false``) and a JSON body saying what was
expected; it is kept in ``server.unmatched``.
"""

from __future__ import annotations

import gzip
import json
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

try:
    import yaml
except ImportError:  # pragma: no cover - pyyaml is a test dependency
    yaml = None  # type: ignore[assignment]

CASSETTES = Path(__file__).resolve().parent / "cassettes"

UNMATCHED_STATUS = 599
# Hop-by-hop or length headers from the recording: the server sets its own framing.
_DROPPED_RESPONSE_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "connection", "keep-alive"}
)
_SSE_FIRST_FIELD = re.compile(rb"^\s*(data|event|id|retry)?:")
_SSE_EVENT_END = re.compile(rb"(?<=\r\n\r\n)|(?<=\n\n)|(?<=\r\r)")
_GZIP_MAGIC = b"\x1f\x8b"


# --------------------------------------------------------------------------------------
# Cassette loading
# --------------------------------------------------------------------------------------
def _safe_loader() -> Any:
    # SafeLoader builds !!binary (base64 gzip bodies) as bytes but no arbitrary objects.
    return getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader


def _to_bytes(body: Any) -> bytes:
    """A recorded body (str, bytes, vcrpy {'string': ...} or None) as bytes."""
    if isinstance(body, dict) and "string" in body:
        body = body["string"]
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    return json.dumps(body).encode("utf-8")


def _header_pairs(headers: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """vcrpy headers {name: [values]} or {name: scalar} as (name, value) pairs."""
    pairs: list[tuple[str, str]] = []
    for name, value in (headers or {}).items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            # A header value is one line on the wire.
            pairs.append((str(name), " ".join(str(v).splitlines())))
    return pairs


def _get(pairs: list[tuple[str, str]], name: str) -> str | None:
    name = name.lower()
    for k, v in pairs:
        if k.lower() == name:
            return v
    return None


def _is_gzip(encoding: str | None) -> bool:
    return encoding is not None and "gzip" in encoding.lower()


def _decode(body: bytes, encoding: str | None) -> bytes:
    if _is_gzip(encoding) or body.startswith(_GZIP_MAGIC):
        try:
            return gzip.decompress(body)
        except (OSError, EOFError):
            return body
    return body


def _json_or_none(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _looks_like_sse(body: bytes) -> bool:
    return bool(_SSE_FIRST_FIELD.match(body))


def _infer_content_type(decoded: bytes) -> str | None:
    if not decoded:
        return None
    if _looks_like_sse(decoded):
        return "text/event-stream; charset=utf-8"
    if _json_or_none(decoded) is not None:
        return "application/json"
    return "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Interaction:
    """One recorded request/response pair, normalised for serving."""

    method: str
    url: str
    path: str  # without query string
    request_headers: dict[str, list[str]]
    request_body: bytes
    status: int
    reason: str
    # Exactly what the replay server sends, Content-Length included, in order.
    response_headers: list[tuple[str, str]]
    # Exactly as on the wire: gzip bytes when Content-Encoding says gzip.
    response_body: bytes

    @property
    def query(self) -> str:
        return urlsplit(self.url).query

    def response_header(self, name: str) -> str | None:
        return _get(self.response_headers, name)

    @property
    def content_type(self) -> str:
        return self.response_header("content-type") or ""

    @property
    def is_gzip(self) -> bool:
        return _is_gzip(self.response_header("content-encoding"))

    @property
    def is_sse(self) -> bool:
        return "text/event-stream" in self.content_type.lower()

    @property
    def decoded_response_body(self) -> bytes:
        return _decode(self.response_body, self.response_header("content-encoding"))

    @property
    def decoded_request_body(self) -> bytes:
        encodings = self.request_headers.get("content-encoding") or [None]
        return _decode(self.request_body, encodings[0])


def _build_interaction(raw: Mapping[str, Any]) -> Interaction:
    request, response = raw["request"], raw["response"]

    if "parsed_body" in request:  # pydantic-ai serializer
        request_body = json.dumps(request["parsed_body"]).encode("utf-8")
    else:
        request_body = _to_bytes(request.get("body"))
    request_headers: dict[str, list[str]] = {}
    for name, value in _header_pairs(request.get("headers")):
        request_headers.setdefault(name.lower(), []).append(value)

    recorded = _header_pairs(response.get("headers"))
    if "parsed_body" in response:
        body = json.dumps(response["parsed_body"]).encode("utf-8")
    else:
        body = _to_bytes(response.get("body"))

    headers = [(k, v) for k, v in recorded if k.lower() not in _DROPPED_RESPONSE_HEADERS]
    encoding = _get(headers, "content-encoding")
    if _is_gzip(encoding) and not body.startswith(_GZIP_MAGIC):
        # Recorded decompressed (vcrpy decode_compressed_response): the header no longer holds.
        headers = [(k, v) for k, v in headers if k.lower() != "content-encoding"]
    if _get(headers, "content-type") is None:
        inferred = _infer_content_type(_decode(body, _get(headers, "content-encoding")))
        if inferred:
            headers.append(("Content-Type", inferred))
    headers.append(("Content-Length", str(len(body))))

    status = response.get("status") or {}
    if isinstance(status, Mapping):
        code, reason = int(status.get("code", 200)), str(status.get("message") or "")
    else:
        code, reason = int(status), ""
    url = str(request.get("uri") or request.get("url") or "")
    return Interaction(
        method=str(request.get("method", "GET")).upper(),
        url=url,
        path=urlsplit(url).path or "/",
        request_headers=request_headers,
        request_body=request_body,
        status=code,
        reason=reason,
        response_headers=headers,
        response_body=body,
    )


@dataclass(frozen=True)
class Cassette:
    path: Path
    interactions: list[Interaction]

    @classmethod
    def load(cls, path: str | Path) -> Cassette:
        if yaml is None:  # pragma: no cover
            raise RuntimeError("pyyaml is needed to load cassettes")
        path = Path(path)
        data = yaml.load(path.read_bytes(), Loader=_safe_loader())
        raw = (data or {}).get("interactions") or []
        return cls(path=path, interactions=[_build_interaction(i) for i in raw])

    def __len__(self) -> int:
        return len(self.interactions)

    @property
    def name(self) -> str:
        try:
            return self.path.resolve().relative_to(CASSETTES).as_posix()
        except ValueError:
            return self.path.name

    def request_json(self, i: int = 0) -> Any:
        """The recorded request body of interaction ``i`` as JSON, or None."""
        return _json_or_none(self.interactions[i].decoded_request_body)

    def response_json(self, i: int = 0) -> Any:
        """The recorded response body of interaction ``i`` (gunzipped) as JSON, or None."""
        return _json_or_none(self.interactions[i].decoded_response_body)

    def response_text(self, i: int = 0) -> str:
        return self.interactions[i].decoded_response_body.decode("utf-8", "replace")

    def sse_events(self, i: int = 0) -> list[dict[str, Any]]:
        """SSE events of interaction ``i``: {'event': name or None, 'data': str}, in order.

        Comment lines (``: keep-alive``) are skipped; multi-line data is joined with newlines.
        """
        events: list[dict[str, Any]] = []
        event: str | None = None
        data: list[str] = []
        for line in [*re.split(r"\r\n|\r|\n", self.response_text(i)), ""]:
            if not line.strip():
                if data:
                    events.append({"event": event, "data": "\n".join(data)})
                event, data = None, []
            elif line.startswith(":"):
                continue
            else:
                key, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if key == "event":
                    event = value.strip()
                elif key == "data":
                    data.append(value)
        return events

    def sse_json(self, i: int = 0) -> list[Any]:
        """The JSON payloads of interaction ``i``'s SSE events (``[DONE]`` and non-JSON skipped)."""
        out = []
        for ev in self.sse_events(i):
            payload = _json_or_none(ev["data"].encode("utf-8"))
            if payload is not None:
                out.append(payload)
        return out


def require_cassettes() -> Path:
    """The cassette folder; skips the test (or module) when it or pyyaml is missing."""
    if not CASSETTES.is_dir():
        pytest.skip(
            f"recorded cassettes not found at {CASSETTES}",
            allow_module_level=True,
        )
    if yaml is None:  # pragma: no cover
        pytest.skip("pyyaml is not installed: cannot read cassettes", allow_module_level=True)
    return CASSETTES


def cassette_names(provider: str) -> set[str]:
    """The file names in ``CASSETTES / provider`` (each must have a test replaying it)."""
    return {p.name for p in (require_cassettes() / provider).glob("*.yaml")}


def load_or_skip(relpath: str | Path) -> Cassette:
    """Load ``CASSETTES / relpath``, skipping when the folder is not there."""
    return Cassette.load(require_cassettes() / relpath)


# --------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------
@dataclass
class ReceivedRequest:
    method: str
    path: str  # without query string, as sent (not percent-decoded)
    query: str
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    body: bytes  # as sent (compressed if the client compressed it)
    interaction: int | None = None  # index of the interaction that answered, None if unmatched
    client: tuple[str, int] | None = None  # peer address: same port = same kept-alive connection

    @property
    def json(self) -> Any:
        return _json_or_none(_decode(self.body, self.headers.get("content-encoding")))


@dataclass
class ReplayServer:
    cassette: Cassette
    path_map: Mapping[str, str] = field(default_factory=dict)
    stream_delay: float = 0.0
    match_body: bool = False
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[ReceivedRequest] = field(default_factory=list)
    unmatched: list[ReceivedRequest] = field(default_factory=list)
    _used: list[bool] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._used = [False] * len(self.cassette.interactions)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def remaining(self) -> list[Interaction]:
        with self._lock:
            return [
                it
                for it, used in zip(self.cassette.interactions, self._used, strict=True)
                if not used
            ]

    @property
    def played(self) -> int:
        with self._lock:
            return sum(self._used)

    def all_played(self) -> bool:
        return self.played == len(self.cassette.interactions)

    def map_path(self, path: str) -> str:
        """The incoming path rewritten by the longest matching ``path_map`` prefix."""
        for prefix in sorted(self.path_map, key=len, reverse=True):
            if path.startswith(prefix):
                return self.path_map[prefix] + path[len(prefix) :]
        return path

    def _match(self, req: ReceivedRequest) -> tuple[int, Interaction] | None:
        path = unquote(self.map_path(req.path))
        with self._lock:
            for index, it in enumerate(self.cassette.interactions):
                if self._used[index]:
                    continue
                if it.method != req.method.upper() or unquote(it.path) != path:
                    continue
                if self.match_body and _json_or_none(it.decoded_request_body) != req.json:
                    continue
                self._used[index] = True
                req.interaction = index
                self.requests.append(req)
                return index, it
            self.requests.append(req)
            self.unmatched.append(req)
            return None

    def _unmatched_body(self, req: ReceivedRequest) -> bytes:
        with self._lock:
            expected = [
                {"index": i, "method": it.method, "path": it.path}
                for i, (it, used) in enumerate(
                    zip(self.cassette.interactions, self._used, strict=True)
                )
                if not used
            ]
        message = (
            f"replay: no remaining interaction in {self.cassette.name} matches "
            f"{req.method} {req.path}"
            + (f" (mapped to {self.map_path(req.path)})" if self.path_map else "")
            + ("" if expected else "; every interaction has already been played")
            + (" with this JSON body" if self.match_body and expected else "")
        )
        return json.dumps(
            {
                "error": {
                    "message": message,
                    "type": "replay_unmatched",
                    "received": {"method": req.method, "path": req.path, "query": req.query},
                    "expected": expected,
                }
            }
        ).encode("utf-8")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    timeout = 60  # an idle keep-alive connection ends its thread after this

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)  # CRLF after the chunk
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self) -> None:
        replay = self.server.replay
        split = urlsplit(self.path)
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        req = ReceivedRequest(
            method=self.command,
            path=split.path,
            query=split.query,
            headers=headers,
            body=self._read_body(),
            client=(str(self.client_address[0]), int(self.client_address[1])),
        )
        found = replay._match(req)
        if found is None:
            body = replay._unmatched_body(req)
            self.send_response_only(UNMATCHED_STATUS, "Unmatched Replay Request")
            self.send_header("Content-Type", "application/json")
            self.send_header("x-should-retry", "false")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            return

        _, it = found
        self.send_response_only(it.status, it.reason or None)
        for name, value in it.response_headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command == "HEAD":
            self.wfile.flush()
            return
        if replay.stream_delay > 0 and it.is_sse and not it.is_gzip:
            for piece in _SSE_EVENT_END.split(it.response_body):
                if piece:
                    self.wfile.write(piece)
                    self.wfile.flush()
                    time.sleep(replay.stream_delay)
        else:
            self.wfile.write(it.response_body)
        self.wfile.flush()

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except OSError:  # reset, broken pipe, timeout, or shut down on server exit
            self.close_connection = True

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def do_OPTIONS(self) -> None:
        self._serve()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, replay: ReplayServer) -> None:
        self.replay = replay
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__((replay.host, replay.port), _Handler)

    def track(self, conn: socket.socket, *, add: bool) -> None:
        with self._connections_lock:
            (self._connections.add if add else self._connections.discard)(conn)

    def close_connections(self) -> None:
        with self._connections_lock:
            conns, self._connections = list(self._connections), set()
        for conn in conns:
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client hanging up mid-response is not a test failure
        super().handle_error(request, client_address)  # a bug here: print the traceback


@contextmanager
def replay_server(
    cassette: Cassette,
    *,
    path_map: Mapping[str, str] | None = None,
    stream_delay: float = 0.0,
    match_body: bool = False,
) -> Iterator[ReplayServer]:
    """Serve ``cassette`` on 127.0.0.1 (a free port) for the duration of the block.

    path_map: incoming path prefix -> recorded path prefix, applied before matching.
    stream_delay: seconds to wait after each SSE event (events written one by one).
    match_body: also require the request JSON to equal the recorded request JSON.
    """
    replay = ReplayServer(
        cassette=cassette,
        path_map=dict(path_map or {}),
        stream_delay=stream_delay,
        match_body=match_body,
    )
    httpd = _HTTPServer(replay)
    replay.port = httpd.server_address[1]
    thread = threading.Thread(
        target=httpd.serve_forever,
        kwargs={"poll_interval": 0.05},
        name=f"replay-server:{replay.port}",
        daemon=True,
    )
    thread.start()
    try:
        yield replay
    finally:
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        thread.join(timeout=5)
