"""`@tracekit.trace`: one span per call of a function, coroutine or generator."""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from typing import Any, TypeVar, overload

from tracekit import _otel
from tracekit._api import finish, start_under
from tracekit._context import current_parent, current_span
from tracekit._guard import guard, internal_error
from tracekit._span import NON_RECORDING, Span, SpanType
from tracekit._tracer import off as _off

F = TypeVar("F", bound=Callable[..., Any])

MAX_RECORDED_ITEMS = 1_000  # items of a traced generator kept as its outputs


class _Inputs:
    """Binds call arguments to parameter names, fast for plain signatures."""

    def __init__(self, func: Callable[..., Any]) -> None:
        import inspect

        self.signature: inspect.Signature | None
        try:
            self.signature = inspect.signature(func)
        except (TypeError, ValueError):
            self.signature = None
            return
        params = list(self.signature.parameters.values())
        param = inspect.Parameter
        self.skip = (
            params[0].name
            if params
            and params[0].name in ("self", "cls")
            and params[0].kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD)
            else None
        )
        plain = (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)
        self.simple = all(p.kind in plain for p in params)
        self.positional = [
            p.name for p in params if p.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD)
        ]
        self.defaults = {p.name: p.default for p in params if p.default is not param.empty}
        self.count = len(params)

    def __call__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if self.signature is None:
            return {"args": list(args), "kwargs": kwargs}
        if self.simple:
            inputs = dict(zip(self.positional, args, strict=False))
            if kwargs:
                inputs.update(kwargs)
            if len(inputs) < self.count:
                for key, value in self.defaults.items():
                    inputs.setdefault(key, value)
        else:
            try:
                bound = self.signature.bind(*args, **kwargs)
            except TypeError:  # the call itself will fail and say why
                return {"args": list(args), "kwargs": kwargs}
            bound.apply_defaults()
            inputs = dict(bound.arguments)
        if self.skip is not None:
            inputs.pop(self.skip, None)
        return inputs


def _begin(
    name: str,
    span_type: str,
    attributes: Mapping[str, Any] | None,
    bind: _Inputs,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Span:
    try:
        span = start_under(name, span_type, current_parent())
        if span is not NON_RECORDING:
            if span._trace.capture_content:
                span.set_inputs(bind(args, kwargs))
            if attributes:
                span.set_attributes(attributes)
        return span
    except Exception as exc:
        internal_error("trace start", exc)
        return NON_RECORDING


def _end(span: Span, token: Any, exc: BaseException | None, outputs: Any = None) -> None:
    try:
        if token is not None:
            current_span.reset(token)
        if exc is None and outputs is not None:
            span.set_outputs(outputs)
        finish(span, exc)
    except Exception as error:
        internal_error("trace end", error)


@overload
def trace(func: F) -> F: ...


@overload
def trace(
    func: None = None,
    *,
    name: str | None = None,
    span_type: str = SpanType.UNKNOWN,
    attributes: Mapping[str, Any] | None = None,
) -> Callable[[F], F]: ...


def trace(
    func: Any = None,
    *,
    name: str | None = None,
    span_type: str = SpanType.UNKNOWN,
    attributes: Mapping[str, Any] | None = None,
) -> Any:
    """Trace every call of a function as a span.

    Works bare (`@tracekit.trace`) or with arguments, on functions, methods,
    classmethods, staticmethods, coroutines, generators and async generators.
    Arguments are recorded as inputs (bound to parameter names, without
    `self`/`cls`), the return value as outputs (for generators, the yielded
    items). An exception marks the span `ERROR` and propagates unchanged.

    A generator's span starts when it is first iterated (nested under the
    span current at that moment) and ends exactly once: when it is
    exhausted, raises, is closed, or is garbage collected.

    Args:
        func: the function (when used bare).
        name: span name (default: the function's `__name__`).
        span_type: one of `tracekit.SpanType`.
        attributes: attributes set on every span of this function.

    Example:
        @tracekit.trace(span_type="RETRIEVER")
        def retrieve(query: str) -> list[str]:
            ...
    """
    if func is None:
        return lambda f: trace(f, name=name, span_type=span_type, attributes=attributes)
    if isinstance(func, (classmethod, staticmethod)):
        inner: Any = func.__func__
        return type(func)(trace(inner, name=name, span_type=span_type, attributes=attributes))
    import inspect

    span_name = name or getattr(func, "__name__", None) or repr(func)
    bind = _Inputs(func)

    if inspect.isasyncgenfunction(func):
        wrapper = _async_generator(func, span_name, span_type, attributes, bind)
    elif inspect.iscoroutinefunction(func):
        wrapper = _coroutine(func, span_name, span_type, attributes, bind)
    elif inspect.isgeneratorfunction(func):
        wrapper = _generator(func, span_name, span_type, attributes, bind)
    else:
        wrapper = _function(func, span_name, span_type, attributes, bind)
    return functools.update_wrapper(wrapper, func)


def _function(func: Any, name: str, span_type: str, attributes: Any, bind: _Inputs) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _off():
            return func(*args, **kwargs)
        span = _begin(name, span_type, attributes, bind, args, kwargs)
        token = current_span.set(span)
        otel = _otel.enter(span)
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            _otel.leave(otel)
            _end(span, token, exc)
            raise
        _otel.leave(otel)
        _end(span, token, None, result)
        return result

    return wrapper


def _coroutine(func: Any, name: str, span_type: str, attributes: Any, bind: _Inputs) -> Any:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _off():
            return await func(*args, **kwargs)
        span = _begin(name, span_type, attributes, bind, args, kwargs)
        token = current_span.set(span)
        otel = _otel.enter(span)
        try:
            result = await func(*args, **kwargs)
        except BaseException as exc:
            _otel.leave(otel)
            _end(span, token, exc)
            raise
        _otel.leave(otel)
        _end(span, token, None, result)
        return result

    return wrapper


def _record_item(span: Span, items: list[Any], item: Any) -> None:
    if len(items) < MAX_RECORDED_ITEMS:
        items.append(item)
    elif len(items) == MAX_RECORDED_ITEMS:
        span.set_attribute("tracekit.outputs_truncated", True)


def _generator(func: Any, name: str, span_type: str, attributes: Any, bind: _Inputs) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        if _off():
            return (yield from func(*args, **kwargs))
        span = _begin(name, span_type, attributes, bind, args, kwargs)
        items: list[Any] = []
        try:
            result = yield from _drive(func(*args, **kwargs), span, items)
        except GeneratorExit:
            _close_early(span, items)
            raise
        except BaseException as exc:
            _end(span, None, exc)
            raise
        _end(span, None, None, items if result is None else {"items": items, "return": result})
        return result

    return wrapper


def _close_early(span: Span, items: list[Any]) -> None:
    with guard("generator close"):
        span.set_attribute("tracekit.closed_early", True)
    _end(span, None, None, items)


def _drive(gen: Generator[Any, Any, Any], span: Span, items: list[Any]) -> Generator[Any, Any, Any]:
    """Step `gen` with `span` current during each step only (PEP 380 semantics)."""
    to_send: Any = None
    to_throw: BaseException | None = None
    while True:
        token = current_span.set(span)
        otel = _otel.enter(span)
        try:
            if to_throw is not None:
                exc, to_throw = to_throw, None
                item = gen.throw(exc)
            else:
                item = gen.send(to_send)
        except StopIteration as stop:
            return stop.value
        finally:
            _otel.leave(otel)
            current_span.reset(token)
        if span is not NON_RECORDING:
            _record_item(span, items, item)
        try:
            to_send = yield item
        except GeneratorExit:
            token = current_span.set(span)
            try:
                gen.close()
            finally:
                current_span.reset(token)
            raise
        except BaseException as exc:
            to_throw, to_send = exc, None


def _async_generator(func: Any, name: str, span_type: str, attributes: Any, bind: _Inputs) -> Any:
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        agen = func(*args, **kwargs)
        if _off():
            async for item in agen:
                yield item
            return
        span = _begin(name, span_type, attributes, bind, args, kwargs)
        items: list[Any] = []
        to_send: Any = None
        to_throw: BaseException | None = None
        try:
            while True:
                token = current_span.set(span)
                otel = _otel.enter(span)
                try:
                    if to_throw is not None:
                        exc, to_throw = to_throw, None
                        item = await agen.athrow(exc)
                    else:
                        item = await agen.asend(to_send)
                except StopAsyncIteration:
                    break
                finally:
                    _otel.leave(otel)
                    current_span.reset(token)
                if span is not NON_RECORDING:
                    _record_item(span, items, item)
                try:
                    to_send = yield item
                except GeneratorExit:
                    token = current_span.set(span)
                    try:
                        await agen.aclose()
                    finally:
                        current_span.reset(token)
                    raise
                except BaseException as exc:  # athrow() into us: pass it on
                    to_throw, to_send = exc, None
        except GeneratorExit:
            _close_early(span, items)
            raise
        except BaseException as exc:
            _end(span, None, exc)
            raise
        _end(span, None, None, items)

    return wrapper
