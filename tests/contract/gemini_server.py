"""The fake server for Gemini, with the routes the base fake server lacks.

Shapes as the API sends them: `:batchEmbedContents`, `:embedContent`,
`:countTokens`, JSON mode (a model named *json*), streamed thought parts
(`fake-thinker`) and function calls (`fake-caller`).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from tracekit import _fake_server
from tracekit._fake_server import FakeProviderServer

EMBED_DIMS = 8
SIGNATURE = base64.b64encode(b"\x00\xffsig\xfe").decode()  # not UTF-8 once decoded


def _texts(body: dict[str, Any]) -> list[str]:
    return [
        p.get("text", "")
        for c in body.get("contents") or []
        for p in c.get("parts") or []
        if isinstance(p, dict)
    ]


class _GeminiHandler(_fake_server._Handler):
    """The fake server's handler, plus the Gemini routes it lacks (shapes as the API sends):
    `:batchEmbedContents`, `:embedContent`, `:countTokens`, JSON mode, and streamed
    thought parts (`fake-thinker`) and function calls (`fake-caller`)."""

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        model = path.split("/models/", 1)[-1].split(":", 1)[0]
        custom = (
            path.endswith((":batchEmbedContents", ":embedContent", ":countTokens"))
            or model in ("fake-thinker", "fake-caller")
            or "json" in model
        )
        if not custom:
            super().do_POST()
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.server.record(self.path, dict(self.headers), body)
        if path.endswith(":batchEmbedContents"):
            self._json(200, {"embeddings": [_vector(i) for i in range(len(body["requests"]))]})
        elif path.endswith(":embedContent"):
            self._json(200, {"embedding": _vector(0)})
        elif path.endswith(":countTokens"):
            n = sum(len(t.split()) for t in _texts(body))
            self._json(
                200,
                {"totalTokens": n, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": n}]},
            )
        elif "json" in model:
            self._json(200, _json_answer(model))
        else:
            self._sse(iter(_THINKER if model == "fake-thinker" else _CALLER))


def _vector(i: int) -> dict[str, Any]:
    return {"values": [round((i + 1) / (d + 1), 4) for d in range(EMBED_DIMS)]}


def _json_answer(model: str) -> dict[str, Any]:
    text = json.dumps({"name": "pancakes", "minutes": 20})
    return {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}
        ],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 5, "totalTokenCount": 8},
        "modelVersion": model,
        "responseId": "json-response",
    }


def _chunk(parts: list[dict[str, Any]], usage: dict[str, int], last: bool) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if last:
        candidate["finishReason"] = "STOP"
    return {
        "candidates": [candidate],
        "usageMetadata": {"promptTokenCount": 2, **usage},
        "modelVersion": "fake-thinker",
        "responseId": "thinker-response",
    }


# Thoughts first (cumulative thoughtsTokenCount), then the answer.
_THINKER = [
    _chunk([{"text": "Let me think", "thought": True}], {"thoughtsTokenCount": 3}, False),
    _chunk([{"text": " harder.", "thought": True}], {"thoughtsTokenCount": 4}, False),
    _chunk(
        [{"text": "The answer"}],
        {"thoughtsTokenCount": 4, "candidatesTokenCount": 2, "totalTokenCount": 8},
        False,
    ),
    _chunk(
        [{"text": " is 42."}],
        {"thoughtsTokenCount": 4, "candidatesTokenCount": 5, "totalTokenCount": 11},
        True,
    ),
]
# A function call (with the thought signature Gemini 2.5 attaches) after some text.
_CALLER = [
    _chunk([{"text": "Looking it up."}], {"candidatesTokenCount": 3, "totalTokenCount": 5}, False),
    _chunk(
        [
            {
                "functionCall": {"name": "lookup", "args": {"q": "hello there"}},
                "thoughtSignature": SIGNATURE,
            }
        ],
        {"candidatesTokenCount": 9, "totalTokenCount": 11},
        True,
    ),
]


class GeminiServer(FakeProviderServer):
    def __init__(self, drop_after: int | None = None) -> None:
        super().__init__(drop_after=drop_after)
        self.RequestHandlerClass = _GeminiHandler
