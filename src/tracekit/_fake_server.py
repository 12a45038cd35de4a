"""A local fake provider server speaking the OpenAI wire format (JSON and SSE).

For the demo and for tests of code that calls LLMs: deterministic answers,
real sockets, no network. Point an SDK at `server.base_url + "/v1"`.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_CREATED = 1_767_225_600  # a fixed timestamp: answers are byte-for-byte repeatable


def _words(text: str) -> list[str]:
    return text.split(" ")


def _last_user_text(messages: Any) -> str:
    for message in reversed(messages or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeProviderServer

    def setup(self) -> None:
        super().setup()
        # Small SSE writes must not wait for delayed ACKs (Nagle): ~40 ms each otherwise.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.server.record(self.path, dict(self.headers), body)
        path = self.path.split("?", 1)[0].rstrip("/")
        model = str(body.get("model", ""))
        if model.startswith("missing"):
            self._json(
                404,
                {
                    "error": {
                        "message": f"The model `{model}` does not exist",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "model_not_found",
                    }
                },
            )
            return
        if ":generateContent" in path or ":streamGenerateContent" in path:
            self._gemini(path, body)
        elif path.endswith("/chat/completions"):
            self._chat(body)
        elif path.endswith("/responses"):
            self._responses(body)
        elif path.endswith("/embeddings"):
            self._embeddings(body)
        elif path.endswith("/completions"):
            self._completions(body)
        elif path.endswith("/messages/count_tokens"):
            self._json(200, {"input_tokens": _tokens(json.dumps(body.get("messages")))})
        elif path.endswith("/messages"):
            self._messages(body)
        else:
            self._json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})

    # -- OpenAI chat completions -------------------------------------------------

    def _chat(self, body: dict[str, Any]) -> None:
        messages = body.get("messages") or []
        question = _last_user_text(messages)
        tools = body.get("tools") or []
        called = any(isinstance(m, dict) and m.get("role") == "tool" for m in messages)
        prompt = sum(_tokens(json.dumps(m)) for m in messages)
        if tools and not called:
            name = tools[0].get("function", {}).get("name", "tool")
            arguments = json.dumps({"query": question})
            message: dict[str, Any] = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": name, "arguments": arguments},
                    }
                ],
            }
            reason, completion = "tool_calls", _tokens(arguments)
        else:
            answer = self.server.answer(question, messages)
            message = {"role": "assistant", "content": answer}
            reason, completion = "stop", _tokens(answer)
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }
        base = {"id": "chatcmpl-fake", "created": _CREATED, "model": body.get("model")}
        if not body.get("stream"):
            self._json(
                200,
                {
                    **base,
                    "object": "chat.completion",
                    "choices": [
                        {"index": 0, "message": message, "finish_reason": reason, "logprobs": None}
                    ],
                    "usage": usage,
                },
            )
            return
        chunk = {**base, "object": "chat.completion.chunk"}

        def events() -> Iterator[dict[str, Any]]:
            yield {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant"}}]}
            if message.get("tool_calls"):
                call = message["tool_calls"][0]
                yield {
                    **chunk,
                    "choices": [
                        {
                            "index": 0,
                            "delta": {
                                "tool_calls": [
                                    {
                                        "index": 0,
                                        "id": call["id"],
                                        "type": "function",
                                        "function": {
                                            "name": call["function"]["name"],
                                            "arguments": "",
                                        },
                                    }
                                ]
                            },
                        }
                    ],
                }
                args = call["function"]["arguments"]
                for part in (args[: len(args) // 2], args[len(args) // 2 :]):
                    yield {
                        **chunk,
                        "choices": [
                            {
                                "index": 0,
                                "delta": {
                                    "tool_calls": [{"index": 0, "function": {"arguments": part}}]
                                },
                            }
                        ],
                    }
            else:
                words = _words(message["content"])
                for i, word in enumerate(words):
                    text = word if i == len(words) - 1 else word + " "
                    yield {**chunk, "choices": [{"index": 0, "delta": {"content": text}}]}
            yield {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}
            if (body.get("stream_options") or {}).get("include_usage"):
                yield {**chunk, "choices": [], "usage": usage}

        self._sse(events(), done=True)

    def _completions(self, body: dict[str, Any]) -> None:
        prompt = str(body.get("prompt", ""))
        answer = self.server.answer(prompt, [])
        usage = {
            "prompt_tokens": _tokens(prompt),
            "completion_tokens": _tokens(answer),
            "total_tokens": _tokens(prompt) + _tokens(answer),
        }
        self._json(
            200,
            {
                "id": "cmpl-fake",
                "object": "text_completion",
                "created": _CREATED,
                "model": body.get("model"),
                "choices": [
                    {"index": 0, "text": answer, "finish_reason": "stop", "logprobs": None}
                ],
                "usage": usage,
            },
        )

    def _embeddings(self, body: dict[str, Any]) -> None:
        inputs = body.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        dims = int(body.get("dimensions") or 8)
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": [round((i + 1) / (d + 1), 4) for d in range(dims)],
            }
            for i in range(len(items))
        ]
        tokens = sum(_tokens(str(item)) for item in items)
        self._json(
            200,
            {
                "object": "list",
                "data": data,
                "model": body.get("model"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    # -- Gemini generateContent ------------------------------------------------------

    def _gemini(self, path: str, body: dict[str, Any]) -> None:
        model = path.split("/models/", 1)[-1].split(":", 1)[0]
        if model.startswith("missing"):
            self._json(
                404,
                {
                    "error": {
                        "code": 404,
                        "status": "NOT_FOUND",
                        "message": f"models/{model} is not found",
                    }
                },
            )
            return
        contents = body.get("contents") or []
        texts = [
            p.get("text", "")
            for c in contents
            if isinstance(c, dict)
            for p in c.get("parts") or []
            if isinstance(p, dict)
        ]
        question = texts[-1] if texts else ""
        answer = self.server.answer(question, [])
        prompt = sum(_tokens(t) for t in texts) or 1

        def usage(words: int) -> dict[str, Any]:
            return {
                "promptTokenCount": prompt,
                "candidatesTokenCount": words,
                "totalTokenCount": prompt + words,
            }

        base = {"modelVersion": model, "responseId": "fake-response"}
        if ":generateContent" in path:
            self._json(
                200,
                {
                    **base,
                    "usageMetadata": usage(_tokens(answer)),
                    "candidates": [
                        {
                            "content": {"role": "model", "parts": [{"text": answer}]},
                            "finishReason": "STOP",
                            "index": 0,
                        }
                    ],
                },
            )
            return
        words = _words(answer)

        def events() -> Iterator[dict[str, Any]]:
            for i, word in enumerate(words):
                last = i == len(words) - 1
                candidate: dict[str, Any] = {
                    "content": {"role": "model", "parts": [{"text": word if last else word + " "}]},
                    "index": 0,
                }
                if last:
                    candidate["finishReason"] = "STOP"
                yield {**base, "candidates": [candidate], "usageMetadata": usage(i + 1)}

        self._sse(events())

    # -- Anthropic Messages ---------------------------------------------------------

    def _messages(self, body: dict[str, Any]) -> None:
        messages = body.get("messages") or []
        question = _last_user_text(messages)
        answer = self.server.answer(question, messages)
        prompt = sum(_tokens(json.dumps(m)) for m in messages)
        usage = {
            "input_tokens": prompt,
            "output_tokens": _tokens(answer),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        message = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": body.get("model"),
            "content": [{"type": "text", "text": answer}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }
        if not body.get("stream"):
            self._json(200, message)
            return

        def events() -> Iterator[dict[str, Any]]:
            start = {
                **message,
                "content": [],
                "stop_reason": None,
                "usage": {**usage, "output_tokens": 1},
            }
            yield {"type": "message_start", "message": start}
            yield {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            }
            words = _words(answer)
            for i, word in enumerate(words):
                text = word if i == len(words) - 1 else word + " "
                yield {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": text},
                }
            yield {"type": "content_block_stop", "index": 0}
            yield {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            }
            yield {"type": "message_stop"}

        self._sse(events(), named=True, numbered=False)

    # -- OpenAI Responses ---------------------------------------------------------

    def _responses(self, body: dict[str, Any]) -> None:
        raw = body.get("input")
        question = raw if isinstance(raw, str) else _last_user_text(raw)
        answer = self.server.answer(question, [])
        usage = {
            "input_tokens": _tokens(question),
            "output_tokens": _tokens(answer),
            "total_tokens": _tokens(question) + _tokens(answer),
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        }
        item = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": answer, "annotations": []}],
        }
        response = {
            "id": "resp_fake",
            "object": "response",
            "created_at": _CREATED,
            "model": body.get("model"),
            "status": "completed",
            "output": [item],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "usage": usage,
        }
        if not body.get("stream"):
            self._json(200, response)
            return
        started = {**response, "status": "in_progress", "output": [], "usage": None}

        part = {"type": "output_text", "text": "", "annotations": []}
        where = {"item_id": "msg_fake", "output_index": 0, "content_index": 0}

        def events() -> Iterator[dict[str, Any]]:
            yield {"type": "response.created", "response": started}
            yield {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": {**item, "status": "in_progress", "content": []},
            }
            yield {"type": "response.content_part.added", **where, "part": part}
            words = _words(answer)
            for i, word in enumerate(words):
                delta = word if i == len(words) - 1 else word + " "
                yield {
                    "type": "response.output_text.delta",
                    **where,
                    "delta": delta,
                    "logprobs": [],
                }
            yield {"type": "response.output_text.done", **where, "text": answer, "logprobs": []}
            yield {"type": "response.content_part.done", **where, "part": {**part, "text": answer}}
            yield {"type": "response.output_item.done", "output_index": 0, "item": item}
            yield {"type": "response.completed", "response": response}

        self._sse(events(), named=True)

    # -- the wire -------------------------------------------------------------------

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", "req_fake")
        self.end_headers()
        self.wfile.write(data)

    def _sse(
        self,
        events: Iterator[dict[str, Any]],
        done: bool = False,
        named: bool = False,
        numbered: bool = True,
    ) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for number, event in enumerate(events):
            if named and numbered:
                event["sequence_number"] = number
            head = f"event: {event['type']}\n" if named else ""
            self._chunk(f"{head}data: {json.dumps(event)}\n\n".encode())
            if self.server.drop_after is not None and number + 1 >= self.server.drop_after:
                # A provider that hangs up mid-stream: the client sees a broken body.
                raise ConnectionResetError("fake provider: hung up mid-stream (drop_after)")
            if self.server.chunk_delay:
                time.sleep(self.server.chunk_delay)
        if done:
            self._chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


class FakeProviderServer(ThreadingHTTPServer):
    """A fake provider on 127.0.0.1 with deterministic answers.

    Speaks OpenAI chat completions, Responses, embeddings and legacy completions
    (`base_url + "/v1"` for the OpenAI SDK) and Anthropic Messages with
    count_tokens (`base_url` for the Anthropic SDK), and Gemini generateContent and
    streamGenerateContent (`HttpOptions(base_url=base_url, api_version="v1beta")`),
    as JSON and as SSE.

    Example:
        with FakeProviderServer() as server:
            client = openai.OpenAI(api_key="test", base_url=server.base_url + "/v1")
            client.chat.completions.create(model="fake-mini", messages=[...])
            server.requests[-1]["body"]   # what the SDK sent

    A model whose name starts with `missing` gets a 404 error; `drop_after=N` makes
    the server hang up after N events of every stream (a provider failing mid-stream);
    `chunk_delay` spaces the events out. `requests` keeps the most recent requests, at
    most `max_requests` (a long benchmark run must not grow it without end).
    """

    daemon_threads = True
    request_queue_size = 512  # bursts of concurrent clients (the default backlog is 5)

    def __init__(
        self,
        port: int = 0,
        chunk_delay: float = 0.0,
        drop_after: int | None = None,
        max_requests: int = 10_000,
    ) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.chunk_delay = chunk_delay
        self.drop_after = drop_after  # hang up after this many events of each stream
        self.max_requests = max(1, max_requests)
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that hung up early
            super().handle_error(request, client_address)

    def answer(self, question: str, messages: Any) -> str:
        """The deterministic answer to a question (override for other behaviour)."""
        for message in reversed(messages or []):
            if isinstance(message, dict) and message.get("role") == "tool":
                return f"The tool says: {message.get('content')}"
        return f"You asked: {question.strip()}" if question.strip() else "Hello!"

    def record(self, path: str, headers: dict[str, str], body: Any) -> None:
        with self._lock:
            self.requests.append({"path": path, "headers": headers, "body": body})
            if len(self.requests) > self.max_requests:
                # The oldest tenth at once: a plain list (tests slice and compare it), at
                # an amortized constant cost per request.
                keep = max(1, self.max_requests * 9 // 10)
                del self.requests[: len(self.requests) - keep]

    def start(self) -> FakeProviderServer:
        self._thread = threading.Thread(
            target=self.serve_forever, name="tracekit-fake-provider", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def __enter__(self) -> FakeProviderServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
