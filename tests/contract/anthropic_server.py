"""The fake server for Anthropic: the base one, also sending the `request-id` header."""

from __future__ import annotations

from tracekit import _fake_server
from tracekit._fake_server import FakeProviderServer

REQUEST_ID = "req_fake_anthropic"


class _IdHandler(_fake_server._Handler):
    """The fake server's handler, also sending Anthropic's `request-id` header."""

    def end_headers(self) -> None:
        self.send_header("request-id", REQUEST_ID)
        super().end_headers()


class IdServer(FakeProviderServer):
    def __init__(self, drop_after: int | None = None) -> None:
        super().__init__(drop_after=drop_after)
        self.RequestHandlerClass = _IdHandler
