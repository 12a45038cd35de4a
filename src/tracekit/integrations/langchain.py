"""LangChain: a callback handler that every callback manager carries.

`autolog()` patches `BaseCallbackManager.__init__` so that each manager gets the
tracekit handler as an inheritable handler: every runnable (chains, chat models,
LLMs, tools, retrievers, LangGraph graphs and nodes) is traced without the user
passing callbacks. A run's span is current while the run executes, so provider
spans (`tracekit.openai.autolog()` ...) and the user's own `@tracekit.trace`
spans nest inside it; the trace counts a provider call's tokens once.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any
from uuid import UUID

from tracekit import _api, _context
from tracekit._context import current_parent, current_span
from tracekit._guard import guard
from tracekit._span import NON_RECORDING, Span, SpanType
from tracekit.integrations._base import BaseIntegration
from tracekit.integrations._langchain_mapping import (
    ModelMapping,
    ModelRequest,
    fill_usage,
    model_request,
)
from tracekit.integrations._registry import spec

MAX_OPEN_RUNS = 10_000  # runs that never end (abandoned streams) cannot grow memory


# Set while a chat model's `stream()`/`astream()` takes a step: the model run that
# starts inside lands here, so its span can be current during the following steps.
_model_stream: ContextVar[list[Span] | None] = ContextVar("tracekit_lc_stream", default=None)


def _drive_stream(gen: Any) -> Any:
    """Step a chat model's `stream()` with its run's span current during each step."""
    holder: list[Span] = []
    while True:
        t1 = _model_stream.set(holder)
        t2 = current_span.set(holder[0] if holder else current_span.get())
        try:
            item = next(gen)
        except StopIteration:
            return
        finally:
            current_span.reset(t2)
            _model_stream.reset(t1)
        try:
            yield item
        except GeneratorExit:
            gen.close()
            raise


async def _adrive_stream(gen: Any) -> Any:
    holder: list[Span] = []
    while True:
        t1 = _model_stream.set(holder)
        t2 = current_span.set(holder[0] if holder else current_span.get())
        try:
            item = await gen.__anext__()
        except StopAsyncIteration:
            return
        finally:
            current_span.reset(t2)
            _model_stream.reset(t1)
        try:
            yield item
        except GeneratorExit:
            await gen.aclose()
            raise


def _inside(span: Span | None, run_span: Span) -> bool:
    """Whether `span` (the current one) started within `run_span` and is still open."""
    return (
        span is not None
        and span is not run_span
        and span.end_time_ns is None
        and span.trace_id == run_span.trace_id
        and span.start_time_ns >= run_span.start_time_ns
    )


class _Run:
    __slots__ = ("mapping", "parent", "span", "token")

    def __init__(
        self, span: Span, token: Any, parent: Span | None, mapping: ModelMapping | None
    ) -> None:
        self.span = span
        self.token = token
        self.parent = parent
        self.mapping = mapping  # a model run's deferred mapping


def _name(serialized: Mapping[str, Any] | None, kwargs: Mapping[str, Any], default: str) -> str:
    name = kwargs.get("name")
    if isinstance(name, str) and name:
        return name
    if isinstance(serialized, Mapping):
        if isinstance(serialized.get("name"), str):
            return str(serialized["name"])
        ids = serialized.get("id")
        if isinstance(ids, list) and ids:
            return str(ids[-1])
    return default


class TracekitCallbackHandler:
    """Maps LangChain run events to tracekit spans (one span per run)."""

    # LangChain reads these attributes of every handler.
    raise_error = False
    run_inline = True  # called in the run's own thread and context, not an executor
    ignore_llm = ignore_chain = ignore_agent = ignore_retriever = False
    ignore_chat_model = ignore_retry = ignore_custom_event = False

    def __init__(self, active: Any) -> None:
        self._active = active
        self._lock = threading.Lock()
        self._runs: OrderedDict[UUID, _Run] = OrderedDict()

    # -- bookkeeping -------------------------------------------------------------

    def _start(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        name: str,
        span_type: str,
        inputs: Any,
        attributes: dict[str, Any] | None = None,
        current: bool = False,
        model: ModelRequest | None = None,
    ) -> None:
        if not self._active():
            return
        with guard("langchain start"):
            with self._lock:
                parent_run = self._runs.get(parent_run_id) if parent_run_id else None
            # LangChain's own thread pools may lose contextvars: the parent run wins.
            parent = current_parent()
            if parent_run is not None and not _inside(parent, parent_run.span):
                parent = parent_run.span  # the user's current span is not nested in it
            span = _api.start(name, span_type, parent)
            if span is NON_RECORDING:
                return
            span.set_inputs(inputs)
            if attributes:
                span.set_attributes(attributes)
            mapping = None
            if model is not None:  # its attributes are mapped on the export worker
                mapping = ModelMapping(span, *model)
                span.defer(mapping)
            # Runs are never made current here: LangChain may start several runs in
            # one context (`batch`) and end them in others. Spans find their LangChain
            # parent through LangChain's own context (`running_span`), and a chat
            # model's span is made current around its provider call (`_around_model`).
            token = current_span.set(span) if current else None
            if span_type in (SpanType.CHAT_MODEL, SpanType.LLM):
                holder = _model_stream.get()
                if holder is not None and not holder:  # inside a traced `stream()` step
                    holder.append(span)
                    current_span.set(span)  # the step's own token restores it afterwards
            with self._lock:
                self._runs[run_id] = _Run(span, token, parent, mapping)
                while len(self._runs) > MAX_OPEN_RUNS:
                    _, dropped = self._runs.popitem(last=False)
                    dropped.span.set_attribute("tracekit.force_ended", "too many open runs")
                    dropped.span.end()

    def _end(
        self,
        run_id: UUID,
        outputs: Any = None,
        error: BaseException | None = None,
        usage_of: Any = None,
    ) -> None:
        with self._lock:
            run = self._runs.pop(run_id, None)
        if run is None:
            return
        with guard("langchain end"):
            if run.token is not None:
                try:
                    current_span.reset(run.token)
                except ValueError:  # ended in another context than it started
                    if current_span.get() is run.span:
                        current_span.set(run.parent)
            if outputs is not None and error is None:
                run.span.set_outputs(outputs)
            if usage_of is not None:  # an LLMResult: its usage is read on the export worker
                if run.mapping is not None:
                    run.mapping.response = usage_of
                else:
                    run.span.defer(functools.partial(fill_usage, run.span, usage_of))
            _api.finish(run.span, error)

    def run_span(self, run_manager: Any) -> Span | None:
        run_id = getattr(run_manager, "run_id", None)
        return self._span(run_id) if run_id is not None else None

    def running_span(self) -> Span | None:
        """The span of the LangChain run executing in this context, if any."""
        if not self._runs:
            return None
        from langchain_core.runnables.config import var_child_runnable_config

        config = var_child_runnable_config.get()
        manager = config.get("callbacks") if config else None
        run_id = getattr(manager, "parent_run_id", None)
        return self._span(run_id) if run_id is not None else None

    def _span(self, run_id: UUID) -> Span | None:
        with self._lock:
            run = self._runs.get(run_id)
        return run.span if run is not None else None

    # -- chains, agents, graph nodes -----------------------------------------------

    def on_chain_start(
        self,
        serialized: Any,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: Any = None,
        metadata: Any = None,
        **kwargs: Any,
    ) -> None:
        name = _name(serialized, kwargs, "chain")
        span_type = SpanType.AGENT if "agent" in name.lower() else SpanType.CHAIN
        attributes = {}
        if isinstance(metadata, Mapping) and metadata.get("langgraph_node"):
            attributes["langgraph.node"] = metadata["langgraph_node"]
        self._start(run_id, parent_run_id, name, span_type, inputs, attributes)

    def _late_inputs(self, run_id: UUID, kwargs: Mapping[str, Any]) -> None:
        # A streamed chain learns its input only at the end (it starts with "").
        if kwargs.get("inputs") is not None:
            span = self._span(run_id)
            if span is not None:
                span.set_inputs(kwargs["inputs"])

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._late_inputs(run_id, kwargs)
        self._end(run_id, outputs)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._late_inputs(run_id, kwargs)
        self._end(run_id, error=error)

    # -- models ----------------------------------------------------------------------

    def on_chat_model_start(
        self,
        serialized: Any,
        messages: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: Any = None,
        metadata: Any = None,
        **kwargs: Any,
    ) -> None:
        name = _name(serialized, kwargs, "chat_model")
        self._start(
            run_id,
            parent_run_id,
            name,
            SpanType.CHAT_MODEL,
            {"messages": messages},
            model=model_request(kwargs, metadata, "chat"),
        )

    def on_llm_start(
        self,
        serialized: Any,
        prompts: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: Any = None,
        metadata: Any = None,
        **kwargs: Any,
    ) -> None:
        name = _name(serialized, kwargs, "llm")
        self._start(
            run_id,
            parent_run_id,
            name,
            SpanType.LLM,
            {"prompts": prompts},
            model=model_request(kwargs, metadata, "text_completion"),
        )

    def on_llm_new_token(self, token: str, *, run_id: UUID, **kwargs: Any) -> None:
        span = self._span(run_id)
        if span is None or (span.attributes or {}).get("tracekit.time_to_first_chunk_s"):
            return
        from tracekit import _runtime

        ttfc = (_runtime.clock() - span.start_time_ns) / 1e9
        span.set_attributes({"tracekit.stream": True, "tracekit.time_to_first_chunk_s": ttfc})

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, response, usage_of=response)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, error=error)

    # -- tools and retrievers ----------------------------------------------------------

    def on_tool_start(
        self,
        serialized: Any,
        input_str: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: Any = None,
        metadata: Any = None,
        inputs: Any = None,
        **kwargs: Any,
    ) -> None:
        name = _name(serialized, kwargs, "tool")
        attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name}
        self._start(
            run_id,
            parent_run_id,
            name,
            SpanType.TOOL,
            inputs if inputs is not None else input_str,
            attributes,
        )

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, output)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, error=error)

    def on_retriever_start(
        self,
        serialized: Any,
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: Any = None,
        metadata: Any = None,
        **kwargs: Any,
    ) -> None:
        name = _name(serialized, kwargs, "retriever")
        self._start(run_id, parent_run_id, name, SpanType.RETRIEVER, {"query": query})

    def on_retriever_end(self, documents: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, documents)

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, error=error)

    # -- events tracekit does not map ------------------------------------------------------

    def on_agent_action(self, action: Any, **kwargs: Any) -> None:
        pass

    def on_agent_finish(self, finish: Any, **kwargs: Any) -> None:
        pass

    def on_text(self, text: str, **kwargs: Any) -> None:
        pass

    def on_retry(self, retry_state: Any, **kwargs: Any) -> None:
        pass

    def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        pass

    def on_stream_event(self, *args: Any, **kwargs: Any) -> None:
        pass


class LangChainIntegration(BaseIntegration):
    """Adds the handler to every callback manager; switched at call time."""

    def __init__(self) -> None:
        super().__init__(spec("langchain"))
        self.handler: Any = None
        self._original: Any = None
        self._model_originals: dict[tuple[type, str], Any] = {}

    def _model_span(self, args: Any, kwargs: Mapping[str, Any]) -> Span | None:
        handler = self.handler
        if handler is None or not self.enabled:
            return None
        manager = kwargs.get("run_manager")
        if manager is None:  # LLMs: one call may serve several prompts; the first run wins
            managers = kwargs.get("run_managers", args[2] if len(args) > 2 else None)
            manager = managers[0] if isinstance(managers, list) and managers else None
        return handler.run_span(manager)  # type: ignore[no-any-return]

    def _around_model(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        """Make the chat model run's span current while it calls its provider
        (a LangChain-internal seam: the one place that holds the run and the call)."""
        span = self._model_span(args, kwargs)
        if span is None:
            return wrapped(*args, **kwargs)
        token = current_span.set(span)
        try:
            return wrapped(*args, **kwargs)
        finally:
            current_span.reset(token)

    def _around_stream(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        gen = wrapped(*args, **kwargs)
        return _drive_stream(gen) if self.active() else gen

    def _around_astream(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        gen = wrapped(*args, **kwargs)
        return _adrive_stream(gen) if self.active() else gen

    async def _around_amodel(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        span = self._model_span(args, kwargs)
        if span is None:
            return await wrapped(*args, **kwargs)
        token = current_span.set(span)
        try:
            return await wrapped(*args, **kwargs)
        finally:
            current_span.reset(token)

    def _patch(self) -> None:
        import wrapt
        from langchain_core.callbacks import base
        from langchain_core.language_models import chat_models, llms

        handler_cls = type(
            "TracekitCallbackHandler", (TracekitCallbackHandler, base.BaseCallbackHandler), {}
        )
        self.handler = handler_cls(self.active)
        _context.parent_resolver = self.handler.running_span
        self._original = base.BaseCallbackManager.__dict__["__init__"]
        wrapt.wrap_function_wrapper(base, "BaseCallbackManager.__init__", self._init)
        for cls, generate in (
            (chat_models.BaseChatModel, "_generate_with_cache"),
            (llms.BaseLLM, "_generate_helper"),
        ):
            for method, wrapper in (
                (generate, self._around_model),
                (f"_a{generate[1:]}", self._around_amodel),
                ("stream", self._around_stream),
                ("astream", self._around_astream),
            ):
                if method in cls.__dict__:
                    self._model_originals[(cls, method)] = cls.__dict__[method]
                    wrapt.wrap_function_wrapper(cls, method, wrapper)

    def _init(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> None:
        wrapped(*args, **kwargs)
        with guard("langchain manager"):
            if self.enabled and not any(h is self.handler for h in instance.handlers):
                # Copies: the lists may be the user's own `callbacks=[...]`.
                instance.handlers = list(instance.handlers)
                instance.inheritable_handlers = list(instance.inheritable_handlers)
                instance.add_handler(self.handler, True)

    def _unpatch(self) -> None:
        if self._original is not None:
            from langchain_core.callbacks import base

            setattr(base.BaseCallbackManager, "__init__", self._original)  # noqa: B010
            self._original = None
            for (cls, method), original in self._model_originals.items():
                setattr(cls, method, original)
            self._model_originals.clear()
        _context.parent_resolver = None
        self.handler = None


integration = LangChainIntegration()
