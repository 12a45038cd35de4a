"""The fake provider server's request log stays bounded (benchmarks make many calls)."""

from __future__ import annotations

import json
import urllib.request

from tracekit._fake_server import FakeProviderServer


def post(server: FakeProviderServer, n: int) -> None:
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": str(n)}]})
    request = urllib.request.Request(  # noqa: S310 - loopback
        server.base_url + "/v1/chat/completions",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:  # noqa: S310
        assert response.status == 200


def test_the_request_log_keeps_the_most_recent_requests() -> None:
    with FakeProviderServer(max_requests=10) as server:
        for n in range(25):
            post(server, n)
        assert 9 <= len(server.requests) <= 10
        contents = [r["body"]["messages"][0]["content"] for r in server.requests]
        assert contents == [str(n) for n in range(25 - len(contents), 25)]
        server.requests.clear()
        post(server, 25)
        assert len(server.requests) == 1
