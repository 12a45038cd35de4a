"""LangChain autolog offline: langchain-core's fake models and the fake provider server.

Span mapping (chains, chat models, LLMs, tools, retrievers), every way of running a
runnable (invoke, ainvoke, stream, astream, batch, abatch), errors, nesting with the
user's `@tracekit.trace` spans and with `tracekit.openai.autolog()`, LangGraph graphs
(when installed), the handler's bookkeeping over 10,000 runs, and that LangChain
itself (astream_events, the user's own callbacks, the current span) behaves exactly
as it does without tracekit.
"""

from __future__ import annotations

import asyncio
import gc
import json
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any, TypedDict

import pytest

pytest.importorskip("langchain_core")

from langchain_core.callbacks import BaseCallbackHandler, CallbackManager
from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake import FakeListLLM
from langchain_core.language_models.fake_chat_models import (
    FakeListChatModel,
    GenericFakeChatModel,
)
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableGenerator, RunnableLambda, RunnableParallel
from langchain_core.tools import tool

import tracekit
import tracekit.langchain
import tracekit.openai
from tracekit import _state
from tracekit._context import current_span
from tracekit._fake_server import FakeProviderServer
from tracekit._span import Span
from tracekit.integrations.langchain import integration
from tracekit.testing import Capture

PROVIDER = "langchain"  # the `traced` fixture autologs it (tests/conftest.py)

# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _own_context() -> Iterator[None]:
    """A span left current by one test (a bug under test) must not leak into the next."""
    token = current_span.set(None)
    yield
    current_span.reset(token)


@pytest.fixture
def with_openai(traced: Capture, autolog: Callable[..., Capture]) -> Capture:
    """LangChain and OpenAI autolog both on."""
    pytest.importorskip("openai")
    return autolog("openai")


# -- fakes --------------------------------------------------------------------------------------

USAGE = {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}


class UsageChatModel(BaseChatModel):
    """A chat model reporting usage like a provider: on the message for invoke, split
    over the chunks for streams (input on the first, output on the last, as Anthropic
    does), so LangChain's assembled message carries the call's final figure."""

    answer: str = "hello there friend"
    model: str = "usage-fake-1"

    @property
    def _llm_type(self) -> str:
        return "usage-fake"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        message = AIMessage(content=self.answer, usage_metadata=dict(USAGE))
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> Iterator[ChatGenerationChunk]:
        words = self.answer.split(" ")
        for i, word in enumerate(words):
            usage = None
            if i == 0:
                usage = {"input_tokens": 7, "output_tokens": 0, "total_tokens": 7}
            elif i == len(words) - 1:
                usage = {"input_tokens": 0, "output_tokens": 3, "total_tokens": 3}
            text = word if i == len(words) - 1 else word + " "
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=text, usage_metadata=usage))
            if run_manager:
                run_manager.on_llm_new_token(text, chunk=chunk)
            yield chunk


class KeywordRetriever(BaseRetriever):
    """Returns the documents containing the query."""

    documents: list[str]

    def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[Document]:
        return [
            Document(page_content=text, metadata={"rank": i})
            for i, text in enumerate(self.documents)
            if query in text
        ]


@tool
def add(a: int, b: int) -> int:
    """Adds a and b."""
    return a + b


class BoomError(Exception):
    pass


def fake_chat(*answers: str, usage: dict[str, int] | None = None) -> GenericFakeChatModel:
    messages = [AIMessage(content=a, usage_metadata=dict(usage or USAGE)) for a in answers]
    return GenericFakeChatModel(messages=iter(messages))


def qa_chain(model: Any) -> Any:
    return ChatPromptTemplate.from_messages([("human", "{q}")]) | model | StrOutputParser()


# -- helpers ----------------------------------------------------------------------------------


def by_name(record: dict[str, Any], name: str) -> dict[str, Any]:
    (span,) = [s for s in record["spans"] if s["name"] == name]
    return span


def check_tree(record: dict[str, Any]) -> dict[str, Any]:
    """One root, every other span's parent inside the trace, every span ended; the root."""
    ids = {s["span_id"] for s in record["spans"]}
    roots = [s for s in record["spans"] if s["parent_id"] is None]
    assert len(roots) == 1, [(s["name"], s["parent_id"]) for s in record["spans"]]
    for span in record["spans"]:
        assert span["parent_id"] is None or span["parent_id"] in ids, span["name"]
        assert span["end_time_ns"] is not None
        assert span["status"]["code"] in ("OK", "ERROR")
    return roots[0]


def shape(record: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(span name, parent name) pairs, in start order."""
    names = {s["span_id"]: s["name"] for s in record["spans"]}
    spans = sorted(record["spans"], key=lambda s: (s["start_time_ns"], s["span_id"]))
    return [(s["name"], names.get(s["parent_id"])) for s in spans]


QA_SHAPE = [
    ("RunnableSequence", None),
    ("ChatPromptTemplate", "RunnableSequence"),
    ("UsageChatModel", "RunnableSequence"),
    ("StrOutputParser", "RunnableSequence"),
]


# -- span mapping -----------------------------------------------------------------------------


def test_chain_chat_model_and_parser_spans(traced: Capture) -> None:
    assert qa_chain(UsageChatModel()).invoke({"q": "hey"}) == "hello there friend"

    record = traced.single()
    root = check_tree(record)
    assert shape(record) == QA_SHAPE
    assert record["name"] == "RunnableSequence"
    assert root["span_type"] == "CHAIN"
    assert root["inputs"] == {"q": "hey"}
    assert root["outputs"] == "hello there friend"

    prompt = by_name(record, "ChatPromptTemplate")
    assert prompt["span_type"] == "CHAIN"
    assert prompt["inputs"] == {"q": "hey"}
    assert prompt["outputs"]["messages"][0]["content"] == "hey"

    chat = by_name(record, "UsageChatModel")
    assert chat["span_type"] == "CHAT_MODEL"
    assert chat["status"]["code"] == "OK"
    ((message,),) = chat["inputs"]["messages"]
    assert (message["type"], message["content"]) == ("human", "hey")
    ((generation,),) = chat["outputs"]["generations"]
    assert generation["text"] == "hello there friend"
    assert generation["message"]["content"] == "hello there friend"
    assert chat["token_usage"] == USAGE
    assert chat["attributes"]["gen_ai.operation.name"] == "chat"
    assert chat["attributes"]["gen_ai.request.model"] == "usage-fake-1"
    assert chat["attributes"]["gen_ai.usage.input_tokens"] == 7
    assert chat["attributes"]["gen_ai.usage.output_tokens"] == 3

    parser = by_name(record, "StrOutputParser")
    assert parser["span_type"] == "CHAIN"
    assert parser["outputs"] == "hello there friend"
    assert record["token_usage"] == USAGE
    json.dumps(record)  # JSON-safe throughout


def test_outputs_keep_the_whole_ai_message(traced: Capture) -> None:
    """An LLMResult's messages are AIMessages: their own fields (tool calls, usage)
    belong in the span's outputs, not only the BaseMessage fields."""
    call = {"name": "add", "args": {"a": 1, "b": 2}, "id": "call_1", "type": "tool_call"}
    message = AIMessage(content="", tool_calls=[call], usage_metadata=dict(USAGE))
    GenericFakeChatModel(messages=iter([message])).invoke("add 1 and 2")

    span = check_tree(traced.single())
    ((generation,),) = span["outputs"]["generations"]
    assert generation["message"]["type"] == "ai"
    assert generation["message"]["tool_calls"] == [call]
    assert generation["message"]["usage_metadata"] == USAGE


def test_generic_fake_chat_model_usage_metadata(traced: Capture) -> None:
    usage = {"input_tokens": 11, "output_tokens": 2, "total_tokens": 13}
    message = fake_chat("hi there", usage=usage).invoke("hello")
    assert message.content == "hi there"

    record = traced.single()
    span = check_tree(record)
    assert (span["name"], span["span_type"]) == ("GenericFakeChatModel", "CHAT_MODEL")
    assert span["token_usage"] == usage
    assert record["token_usage"] == usage


def test_chat_model_without_usage_has_no_token_usage(traced: Capture) -> None:
    FakeListChatModel(responses=["plain"]).invoke("hello")
    record = traced.single()
    span = check_tree(record)
    assert span["span_type"] == "CHAT_MODEL"
    assert span["outputs"]["generations"][0][0]["text"] == "plain"
    assert "token_usage" not in span  # never invented zeros
    assert "token_usage" not in record


def test_llm_span(traced: Capture) -> None:
    assert FakeListLLM(responses=["an answer"]).invoke("a prompt") == "an answer"
    record = traced.single()
    span = check_tree(record)
    assert (span["name"], span["span_type"]) == ("FakeListLLM", "LLM")
    assert span["inputs"] == {"prompts": ["a prompt"]}
    assert span["outputs"]["generations"][0][0]["text"] == "an answer"
    assert span["attributes"]["gen_ai.operation.name"] == "text_completion"
    assert span["status"]["code"] == "OK"


def test_tool_span(traced: Capture) -> None:
    assert add.invoke({"a": 2, "b": 3}) == 5
    span = check_tree(traced.single())
    assert (span["name"], span["span_type"]) == ("add", "TOOL")
    assert span["inputs"] == {"a": 2, "b": 3}
    assert span["outputs"] == 5
    assert span["attributes"]["gen_ai.tool.name"] == "add"


def test_tool_called_with_a_tool_call(traced: Capture) -> None:
    result = add.invoke(
        {"name": "add", "args": {"a": 4, "b": 5}, "id": "call_9", "type": "tool_call"}
    )
    assert (result.content, result.tool_call_id) == ("9", "call_9")
    span = check_tree(traced.single())
    assert span["span_type"] == "TOOL"
    assert span["inputs"] == {"a": 4, "b": 5}
    assert span["outputs"]["content"] == "9"
    assert span["outputs"]["tool_call_id"] == "call_9"


def test_tool_error_is_recorded_and_untouched(traced: Capture) -> None:
    error = BoomError("tool failed")

    @tool
    def explode(x: int) -> int:
        """Always fails."""
        raise error

    with pytest.raises(BoomError) as info:
        explode.invoke({"x": 1})
    assert info.value is error
    span = check_tree(traced.single())
    assert (span["name"], span["span_type"]) == ("explode", "TOOL")
    assert span["status"] == {"code": "ERROR", "message": "BoomError: tool failed"}
    (event,) = span["events"]
    assert event["name"] == "exception"
    assert event["attributes"]["exception.type"] == "BoomError"


def test_retriever_span_has_documents_as_outputs(traced: Capture) -> None:
    retriever = KeywordRetriever(documents=["cats purr", "dogs bark", "cats sleep"])
    docs = retriever.invoke("cats")
    assert [d.page_content for d in docs] == ["cats purr", "cats sleep"]

    span = check_tree(traced.single())
    assert (span["name"], span["span_type"]) == ("KeywordRetriever", "RETRIEVER")
    assert span["inputs"] == {"query": "cats"}
    assert [(d["page_content"], d["metadata"]) for d in span["outputs"]] == [
        ("cats purr", {"rank": 0}),
        ("cats sleep", {"rank": 2}),
    ]


def test_retriever_in_a_chain(traced: Capture) -> None:
    retriever = KeywordRetriever(documents=["cats purr", "dogs bark"])
    chain = retriever | RunnableLambda(lambda docs: [d.page_content for d in docs], name="texts")
    assert chain.invoke("dogs") == ["dogs bark"]
    record = traced.single()
    check_tree(record)
    assert shape(record) == [
        ("RunnableSequence", None),
        ("KeywordRetriever", "RunnableSequence"),
        ("texts", "RunnableSequence"),
    ]
    assert by_name(record, "texts")["outputs"] == ["dogs bark"]


def test_names_come_from_the_runnable(traced: Capture) -> None:
    def shout(text: str) -> str:
        return text.upper()

    RunnableLambda(shout).invoke("a")
    RunnableLambda(shout).with_config(run_name="loud").invoke("b")
    RunnableLambda(shout, name="named").invoke("c")
    (RunnableLambda(shout) | RunnableLambda(str.lower)).with_config(run_name="pipeline").invoke("d")
    names = [check_tree(r)["name"] for r in traced.traces]
    assert names == ["shout", "loud", "named", "pipeline"]
    assert [r["spans"][0]["span_type"] for r in traced.traces] == ["CHAIN"] * 4


def test_agent_named_runnable_is_an_agent_span(traced: Capture) -> None:
    RunnableLambda(lambda x: x, name="support_agent").invoke(1)
    assert check_tree(traced.single())["span_type"] == "AGENT"


# -- invoke, ainvoke, stream, astream -----------------------------------------------------------


def _run(chain: Any, value: Any, mode: str) -> Any:
    if mode == "invoke":
        return chain.invoke(value)
    if mode == "ainvoke":
        return asyncio.run(chain.ainvoke(value))
    if mode == "stream":
        return "".join(chain.stream(value))

    async def consume() -> str:
        return "".join([c async for c in chain.astream(value)])

    return asyncio.run(consume())


MODES = ["invoke", "ainvoke", "stream", "astream"]


@pytest.mark.parametrize("mode", MODES)
def test_every_way_of_running_a_chain(traced: Capture, mode: str) -> None:
    assert _run(qa_chain(UsageChatModel()), {"q": "hey"}, mode) == "hello there friend"
    record = traced.single()
    root = check_tree(record)
    assert shape(record) == QA_SHAPE
    assert root["outputs"] == "hello there friend"
    chat = by_name(record, "UsageChatModel")
    assert chat["inputs"]["messages"][0][0]["content"] == "hey"
    assert chat["outputs"]["generations"][0][0]["text"] == "hello there friend"
    # The call's final usage: streams included, never a sum tracekit made of chunks.
    assert chat["token_usage"] == USAGE
    assert record["token_usage"] == USAGE
    if mode in ("stream", "astream"):
        assert chat["attributes"]["tracekit.stream"] is True
    # The real inputs, for streams too (LangChain only knows them when the input
    # stream ends, and passes them to on_chain_end).
    assert root["inputs"] == {"q": "hey"}
    assert by_name(record, "StrOutputParser")["inputs"]["content"] == "hello there friend"


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_streamed_chat_model_usage_is_the_final_figure(traced: Capture, mode: str) -> None:
    model = UsageChatModel(answer="one two three four five")
    if mode == "stream":
        chunks = list(model.stream("q"))
    else:

        async def consume() -> list[AIMessageChunk]:
            return [c async for c in model.astream("q")]

        chunks = asyncio.run(consume())
    assert len(chunks) >= 5
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    assert total.usage_metadata["total_tokens"] == USAGE["total_tokens"]

    record = traced.single()
    span = check_tree(record)
    assert span["token_usage"] == USAGE
    assert record["token_usage"] == USAGE
    assert span["outputs"]["generations"][0][0]["text"] == "one two three four five"


# -- batch and abatch -----------------------------------------------------------------------------

BATCH_RUNNABLES: dict[str, Callable[[], Any]] = {
    "sequence": lambda: (
        RunnableLambda(lambda x: f"{x}!", name="bang") | RunnableLambda(str.upper, name="upper")
    ),
    "lambda": lambda: RunnableLambda(lambda x: f"{x}!".upper(), name="bang"),
    "chat_model": lambda: FakeListChatModel(responses=["A!", "B!", "C!"]),
    "llm": lambda: FakeListLLM(responses=["A!", "B!", "C!"]),
}


def _text(value: Any) -> str:
    return getattr(value, "content", value)


def _root_input(span: dict[str, Any]) -> str:
    inputs = span["inputs"]
    if isinstance(inputs, dict) and "prompts" in inputs:
        (prompt,) = inputs["prompts"]
        return prompt.removeprefix("Human: ")
    if isinstance(inputs, dict) and "messages" in inputs:
        ((message,),) = inputs["messages"]
        return message["content"]
    return inputs


@pytest.mark.parametrize("kind", list(BATCH_RUNNABLES))
@pytest.mark.parametrize("mode", ["batch", "abatch"])
def test_batch_gives_one_complete_trace_per_input(traced: Capture, kind: str, mode: str) -> None:
    runnable = BATCH_RUNNABLES[kind]()
    inputs = ["a", "b", "c"]
    if mode == "batch":
        results = runnable.batch(inputs)
        after = tracekit.get_current_span()
    else:

        async def main() -> tuple[list[Any], Any]:
            out = await runnable.abatch(inputs)
            return out, tracekit.get_current_span()

        results, after = asyncio.run(main())
    assert [_text(r) for r in results] == ["A!", "B!", "C!"]

    records = traced.traces
    assert len(records) == 3, [shape(r) for r in records]
    roots = sorted((check_tree(r) for r in records), key=_root_input)
    assert [_root_input(root) for root in roots] == inputs
    for record in records:
        assert len(record["spans"]) == (3 if kind == "sequence" else 1)
    assert after is None  # nothing left current


@pytest.mark.parametrize("kind", list(BATCH_RUNNABLES))
@pytest.mark.parametrize("mode", ["batch", "abatch"])
def test_batch_under_a_user_span_gives_subtrees(traced: Capture, kind: str, mode: str) -> None:
    runnable = BATCH_RUNNABLES[kind]()

    if mode == "batch":

        @tracekit.trace
        def outer() -> list[Any]:
            results = runnable.batch(["a", "b", "c"])
            assert tracekit.get_current_span().name == "outer"
            return results

        results = outer()
    else:

        @tracekit.trace(name="outer")
        async def aouter() -> list[Any]:
            results = await runnable.abatch(["a", "b", "c"])
            assert tracekit.get_current_span().name == "outer"
            return results

        results = asyncio.run(aouter())
    assert [_text(r) for r in results] == ["A!", "B!", "C!"]

    record = traced.single()
    root = check_tree(record)
    assert root["name"] == "outer"
    children = [s for s in record["spans"] if s["parent_id"] == root["span_id"]]
    assert sorted(_root_input(c) for c in children) == ["a", "b", "c"]
    assert len(record["spans"]) == 1 + (9 if kind == "sequence" else 3)


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["invoke", "ainvoke", "stream", "astream"])
def test_error_marks_spans_and_reaches_the_caller_unchanged(traced: Capture, mode: str) -> None:
    error = BoomError("no luck")

    def fail(x: Any) -> Any:
        raise error

    chain = RunnableLambda(lambda x: x + 1, name="inc") | RunnableLambda(fail)
    with pytest.raises(BoomError) as info:
        _run(chain, 1, mode)
    assert info.value is error
    assert info.value.args == ("no luck",)

    record = traced.single()
    root = check_tree(record)
    assert record["status"] == "ERROR"
    assert root["status"] == {"code": "ERROR", "message": "BoomError: no luck"}
    assert by_name(record, "inc")["status"]["code"] == "OK"
    failed = by_name(record, "fail")
    assert failed["status"] == {"code": "ERROR", "message": "BoomError: no luck"}
    assert failed["parent_id"] == root["span_id"]
    (event,) = failed["events"]
    assert event["name"] == "exception"
    assert event["attributes"]["exception.type"] == "BoomError"
    assert event["attributes"]["exception.message"] == "no luck"
    assert "BoomError: no luck" in event["attributes"]["exception.stacktrace"]
    assert integration.handler._runs == {}


def test_chat_model_error(traced: Capture) -> None:
    class Broken(UsageChatModel):
        def _generate(self, *args: Any, **kwargs: Any) -> ChatResult:
            raise BoomError("model down")

    with pytest.raises(BoomError):
        qa_chain(Broken()).invoke({"q": "x"})
    record = traced.single()
    check_tree(record)
    chat = by_name(record, "Broken")
    assert chat["status"] == {"code": "ERROR", "message": "BoomError: model down"}
    assert chat["events"][0]["attributes"]["exception.type"] == "BoomError"
    assert "token_usage" not in chat


# -- nesting with the user's spans ----------------------------------------------------------------


def test_chain_nests_under_user_trace(traced: Capture) -> None:
    chain = qa_chain(UsageChatModel())

    @tracekit.trace
    def answer(q: str) -> str:
        return chain.invoke({"q": q})

    assert answer("hey") == "hello there friend"
    record = traced.single()
    root = check_tree(record)
    assert root["name"] == "answer"
    assert by_name(record, "RunnableSequence")["parent_id"] == root["span_id"]
    assert shape(record) == [("answer", None), ("RunnableSequence", "answer"), *QA_SHAPE[1:]]
    assert record["token_usage"] == USAGE


@pytest.mark.parametrize("mode", ["invoke", "ainvoke", "stream", "astream"])
def test_user_spans_inside_a_lambda_nest_under_it(traced: Capture, mode: str) -> None:
    @tracekit.trace(span_type="RETRIEVER")
    def lookup(x: str) -> str:
        return x * 2

    @tracekit.trace(name="alookup")
    async def alookup(x: str) -> str:
        return x * 2

    async def astep(x: str) -> str:
        return await alookup(x)

    step = RunnableLambda(lookup, afunc=astep, name="step")
    chain = RunnableLambda(str.strip, name="strip") | step
    assert _run(chain, " ab ", mode) == "abab"

    record = traced.single()
    check_tree(record)
    inner = by_name(record, "alookup" if mode in ("ainvoke", "astream") else "lookup")
    assert inner["parent_id"] == by_name(record, "step")["span_id"]
    assert inner["outputs"] == "abab"


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
def test_parallel_branches_in_langchains_thread_pool(traced: Capture, mode: str) -> None:
    """RunnableParallel runs its branches in LangChain's executor: each branch, and the
    user's spans inside it, nest where they belong."""

    @tracekit.trace
    def double(x: int) -> int:
        return 2 * x

    branches = RunnableParallel(
        doubled=RunnableLambda(double, name="doubler"),
        chat=RunnableLambda(str) | UsageChatModel() | StrOutputParser(),
        docs=RunnableLambda(str) | KeywordRetriever(documents=["21 is half"]),
    )

    @tracekit.trace
    def handle(x: int) -> dict[str, Any]:
        return branches.invoke(x) if mode == "invoke" else asyncio.run(branches.ainvoke(x))

    out = handle(21)
    assert out["doubled"] == 42
    assert out["chat"] == "hello there friend"
    assert [d.page_content for d in out["docs"]] == ["21 is half"]

    record = traced.single()
    root = check_tree(record)
    assert root["name"] == "handle"
    parallel = by_name(record, "RunnableParallel<doubled,chat,docs>")
    assert parallel["parent_id"] == root["span_id"]
    doubler = by_name(record, "doubler")
    assert doubler["parent_id"] == parallel["span_id"]
    assert by_name(record, "double")["parent_id"] == doubler["span_id"]
    sequences = [s for s in record["spans"] if s["name"] == "RunnableSequence"]
    assert [s["parent_id"] for s in sequences] == [parallel["span_id"]] * 2
    assert by_name(record, "UsageChatModel")["parent_id"] in {s["span_id"] for s in sequences}
    assert by_name(record, "KeywordRetriever")["parent_id"] in {s["span_id"] for s in sequences}
    assert record["token_usage"] == USAGE


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
def test_langchain_run_inside_a_user_span_inside_a_langchain_run(
    traced: Capture, mode: str
) -> None:
    """lambda -> the user's span -> a nested chain: the chain nests under the user's
    span, not beside it under the lambda."""
    inner = RunnableLambda(lambda x: x + "!", name="inner")

    @tracekit.trace
    def helper(x: str) -> str:
        return inner.invoke(x)

    @tracekit.trace(name="helper")
    async def ahelper(x: str) -> str:
        return await inner.ainvoke(x)

    chain = RunnableLambda(str.strip, name="clean") | RunnableLambda(
        helper, afunc=ahelper, name="step"
    )
    assert _run(chain, " a ", mode) == "a!"
    record = traced.single()
    check_tree(record)
    assert by_name(record, "helper")["parent_id"] == by_name(record, "step")["span_id"]
    assert by_name(record, "inner")["parent_id"] == by_name(record, "helper")["span_id"]


@pytest.mark.parametrize("host", ["lambda", "tool", "langgraph"])
def test_chat_model_inside_a_user_span_inside_a_langchain_run(
    with_openai: Capture, server: FakeProviderServer, host: str
) -> None:
    """A node, tool or lambda calls the user's function, which calls ChatOpenAI: the
    model span nests under the user's span, the provider span under the model's."""
    model = _chat_openai(server)

    @tracekit.trace
    def ask(question: str) -> str:
        return model.invoke(question).content

    if host == "lambda":
        assert RunnableLambda(ask, name="host").invoke("yo") == "You asked: yo"
    elif host == "tool":

        @tool
        def host_tool(question: str) -> str:
            """Asks the model."""
            return ask(question)

        assert host_tool.with_config(run_name="host").invoke({"question": "yo"}) == (
            "You asked: yo"
        )
    else:
        graph_module = pytest.importorskip("langgraph.graph")
        graph = graph_module.StateGraph(_State)
        graph.add_node("host", lambda state: {"answer": ask(state["question"])})
        graph.add_edge(graph_module.START, "host")
        graph.add_edge("host", graph_module.END)
        assert graph.compile().invoke({"question": "yo"})["answer"] == "You asked: yo"

    record = with_openai.single()
    check_tree(record)
    user = by_name(record, "ask")
    assert user["parent_id"] == by_name(record, "host")["span_id"]
    chat = by_name(record, "ChatOpenAI")
    assert chat["parent_id"] == user["span_id"]
    _assert_counted_once(record, chat)


def test_user_span_inside_a_tool_nests_under_it(traced: Capture) -> None:
    @tracekit.trace
    def compute(a: int) -> int:
        return a * 10

    @tool
    def scaled(a: int) -> int:
        """Scales a."""
        return compute(a)

    assert scaled.invoke({"a": 4}) == 40
    record = traced.single()
    assert by_name(record, "compute")["parent_id"] == check_tree(record)["span_id"]


# -- the current span after a run ------------------------------------------------------------------


def _stream_break(chain: Any) -> None:
    for _ in chain.stream("x"):
        break


def _error(chain: Any) -> None:
    with pytest.raises(BoomError):
        (chain | RunnableLambda(_raise)).invoke("x")


def _stream_error(chain: Any) -> None:
    def gen(values: Iterator[str]) -> Iterator[str]:
        for value in values:
            yield value
            raise BoomError("mid-stream")

    with pytest.raises(BoomError):
        for _ in (chain | RunnableGenerator(gen)).stream("x"):
            pass


SYNC_RUNS: dict[str, Callable[[Any], Any]] = {
    "invoke": lambda chain: chain.invoke("x"),
    "stream": lambda chain: list(chain.stream("x")),
    "stream_break": _stream_break,
    "stream_error": _stream_error,
    "error": _error,
    "batch": lambda chain: chain.batch(["x", "y"]),
    "chat_model": lambda chain: UsageChatModel().invoke("x"),
    "chat_model_stream": lambda chain: list(UsageChatModel().stream("x")),
    "llm_batch": lambda chain: FakeListLLM(responses=["a", "b"]).batch(["x", "y"]),
}


def _raise(x: Any) -> Any:
    raise BoomError("x")


def _small_chain() -> Any:
    return RunnableLambda(lambda x: x, name="first") | RunnableLambda(lambda x: x, name="second")


@pytest.mark.parametrize("caller", [False, True], ids=["no-caller", "caller-span"])
@pytest.mark.parametrize("run", list(SYNC_RUNS))
def test_current_span_is_restored_after_a_run(traced: Capture, run: str, caller: bool) -> None:
    chain = _small_chain()
    if not caller:
        SYNC_RUNS[run](chain)
        assert tracekit.get_current_span() is None
    else:
        with tracekit.start_span("caller") as span:
            SYNC_RUNS[run](chain)
            assert tracekit.get_current_span() is span
        assert tracekit.get_current_span() is None
    # The next run starts its own trace: nothing from the last one is still current.
    chain.invoke("again")
    for record in traced.traces:
        check_tree(record)
    assert check_tree(traced.traces[-1])["name"] == "RunnableSequence"
    assert integration.handler._runs == {}


async def _astream_all(chain: Any) -> None:
    async for _ in chain.astream("x"):
        pass


async def _aerror(chain: Any) -> None:
    with pytest.raises(BoomError):
        await (chain | RunnableLambda(_raise)).ainvoke("x")


async def _aretrieve(chain: Any) -> None:
    await KeywordRetriever(documents=["x"]).ainvoke("x")


async def _achat(chain: Any) -> None:
    await UsageChatModel().ainvoke("x")


async def _achat_stream(chain: Any) -> None:
    async for _ in UsageChatModel().astream("x"):
        pass


ASYNC_RUNS: dict[str, Callable[[Any], Any]] = {
    "ainvoke": lambda chain: chain.ainvoke("x"),
    "astream": _astream_all,
    "abatch": lambda chain: chain.abatch(["x", "y"]),
    "aerror": _aerror,
    "chat_model_ainvoke": _achat,
    "chat_model_astream": _achat_stream,
    "retriever_ainvoke": _aretrieve,
}


@pytest.mark.parametrize("caller", [False, True], ids=["no-caller", "caller-span"])
@pytest.mark.parametrize("run", list(ASYNC_RUNS))
def test_current_span_is_restored_after_an_async_run(
    traced: Capture, run: str, caller: bool
) -> None:
    chain = _small_chain()

    async def main() -> None:
        if not caller:
            await ASYNC_RUNS[run](chain)
            assert tracekit.get_current_span() is None
        else:
            with tracekit.start_span("caller") as span:
                await ASYNC_RUNS[run](chain)
                assert tracekit.get_current_span() is span
            assert tracekit.get_current_span() is None
        await chain.ainvoke("again")

    asyncio.run(main())
    for record in traced.traces:
        check_tree(record)
    assert check_tree(traced.traces[-1])["name"] == "RunnableSequence"
    assert integration.handler._runs == {}


def test_sequential_ainvokes_are_separate_traces(traced: Capture) -> None:
    chain = _small_chain()

    async def main() -> None:
        for i in range(3):
            await chain.ainvoke(i)

    asyncio.run(main())
    records = traced.traces
    assert len(records) == 3
    for i, record in enumerate(records):
        root = check_tree(record)
        assert (root["name"], root["inputs"], root["parent_id"]) == ("RunnableSequence", i, None)


# -- with the OpenAI integration ----------------------------------------------------------------


def _chat_openai(server: FakeProviderServer, **kwargs: Any) -> Any:
    openai = pytest.importorskip("openai")
    langchain_openai = pytest.importorskip("langchain_openai")
    return langchain_openai.ChatOpenAI(
        base_url=server.base_url + "/v1",
        api_key="k",
        model="fake-mini",
        max_retries=0,
        # langchain-openai caches one async HTTP client per base URL across event loops;
        # each test's asyncio.run needs its own.
        http_async_client=openai.DefaultAsyncHttpxClient(),
        **kwargs,
    )


def _assert_counted_once(record: dict[str, Any], chat: dict[str, Any]) -> None:
    inner = by_name(record, "chat fake-mini")
    assert inner["parent_id"] == chat["span_id"]
    assert inner["span_type"] == "CHAT_MODEL"
    assert inner["status"]["code"] == "OK"
    usage = inner["token_usage"]
    for key in ("input_tokens", "output_tokens", "total_tokens"):
        assert chat["token_usage"][key] == usage[key]
    assert record["token_usage"]["total_tokens"] == usage["total_tokens"]
    assert record["token_usage"]["input_tokens"] == usage["input_tokens"]


@pytest.mark.parametrize("mode", MODES)
def test_chatopenai_with_openai_autolog_nests_and_counts_once(
    with_openai: Capture, server: FakeProviderServer, mode: str
) -> None:
    model = _chat_openai(server, stream_usage=True)
    chain = qa_chain(model).with_config(run_name="qa")
    sent = len(server.requests)
    assert _run(chain, {"q": "what is up"}, mode) == "You asked: what is up"

    record = with_openai.single()
    root = check_tree(record)
    assert root["name"] == "qa"
    chat = by_name(record, "ChatOpenAI")
    assert chat["parent_id"] == root["span_id"]
    assert chat["attributes"]["gen_ai.request.model"] == "fake-mini"
    assert chat["attributes"]["gen_ai.provider.name"] == "openai"
    _assert_counted_once(record, chat)
    assert len(record["spans"]) == 5
    assert len(server.requests) == sent + 1


def test_chatopenai_batch_under_user_span(with_openai: Capture, server: FakeProviderServer) -> None:
    model = _chat_openai(server)

    @tracekit.trace
    def ask_all(questions: list[str]) -> list[str]:
        return [m.content for m in model.batch(questions)]

    questions = [f"q{i}" for i in range(4)]
    assert ask_all(questions) == [f"You asked: {q}" for q in questions]
    record = with_openai.single()
    root = check_tree(record)
    chats = [s for s in record["spans"] if s["name"] == "ChatOpenAI"]
    assert len(chats) == 4
    for chat in chats:
        assert chat["parent_id"] == root["span_id"]
        (inner,) = [s for s in record["spans"] if s["parent_id"] == chat["span_id"]]
        assert inner["name"] == "chat fake-mini"
        question = chat["inputs"]["messages"][0][0]["content"]
        assert inner["inputs"]["messages"][0]["content"] == question
    single = chats[0]["token_usage"]["total_tokens"]
    assert record["token_usage"]["total_tokens"] == 4 * single


@pytest.mark.parametrize("mode", ["invoke", "ainvoke", "chain"])
def test_llm_with_openai_autolog_nests_and_counts_once(
    with_openai: Capture, server: FakeProviderServer, mode: str
) -> None:
    """A LangChain LLM (completions) is a model span too: the provider call inside it
    nests there, in the same trace, and its tokens count once."""
    openai = pytest.importorskip("openai")
    langchain_openai = pytest.importorskip("langchain_openai")
    llm = langchain_openai.OpenAI(
        base_url=server.base_url + "/v1",
        api_key="k",
        model="fake-instruct",
        max_retries=0,
        http_async_client=openai.DefaultAsyncHttpxClient(),
    )
    if mode == "invoke":
        answer = llm.invoke("hi")
    elif mode == "ainvoke":
        answer = asyncio.run(llm.ainvoke("hi"))
    else:
        answer = (RunnableLambda(str.strip, name="clean") | llm).invoke(" hi ")
    assert answer.startswith("You asked:")

    record = with_openai.single()
    check_tree(record)
    span = by_name(record, "OpenAI")
    assert span["span_type"] == "LLM"
    inner = by_name(record, "text_completion fake-instruct")
    assert inner["parent_id"] == span["span_id"]
    assert span["token_usage"]["total_tokens"] == inner["token_usage"]["total_tokens"]
    assert record["token_usage"]["total_tokens"] == inner["token_usage"]["total_tokens"]


def test_several_choices_are_one_call_counted_once(with_openai: Capture) -> None:
    """ChatOpenAI(n=2) puts the call's usage on each of the two messages; the span
    (and the trace) must count the one call once, as the provider span does."""
    httpx = pytest.importorskip("httpx")
    langchain_openai = pytest.importorskip("langchain_openai")

    def respond(request: Any) -> Any:
        body = json.loads(request.content)
        choices = [
            {"index": i, "message": {"role": "assistant", "content": f"answer {i}"}}
            for i in range(body["n"])
        ]
        for choice in choices:
            choice["finish_reason"] = "stop"
        usage = {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}
        return httpx.Response(
            200,
            json={
                "id": "chatcmpl-n",
                "object": "chat.completion",
                "created": 1,
                "model": body["model"],
                "choices": choices,
                "usage": usage,
            },
        )

    model = langchain_openai.ChatOpenAI(
        model="gpt-4o-mini",
        api_key="k",
        n=2,
        max_retries=0,
        http_client=httpx.Client(transport=httpx.MockTransport(respond)),
    )
    result = model.generate([[HumanMessage("q")]])
    assert [g.text for g in result.generations[0]] == ["answer 0", "answer 1"]

    record = with_openai.single()
    chat = by_name(record, "ChatOpenAI")
    inner = by_name(record, "chat gpt-4o-mini")
    assert inner["parent_id"] == chat["span_id"]
    assert inner["token_usage"]["total_tokens"] == 14
    assert chat["token_usage"] == {"input_tokens": 10, "output_tokens": 4, "total_tokens": 14}
    assert record["token_usage"]["total_tokens"] == 14


def test_tool_calling_round_trip_with_openai(
    with_openai: Capture, server: FakeProviderServer
) -> None:
    @tool
    def search(query: str) -> str:
        """Searches the docs."""
        return f"found {query}"

    model = _chat_openai(server).bind_tools([search])

    @tracekit.trace(span_type="AGENT")
    def agent(question: str) -> str:
        messages: list[Any] = [("user", question)]
        reply = model.invoke(messages)
        messages.append(reply)
        for call in reply.tool_calls:
            messages.append(search.invoke(call))
        return model.invoke(messages).content

    assert agent("cats") == "The tool says: found cats"
    record = with_openai.single()
    root = check_tree(record)
    chats = [s for s in record["spans"] if s["name"] == "ChatOpenAI"]
    assert len(chats) == 2
    tool_span = by_name(record, "search")
    assert tool_span["parent_id"] == root["span_id"]
    assert tool_span["inputs"] == {"query": "cats"}
    assert tool_span["outputs"]["content"] == "found cats"
    inners = [s for s in record["spans"] if s["name"] == "chat fake-mini"]
    assert sorted(s["parent_id"] for s in inners) == sorted(c["span_id"] for c in chats)
    total = sum(s["token_usage"]["total_tokens"] for s in inners)
    assert record["token_usage"]["total_tokens"] == total
    ((generation,),) = chats[0]["outputs"]["generations"]
    assert [c["name"] for c in generation["message"]["tool_calls"]] == ["search"]


# -- LangGraph ----------------------------------------------------------------------------------


class _State(TypedDict, total=False):
    question: str
    answer: str


def _graph(ask: Callable[..., Any]) -> Any:
    graph_module = pytest.importorskip("langgraph.graph")
    graph = graph_module.StateGraph(_State)
    graph.add_node("ask", ask)
    graph.add_node("shout", lambda state: {"answer": state["answer"].upper()})
    graph.add_edge(graph_module.START, "ask")
    graph.add_edge("ask", "shout")
    graph.add_edge("shout", graph_module.END)
    return graph.compile()


def _check_graph(record: dict[str, Any], provider_parent: str) -> None:
    root = check_tree(record)
    assert (root["name"], root["span_type"]) == ("LangGraph", "CHAIN")
    assert root["inputs"] == {"question": "hi"}
    assert root["outputs"] == {"question": "hi", "answer": "YOU ASKED: HI"}
    ask, shout = by_name(record, "ask"), by_name(record, "shout")
    for node in (ask, shout):
        assert node["parent_id"] == root["span_id"]
        assert node["span_type"] == "CHAIN"
        assert node["attributes"]["langgraph.node"] == node["name"]
    assert shout["inputs"] == {"question": "hi", "answer": "You asked: hi"}
    # The OpenAI call made inside the node is traced, nested under it.
    inner = by_name(record, "chat fake-mini")
    assert inner["parent_id"] == by_name(record, provider_parent)["span_id"]
    assert inner["outputs"]["choices"][0]["message"]["content"] == "You asked: hi"
    assert record["token_usage"]["total_tokens"] == inner["token_usage"]["total_tokens"]


@pytest.mark.parametrize("mode", ["invoke", "ainvoke", "stream"])
def test_langgraph_openai_call_inside_a_node(
    with_openai: Capture, server: FakeProviderServer, mode: str
) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(api_key="k", base_url=server.base_url + "/v1", max_retries=0)
    aclient = openai.AsyncOpenAI(api_key="k", base_url=server.base_url + "/v1", max_retries=0)

    def ask(state: _State) -> _State:
        messages = [{"role": "user", "content": state["question"]}]
        reply = client.chat.completions.create(model="fake-mini", messages=messages)
        return {"answer": reply.choices[0].message.content}

    async def aask(state: _State) -> _State:
        messages = [{"role": "user", "content": state["question"]}]
        reply = await aclient.chat.completions.create(model="fake-mini", messages=messages)
        return {"answer": reply.choices[0].message.content}

    app = _graph(aask if mode == "ainvoke" else ask)
    if mode == "invoke":
        assert app.invoke({"question": "hi"})["answer"] == "YOU ASKED: HI"
    elif mode == "ainvoke":
        assert asyncio.run(app.ainvoke({"question": "hi"}))["answer"] == "YOU ASKED: HI"
    else:
        updates = list(app.stream({"question": "hi"}))
        assert updates[-1] == {"shout": {"answer": "YOU ASKED: HI"}}
    _check_graph(with_openai.single(), provider_parent="ask")


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
def test_langgraph_chatopenai_inside_a_node(
    with_openai: Capture, server: FakeProviderServer, mode: str
) -> None:
    model = _chat_openai(server)

    def ask(state: _State) -> _State:
        return {"answer": model.invoke(state["question"]).content}

    async def aask(state: _State) -> _State:
        return {"answer": (await model.ainvoke(state["question"])).content}

    app = _graph(aask if mode == "ainvoke" else ask)
    if mode == "invoke":
        assert app.invoke({"question": "hi"})["answer"] == "YOU ASKED: HI"
    else:
        assert asyncio.run(app.ainvoke({"question": "hi"}))["answer"] == "YOU ASKED: HI"
    record = with_openai.single()
    chat = by_name(record, "ChatOpenAI")
    assert chat["parent_id"] == by_name(record, "ask")["span_id"]
    _check_graph(record, provider_parent="ChatOpenAI")
    _assert_counted_once(record, chat)


# -- bookkeeping ----------------------------------------------------------------------------------


def _live_spans() -> int:
    return sum(1 for o in gc.get_objects() if isinstance(o, Span))


def test_no_run_is_kept_after_10000_invocations(traced: Capture) -> None:
    chain = _small_chain()
    error_chain = chain | RunnableLambda(_raise)
    handler = integration.handler

    def mixed(n: int) -> None:
        for i in range(n):
            chain.invoke(i)
            if i % 50 == 0:
                with pytest.raises(BoomError):
                    error_chain.invoke(i)
                for _ in chain.stream(i):
                    break

    mixed(500)
    traced.clear()
    gc.collect()
    spans_before = _live_spans()

    for _ in range(19):  # 10,000 invocations in all, exported as they go
        mixed(500)
        traced.clear()
    assert handler._runs == {}

    async def many() -> None:
        for i in range(100):
            await chain.ainvoke(i)
        await chain.abatch(list(range(100)))

    asyncio.run(many())
    assert handler._runs == {}
    traced.clear()
    assert _state.buffer.in_flight() == 0
    gc.collect()
    assert _live_spans() <= spans_before + 5

    # Memory, loosely: a kept run and span would cost kilobytes per invocation. Each
    # measure follows a flush: traces waiting in the export queue (their records made
    # early, a kilobyte each) are not kept, and how many wait depends on timing.
    tracemalloc.start()
    try:
        mixed(200)
        assert tracekit.flush(10)
        traced.clear()
        gc.collect()
        start = tracemalloc.get_traced_memory()[0]
        mixed(400)
        assert tracekit.flush(10)
        traced.clear()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    assert grown < 400 * 500, f"{grown} bytes kept over 400 invocations"
    assert handler._runs == {}


# -- LangChain behaves as without tracekit --------------------------------------------------------


def _normalize(value: Any) -> Any:
    """Event data without run-specific ids."""
    if isinstance(value, BaseMessage):
        return (type(value).__name__, value.content, getattr(value, "usage_metadata", None))
    if isinstance(value, dict):
        return {k: _normalize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalize(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return type(value).__name__


async def _events(chain: Any) -> list[tuple[Any, ...]]:
    events = []
    async for event in chain.astream_events({"q": "hey"}, version="v2"):
        events.append(
            (
                event["event"],
                event["name"],
                tuple(event.get("tags") or ()),
                len(event["parent_ids"]),
                _normalize(event["data"]),
            )
        )
    return events


def test_astream_events_are_unchanged(traced: Capture) -> None:
    def build() -> Any:
        retriever = KeywordRetriever(documents=["hey you"])
        context = RunnableLambda(lambda x: {"q": x["q"], "docs": retriever.invoke(x["q"])})
        return context | qa_chain(UsageChatModel())

    with_tracing = asyncio.run(_events(build()))
    assert len(traced.traces) == 1
    integration.revert()
    without = asyncio.run(_events(build()))
    tracekit.langchain.autolog()

    assert with_tracing == without
    kinds = {e[0] for e in with_tracing}
    assert {"on_chain_start", "on_chat_model_stream", "on_chat_model_end", "on_chain_end"} <= kinds
    assert {"on_retriever_start", "on_retriever_end", "on_parser_stream"} <= kinds
    assert "".join(e[4]["chunk"] for e in with_tracing if e[0] == "on_parser_stream") == (
        "hello there friend"
    )


class Recorder(BaseCallbackHandler):
    """A user's own handler: records what LangChain tells it."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
        self.events.append(("chain_start", kwargs.get("name"), _normalize(inputs)))

    def on_chain_end(self, outputs: Any, **kwargs: Any) -> None:
        self.events.append(("chain_end", _normalize(outputs)))

    def on_chain_error(self, error: BaseException, **kwargs: Any) -> None:
        self.events.append(("chain_error", repr(error)))

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self.events.append(("chat_model_start", _normalize(messages)))

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.events.append(("token", token))

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        message = response.generations[0][0].message
        self.events.append(("llm_end", message.content, message.usage_metadata))

    def on_tool_start(self, serialized: Any, input_str: str, **kwargs: Any) -> None:
        self.events.append(("tool_start", input_str))

    def on_tool_end(self, output: Any, **kwargs: Any) -> None:
        self.events.append(("tool_end", _normalize(output)))


def _exercise(recorder: Recorder) -> None:
    config = {"callbacks": [recorder]}
    chain = qa_chain(UsageChatModel())
    chain.invoke({"q": "hey"}, config=config)
    list(chain.stream({"q": "hey"}, config=config))
    add.invoke({"a": 1, "b": 2}, config=config)
    with pytest.raises(BoomError):
        (chain | RunnableLambda(_raise)).invoke({"q": "hey"}, config=config)
    asyncio.run(chain.ainvoke({"q": "hey"}, config=config))


def test_user_callback_handler_gets_the_same_events(traced: Capture) -> None:
    with_tracing = Recorder()
    _exercise(with_tracing)
    assert len(traced.traces) == 5
    integration.revert()
    without = Recorder()
    _exercise(without)
    tracekit.langchain.autolog()

    assert with_tracing.events == without.events
    assert ("token", "friend") in with_tracing.events
    assert ("llm_end", "hello there friend", USAGE) in with_tracing.events
    assert ("tool_end", 3) in with_tracing.events


def test_user_callback_list_is_not_changed(traced: Capture) -> None:
    recorder = Recorder()
    handlers = [recorder]
    manager = CallbackManager(handlers=handlers)
    RunnableLambda(lambda x: x, name="echo").invoke(1, config={"callbacks": manager})
    RunnableLambda(lambda x: x, name="echo").invoke(2, config={"callbacks": handlers})
    assert handlers == [recorder]
    assert [e for e in recorder.events if e[0] == "chain_start"] == [
        ("chain_start", "echo", 1),
        ("chain_start", "echo", 2),
    ]
    assert len(traced.traces) == 2


# -- switching off --------------------------------------------------------------------------------


@pytest.mark.parametrize("switch", [{"disable": True}, {"log_traces": False}])
def test_autolog_disable_records_nothing(traced: Capture, switch: dict[str, bool]) -> None:
    chain = qa_chain(UsageChatModel())
    early = CallbackManager(handlers=[])  # made while tracing was on
    tracekit.langchain.autolog(**switch)
    assert chain.invoke({"q": "hey"}, config={"callbacks": early}) == "hello there friend"
    assert chain.invoke({"q": "hey"}) == "hello there friend"
    assert "".join(chain.stream({"q": "hey"})) == "hello there friend"
    assert asyncio.run(chain.ainvoke({"q": "hey"})) == "hello there friend"
    add.invoke({"a": 1, "b": 1})
    assert traced.traces == []
    assert integration.handler._runs == {}
    assert tracekit.get_current_span() is None

    tracekit.langchain.autolog()
    chain.invoke({"q": "again"})
    assert check_tree(traced.single())["inputs"] == {"q": "again"}


def test_disabled_langchain_keeps_openai_spans(
    with_openai: Capture, server: FakeProviderServer
) -> None:
    tracekit.langchain.autolog(disable=True)
    assert _chat_openai(server).invoke("hi").content == "You asked: hi"
    record = with_openai.single()
    assert [s["name"] for s in record["spans"]] == ["chat fake-mini"]
