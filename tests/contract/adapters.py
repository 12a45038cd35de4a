"""One small adapter per provider stream: how to make a client and open a stream.

The contract tests (test_contract_*.py beside this file) hold the behaviours every
integration owes, written once; an adapter says only how its SDK is driven and
what its fake answer looks like. A fifth provider adds a subclass and an entry
in ADAPTERS, not a copy of the tests.

The provider record tests (tests/providers) drive the same adapters: `replay_sync` and
`replay_async` send a recorded request body (a cassette's) as the adapter's call.

Streams come in three styles, each exited the ways its style allows:
  "create"    the call returns the SDK's stream (iterable, a context manager, close())
  "helper"    the call returns a stream manager; `with manager as stream` gives the stream
  "generator" the call returns a generator: no `with`, close()/aclose(), lazy (no request
              until it is first iterated)
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, ClassVar

from tracekit._fake_server import FakeProviderServer

QUESTION = "hello there"
ANSWER = "You asked: hello there"
KEEP = 2  # events a dropping server sends before it hangs up
MISSING = "missing-x"  # the fake server answers 404 to a model named missing...


def question(i: int) -> str:
    return f"question {i}"


class Adapter:
    """How one provider stream is driven (subclass per provider and stream kind)."""

    id: str  # the test id: "openai.chat.create"
    provider: str  # tracekit.<provider>.autolog, tracekit.integrations.<provider>
    style: str  # "create" | "helper" | "generator"
    operation: str  # the span name is f"{operation} {model}"
    model: str
    full_chunks: int  # raw chunks the span counts for the whole answer
    usage: ClassVar[dict[str, int]]  # token_usage for the whole answer to QUESTION
    # ended_by after `with manager as s: next(s); s.close()` (helpers only)
    helper_close_ends_by: str = "close"
    # a helper may read ahead of the events it hands out (never to the end)
    reads_ahead: bool = False
    # the fake server to run (a subclass answers what the base one lacks)
    server_class: type[FakeProviderServer] = FakeProviderServer
    # extra exits only this adapter has: name -> (sync exit, async exit)
    extra_exits: ClassVar[dict[str, tuple[Callable[..., Any], Callable[..., Any]]]] = {}

    def __repr__(self) -> str:
        return f"<adapter {self.id}>"

    @property
    def span_name(self) -> str:
        return f"{self.operation} {self.model}"

    def autolog(self, **options: Any) -> None:
        importlib.import_module(f"tracekit.{self.provider}").autolog(**options)

    @property
    def integration(self) -> Any:
        return importlib.import_module(f"tracekit.integrations.{self.provider}").integration

    @property
    def exits(self) -> list[str]:
        common = ["exhausted", "close", "dropped_partly_read", "error_mid_stream"]
        common.append("dropped_unread")
        if self.style != "generator":
            common.insert(1, "break_in_with")
        return common + list(self.extra_exits)

    # -- to be provided -------------------------------------------------------------------

    def sync_client(self, server: FakeProviderServer, api_key: str) -> Any:
        raise NotImplementedError

    def async_client(self, server: FakeProviderServer, api_key: str) -> Any:
        raise NotImplementedError

    def open_sync(self, client: Any, text: str, model: str, **options: Any) -> Any:
        """Start the stream; `options` are per-call extra headers (`secret_headers`)."""
        raise NotImplementedError

    async def open_async(self, client: Any, text: str, model: str, **options: Any) -> Any:
        raise NotImplementedError

    def call_sync(self, client: Any, text: str, model: str, **options: Any) -> str:
        """The provider's plain (unstreamed) call: the answer's text."""
        raise NotImplementedError

    async def call_async(self, client: Any, text: str, model: str, **options: Any) -> str:
        raise NotImplementedError

    def text_of_item(self, item: Any) -> str:
        """The answer's text in one item the stream hands out."""
        raise NotImplementedError

    def text_of(self, span: dict[str, Any]) -> str:
        """The answer's text in a span's outputs."""
        raise NotImplementedError

    def question_of(self, span: dict[str, Any]) -> str:
        """The question in a span's inputs."""
        raise NotImplementedError

    def headers_options(self, headers: dict[str, str]) -> list[dict[str, Any]]:
        """The per-call options that send extra headers (where a per-request key goes)."""
        return [{"extra_headers": headers}]

    def other_calls(self, client: Any) -> int:
        """The provider's other traced calls (count_tokens, beta ...): how many traces."""
        return 0

    def not_found(self) -> type[BaseException]:
        """The SDK's exception for a 404."""
        raise NotImplementedError

    def sdk_stream_types(self) -> tuple[type, ...]:
        """What an unpatched SDK's sync stream call (and its helper's `with`) returns:
        the SDK's own classes, not proxies."""
        raise NotImplementedError

    def replay_sync(self, client: Any, request: dict[str, Any]) -> None:
        """Make this adapter's call with a recorded request body; read any stream to its end."""
        raise NotImplementedError

    async def replay_async(self, client: Any, request: dict[str, Any]) -> None:
        raise NotImplementedError

    # -- the same for every style ---------------------------------------------------------

    def read_sync(self, client: Any, seen: list[Any], text: str = QUESTION, **kw: Any) -> None:
        """Read a whole stream (inside `with` where the style has one) into `seen`."""
        model = kw.pop("model", self.model)
        opened = self.open_sync(client, text, model, **kw)
        if self.style == "generator":
            seen.extend(opened)
            return
        with opened as stream:
            seen.extend(stream)

    async def read_async(
        self, client: Any, seen: list[Any], text: str = QUESTION, **kw: Any
    ) -> None:
        model = kw.pop("model", self.model)
        opened = await self.open_async(client, text, model, **kw)
        if self.style == "generator":
            async for item in opened:
                seen.append(item)
            return
        async with opened as stream:
            async for item in stream:
                seen.append(item)

    def answer_sync(self, client: Any, text: str = QUESTION, **kw: Any) -> str:
        seen: list[Any] = []
        self.read_sync(client, seen, text, **kw)
        return "".join(self.text_of_item(item) for item in seen)

    async def answer_async(self, client: Any, text: str = QUESTION, **kw: Any) -> str:
        seen: list[Any] = []
        await self.read_async(client, seen, text, **kw)
        return "".join(self.text_of_item(item) for item in seen)


# -- OpenAI ----------------------------------------------------------------------------


class OpenAIAdapter(Adapter):
    provider = "openai"
    operation = "chat"
    model = "fake-mini"
    helper_close_ends_by = "context_exit"
    reads_ahead = True
    method: str  # the call replay_* makes: "chat.completions.create"
    api_path = "/v1"  # an OpenAI-compatible server's may differ (OpenRouter: /api/v1)

    @contextlib.contextmanager
    def sync_client(self, server: FakeProviderServer, api_key: str) -> Iterator[Any]:
        import openai

        url = server.base_url + self.api_path
        with openai.OpenAI(api_key=api_key, base_url=url, max_retries=0) as client:
            yield client

    @contextlib.asynccontextmanager
    async def async_client(self, server: FakeProviderServer, api_key: str) -> AsyncIterator[Any]:
        import openai

        url = server.base_url + self.api_path
        async with openai.AsyncOpenAI(api_key=api_key, base_url=url, max_retries=0) as client:
            yield client

    def recorded(self, request: dict[str, Any]) -> dict[str, Any]:
        """A recorded request body as the call's keyword arguments."""
        return request

    def _method(self, client: Any) -> Any:
        target = client
        for part in self.method.split("."):
            target = getattr(target, part)
        return target

    def replay_sync(self, client: Any, request: dict[str, Any]) -> None:
        import openai

        result = self._method(client)(**self.recorded(request))
        if isinstance(result, openai.Stream):
            list(result)

    async def replay_async(self, client: Any, request: dict[str, Any]) -> None:
        import openai

        result = await self._method(client)(**self.recorded(request))
        if isinstance(result, openai.AsyncStream):
            [item async for item in result]

    def not_found(self) -> type[BaseException]:
        import openai

        return openai.NotFoundError

    def kwargs(self, text: str, model: str, options: dict[str, Any]) -> dict[str, Any]:
        """A chat completion's arguments."""
        return {"model": model, "messages": [{"role": "user", "content": text}], **options}

    def call_sync(self, client: Any, text: str, model: str, **options: Any) -> str:
        completion = client.chat.completions.create(**self.kwargs(text, model, options))
        return str(completion.choices[0].message.content)

    async def call_async(self, client: Any, text: str, model: str, **options: Any) -> str:
        completion = await client.chat.completions.create(**self.kwargs(text, model, options))
        return str(completion.choices[0].message.content)

    def sdk_stream_types(self) -> tuple[type, ...]:
        import openai
        from openai.lib.streaming import chat, responses

        return (
            openai.Stream,
            chat.ChatCompletionStreamManager,
            chat.ChatCompletionStream,
            responses.ResponseStreamManager,
            responses.ResponseStream,
        )


USAGE_CHUNK = {"include_usage": True}


class OpenAIChat(OpenAIAdapter):
    """`chat.completions.create(stream=True)` (with usage) and the `.stream()` helper."""

    method = "chat.completions.create"

    # role, 4 content deltas, finish, usage
    full_chunks = 7
    usage: ClassVar[dict[str, int]] = {
        "input_tokens": 5,
        "output_tokens": 4,
        "total_tokens": 9,
        "cache_read_input_tokens": 0,
        "reasoning_tokens": 0,
    }

    def __init__(self, helper: bool, api_path: str = "/v1") -> None:
        self.style = "helper" if helper else "create"
        self.id = "openai.chat." + ("stream" if helper else "create")
        self.api_path = api_path

    def recorded(self, request: dict[str, Any]) -> dict[str, Any]:
        # An OpenAI-compatible server's own parameters go in extra_body.
        if "reasoning" in request:
            request["extra_body"] = {"reasoning": request.pop("reasoning")}
        return request

    def open_sync(self, client: Any, text: str, model: str, **options: Any) -> Any:
        kwargs = self.kwargs(text, model, {"stream_options": USAGE_CHUNK, **options})
        if self.style == "helper":
            return client.chat.completions.stream(**kwargs)
        return client.chat.completions.create(**kwargs, stream=True)

    async def open_async(self, client: Any, text: str, model: str, **options: Any) -> Any:
        kwargs = self.kwargs(text, model, {"stream_options": USAGE_CHUNK, **options})
        if self.style == "helper":
            return client.chat.completions.stream(**kwargs)
        return await client.chat.completions.create(**kwargs, stream=True)

    def text_of_item(self, item: Any) -> str:
        if self.style == "helper":
            return str(item.delta) if item.type == "content.delta" else ""
        return "".join(c.delta.content or "" for c in item.choices)

    def text_of(self, span: dict[str, Any]) -> str:
        return str(span["outputs"]["choices"][0]["message"]["content"])

    def question_of(self, span: dict[str, Any]) -> str:
        return str(span["inputs"]["messages"][-1]["content"])


class OpenAIResponses(OpenAIAdapter):
    """`responses.create(stream=True)` and the `responses.stream()` helper."""

    method = "responses.create"

    # created, item added, part added, 4 text deltas, text done, part done, item done, completed
    full_chunks = 11
    usage: ClassVar[dict[str, int]] = {
        "input_tokens": 2,
        "output_tokens": 4,
        "total_tokens": 6,
        "cache_read_input_tokens": 0,
        "reasoning_tokens": 0,
    }

    def __init__(self, helper: bool) -> None:
        self.style = "helper" if helper else "create"
        self.id = "openai.responses." + ("stream" if helper else "create")

    def open_sync(self, client: Any, text: str, model: str, **options: Any) -> Any:
        if self.style == "helper":
            return client.responses.stream(model=model, input=text, **options)
        return client.responses.create(model=model, input=text, stream=True, **options)

    async def open_async(self, client: Any, text: str, model: str, **options: Any) -> Any:
        if self.style == "helper":
            return client.responses.stream(model=model, input=text, **options)
        return await client.responses.create(model=model, input=text, stream=True, **options)

    def call_sync(self, client: Any, text: str, model: str, **options: Any) -> str:
        return str(client.responses.create(model=model, input=text, **options).output_text)

    async def call_async(self, client: Any, text: str, model: str, **options: Any) -> str:
        response = await client.responses.create(model=model, input=text, **options)
        return str(response.output_text)

    def text_of_item(self, item: Any) -> str:
        return str(item.delta) if item.type == "response.output_text.delta" else ""

    def text_of(self, span: dict[str, Any]) -> str:
        return str(span["outputs"]["output"][0]["content"][0]["text"])

    def question_of(self, span: dict[str, Any]) -> str:
        return str(span["inputs"]["input"])


# -- Anthropic -------------------------------------------------------------------------


class AnthropicMessages(Adapter):
    """`messages.create(stream=True)` and the `messages.stream()` helper."""

    provider = "anthropic"
    operation = "chat"
    model = "fake-claude"
    usage: ClassVar[dict[str, int]] = {
        "input_tokens": 5,
        "output_tokens": 4,
        "total_tokens": 9,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
    }

    def __init__(self, helper: bool) -> None:
        from tests.contract.anthropic_server import IdServer

        self.server_class = IdServer
        self.style = "helper" if helper else "create"
        self.id = "anthropic.messages." + ("stream" if helper else "create")
        # message_start, content_block_start, 4 text deltas, content_block_stop,
        # message_delta, message_stop; the helper counts the events it hands out
        # (each text delta also gives a `text` event)
        self.full_chunks = 13 if helper else 9

    @property  # type: ignore[override]
    def extra_exits(self) -> dict[str, tuple[Callable[..., Any], Callable[..., Any]]]:
        from tests.contract import anthropic_exits  # it imports this module

        return anthropic_exits.EXITS if self.style == "helper" else {}

    @contextlib.contextmanager
    def sync_client(self, server: FakeProviderServer, api_key: str) -> Iterator[Any]:
        import anthropic

        with anthropic.Anthropic(api_key=api_key, base_url=server.base_url, max_retries=0) as c:
            yield c

    @contextlib.asynccontextmanager
    async def async_client(self, server: FakeProviderServer, api_key: str) -> AsyncIterator[Any]:
        import anthropic

        url = server.base_url
        async with anthropic.AsyncAnthropic(api_key=api_key, base_url=url, max_retries=0) as c:
            yield c

    def kwargs(self, text: str, model: str, options: dict[str, Any]) -> dict[str, Any]:
        messages = [{"role": "user", "content": text}]
        return {"model": model, "max_tokens": 64, "messages": messages, **options}

    def open_sync(self, client: Any, text: str, model: str, **options: Any) -> Any:
        kwargs = self.kwargs(text, model, options)
        if self.style == "helper":
            return client.messages.stream(**kwargs)
        return client.messages.create(**kwargs, stream=True)

    async def open_async(self, client: Any, text: str, model: str, **options: Any) -> Any:
        kwargs = self.kwargs(text, model, options)
        if self.style == "helper":
            return client.messages.stream(**kwargs)
        return await client.messages.create(**kwargs, stream=True)

    def call_sync(self, client: Any, text: str, model: str, **options: Any) -> str:
        return str(client.messages.create(**self.kwargs(text, model, options)).content[0].text)

    async def call_async(self, client: Any, text: str, model: str, **options: Any) -> str:
        message = await client.messages.create(**self.kwargs(text, model, options))
        return str(message.content[0].text)

    def text_of_item(self, item: Any) -> str:
        if item.type == "content_block_delta":
            return str(item.delta.text)
        return ""

    def text_of(self, span: dict[str, Any]) -> str:
        content = (span["outputs"] or {}).get("content") or []
        return "".join(b.get("text", "") for b in content if b.get("type") == "text")

    def question_of(self, span: dict[str, Any]) -> str:
        return str(span["inputs"]["messages"][-1]["content"])

    def other_calls(self, client: Any) -> int:
        messages = [{"role": "user", "content": QUESTION}]
        client.messages.count_tokens(model=self.model, messages=messages)
        client.beta.messages.create(model=self.model, max_tokens=64, messages=messages)
        client.messages.with_raw_response.create(**self.kwargs(QUESTION, self.model, {})).parse()
        return 3

    def not_found(self) -> type[BaseException]:
        import anthropic

        return anthropic.NotFoundError

    def replay_sync(self, client: Any, request: dict[str, Any]) -> None:
        import anthropic

        if self.style == "helper":
            kwargs = {k: v for k, v in request.items() if k != "stream"}
            with client.messages.stream(**kwargs) as stream:
                stream.get_final_message()
            return
        result = client.messages.create(**request)
        if isinstance(result, anthropic.Stream):
            list(result)

    async def replay_async(self, client: Any, request: dict[str, Any]) -> None:
        import anthropic

        assert self.style == "create", "the async helper is not replayed"
        result = await client.messages.create(**request)
        if isinstance(result, anthropic.AsyncStream):
            [event async for event in result]

    def sdk_stream_types(self) -> tuple[type, ...]:
        import anthropic
        from anthropic.lib.streaming import MessageStream, MessageStreamManager

        return (anthropic.Stream, MessageStreamManager, MessageStream)


# -- Gemini ----------------------------------------------------------------------------


class GeminiStream(Adapter):
    """`models.generate_content_stream` (and `client.aio`, awaited, then iterated)."""

    id = "gemini.generate_content_stream"
    provider = "gemini"
    style = "generator"
    operation = "generate_content"
    model = "fake-gemini"
    full_chunks = 4  # one per word

    def __init__(self) -> None:
        from tests.contract.gemini_server import GeminiServer

        self.server_class = GeminiServer

    usage: ClassVar[dict[str, int]] = {"input_tokens": 2, "output_tokens": 4, "total_tokens": 6}

    @staticmethod
    def client(server: FakeProviderServer, api_key: str = "test-key", vertex: bool = False) -> Any:
        """A google-genai client of the server: the Gemini API's, or with `vertex` Vertex
        AI's (project, location and a bearer token instead of an API key)."""
        from google import genai
        from google.genai import types

        if vertex:
            from google.oauth2.credentials import Credentials

            return genai.Client(
                vertexai=True,
                project="test-project",
                location="test-location",
                credentials=Credentials(token="test-token"),  # noqa: S106 - not a secret
                http_options=types.HttpOptions(base_url=server.base_url),
            )
        options = types.HttpOptions(base_url=server.base_url, api_version="v1beta")
        return genai.Client(api_key=api_key, http_options=options)

    @contextlib.contextmanager
    def sync_client(self, server: FakeProviderServer, api_key: str) -> Iterator[Any]:
        with self.client(server, api_key) as client:
            yield client

    @contextlib.asynccontextmanager
    async def async_client(self, server: FakeProviderServer, api_key: str) -> AsyncIterator[Any]:
        async with self.client(server, api_key).aio as client:
            yield client

    def open_sync(self, client: Any, text: str, model: str, **options: Any) -> Any:
        return client.models.generate_content_stream(model=model, contents=text, **options)

    async def open_async(self, client: Any, text: str, model: str, **options: Any) -> Any:
        return await client.models.generate_content_stream(model=model, contents=text, **options)

    def call_sync(self, client: Any, text: str, model: str, **options: Any) -> str:
        return str(client.models.generate_content(model=model, contents=text, **options).text)

    async def call_async(self, client: Any, text: str, model: str, **options: Any) -> str:
        response = await client.models.generate_content(model=model, contents=text, **options)
        return str(response.text)

    def headers_options(self, headers: dict[str, str]) -> list[dict[str, Any]]:
        from google.genai import types

        http = types.HttpOptions(headers=headers)
        return [
            {"config": types.GenerateContentConfig(http_options=http)},
            {"config": {"http_options": {"headers": headers}}},
        ]

    def text_of_item(self, item: Any) -> str:
        return str(item.text or "")

    def text_of(self, span: dict[str, Any]) -> str:
        parts = span["outputs"]["candidates"][0]["content"]["parts"]
        return "".join(p.get("text") or "" for p in parts if not p.get("thought"))

    def question_of(self, span: dict[str, Any]) -> str:
        return str(span["inputs"]["contents"])

    def other_calls(self, client: Any) -> int:
        client.models.count_tokens(model=self.model, contents=QUESTION)
        client.models.embed_content(model="text-embedding-004", contents=[QUESTION])
        client.chats.create(model=self.model).send_message(QUESTION)
        return 3

    def not_found(self) -> type[BaseException]:
        from google.genai import errors

        return errors.ClientError

    def sdk_stream_types(self) -> tuple[type, ...]:
        import types

        return (types.GeneratorType,)


ADAPTERS: list[Adapter] = [
    OpenAIChat(helper=False),
    OpenAIChat(helper=True),
    OpenAIResponses(helper=False),
    OpenAIResponses(helper=True),
    AnthropicMessages(helper=False),
    AnthropicMessages(helper=True),
    GeminiStream(),
]
