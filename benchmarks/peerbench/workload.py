"""The workload every peer figure shares: the cases, the recorded bodies, the SDK clients.

`hotpath.py` uses the same cases and clients in the project's own venv.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent.parent
# recorded wire data: tests/cassettes (see PROVENANCE.md there); another folder by
# TRACEKIT_CASSETTES
CASSETTES = Path(os.environ.get("TRACEKIT_CASSETTES", REPO / "tests" / "cassettes"))
CASES = {
    "openai_chat": ("openai", "OpenAI chat"),
    "openai_stream": ("openai", "OpenAI chat stream"),
    "openai_async": ("openai", "OpenAI async, gather of 50"),
    "anthropic_messages": ("anthropic", "Anthropic messages"),
    "anthropic_stream": ("anthropic", "Anthropic messages stream"),
    "gemini_generate": ("gemini", "Gemini generate_content"),
    "gemini_stream": ("gemini", "Gemini generate_content_stream"),
}
BATCH = 50  # calls per gather in the async case


CASSETTE_FILES = {
    "openai_chat": "openai/chat_completions_nonstream_basic.yaml",
    "openai_stream": "openai/chat_completions_stream_include_usage.yaml",
    "anthropic_messages": "anthropic/messages_nonstream_basic_gzip.yaml",
    "anthropic_stream": "anthropic/messages_stream_basic.yaml",
    "gemini_generate": "gemini/generate_content_basic.yaml",
    "gemini_stream": "gemini/stream_generate_content_sse.yaml",
}


def load_cassettes() -> dict[str, Any] | None:
    """Request and response body of each case's recorded interaction (None: no cassettes)."""
    if not CASSETTES.is_dir():
        return None
    import yaml

    out: dict[str, Any] = {}
    for case, name in CASSETTE_FILES.items():
        data = yaml.safe_load((CASSETTES / name).read_text())
        interaction = data["interactions"][0]
        body = interaction["response"]["body"]["string"]
        raw = body if isinstance(body, bytes) else body.encode()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        request = interaction["request"]["body"]
        out[case] = {
            "request": json.loads(request) if request else None,
            "uri": interaction["request"]["uri"],
            "body": raw.decode(),
            "sse": raw.lstrip().startswith((b"data:", b"event:")),
        }
    return out


MINIMAL_REQUEST = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
MINIMAL_CHAT = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "ok"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    }
).encode()


class Clients:
    """The three SDK clients on the chosen transport, and each case's request."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import anthropic
        import httpx2
        import openai
        from google import genai
        from google.genai import types

        self.bodies = spec.get("bodies")
        # memory children: the smallest chat completion, so 100,000 calls fit the budget
        self.minimal = bool(spec.get("minimal"))
        base = spec.get("base_url") or "http://bench.invalid"
        mock = spec["transport"] == "mock" or self.minimal
        transport = httpx2.MockTransport(self._handler) if mock else None

        def sync_client() -> Any:
            return httpx2.Client(transport=transport) if mock else httpx2.Client()

        def async_client() -> Any:
            return httpx2.AsyncClient(transport=transport) if mock else httpx2.AsyncClient()

        self.openai = openai.OpenAI(
            api_key="test", base_url=base + "/v1", max_retries=0, http_client=sync_client()
        )
        self.openai_async: Callable[[], Any] = lambda: openai.AsyncOpenAI(
            api_key="test", base_url=base + "/v1", max_retries=0, http_client=async_client()
        )
        self.anthropic = anthropic.Anthropic(
            api_key="test", base_url=base, max_retries=0, http_client=sync_client()
        )
        self.gemini = genai.Client(
            api_key="test",
            http_options=types.HttpOptions(
                base_url=base, api_version="v1beta", httpx_client=sync_client()
            ),
        )
        b = self.bodies or {}
        if self.minimal:
            b = {"openai_chat": {"request": MINIMAL_REQUEST}}
        self.openai_chat = (b.get("openai_chat") or {}).get("request") or {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "Say this is a test"}],
        }
        self.openai_stream = (b.get("openai_stream") or {}).get("request") or {
            **self.openai_chat,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        self.anthropic_messages = (b.get("anthropic_messages") or {}).get("request") or {
            "model": "claude-sonnet-4-20250514",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": "What is four plus five?"}],
        }
        self.anthropic_stream = (b.get("anthropic_stream") or {}).get("request") or {
            **self.anthropic_messages,
            "stream": True,
        }
        self.anthropic_messages = {
            k: v for k, v in self.anthropic_messages.items() if k != "stream"
        }

    def _handler(self, request: Any) -> Any:
        import httpx2

        if self.minimal:
            return httpx2.Response(
                200,
                headers={"content-type": "application/json", "x-request-id": "req"},
                content=MINIMAL_CHAT,
            )
        path = request.url.path
        streaming = b'"stream":true' in request.content or b'"stream": true' in request.content
        if ":generateContent" in path:
            case = "gemini_generate"
        elif ":streamGenerateContent" in path:
            case = "gemini_stream"
        elif path.endswith("/chat/completions"):
            case = "openai_stream" if streaming else "openai_chat"
        elif path.endswith("/messages"):
            case = "anthropic_stream" if streaming else "anthropic_messages"
        else:
            return httpx2.Response(404, json={"error": path})
        recorded = self.bodies[case]  # type: ignore[index]
        kind = "text/event-stream; charset=utf-8" if recorded["sse"] else "application/json"
        return httpx2.Response(
            200,
            headers={"content-type": kind, "request-id": "req_bench", "x-request-id": "req"},
            content=recorded["body"].encode(),
        )

    # one call per case (the async case: one gather of BATCH calls)
    def call(self, case: str) -> int:
        if case == "openai_chat":
            self.openai.chat.completions.create(**self.openai_chat)
        elif case == "openai_stream":
            for _chunk in self.openai.chat.completions.create(**self.openai_stream):
                pass
        elif case == "anthropic_messages":
            self.anthropic.messages.create(**self.anthropic_messages)
        elif case == "anthropic_stream":
            for _event in self.anthropic.messages.create(**self.anthropic_stream):
                pass
        elif case == "gemini_generate":
            self.gemini.models.generate_content(
                model="gemini-2.0-flash", contents="What's the weather like?"
            )
        elif case == "gemini_stream":
            for _chunk in self.gemini.models.generate_content_stream(
                model="gemini-2.0-flash", contents="Tell me a short story about a cat."
            ):
                pass
        else:
            raise ValueError(case)
        return 1


def samples(clients: Clients, case: str, n: int) -> list[int]:
    clock = time.perf_counter_ns
    times = []
    if case == "openai_async":

        async def run() -> None:
            client = clients.openai_async()
            create = client.chat.completions.create
            for _ in range(n):
                t0 = clock()
                await asyncio.gather(*(create(**clients.openai_chat) for _ in range(BATCH)))
                times.append(clock() - t0)
            await client.close()

        asyncio.run(run())
        return times
    call = clients.call
    for _ in range(n):
        t0 = clock()
        call(case)
        times.append(clock() - t0)
    return times


def import_sdks() -> None:
    """The SDKs, loaded in every variant before it instruments them (not timed)."""
    import anthropic  # noqa: F401
    import httpx2  # noqa: F401
    import openai  # noqa: F401
    from google import genai  # noqa: F401
