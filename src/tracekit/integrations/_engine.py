"""The one patch engine every SDK integration uses.

A provider module declares `Endpoint`s (what to patch, which behaviour, how to map
a request, a response and a stream: see `_endpoint.py`) and an `Integration`
patches them once with wrapt. The engine knows no SDK: conventions of an SDK
family come in through the endpoint (`_stainless.py` for OpenAI and Anthropic).
Whether a call is traced is decided at call time, so `autolog(disable=True)`
turns tracing off without unpatching; `Integration.revert()` really unpatches
(for tests). The original SDK call happens exactly once, outside any guard,
and its exceptions reach the caller unchanged.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
from collections.abc import Callable
from typing import Any

import wrapt

from tracekit import _state
from tracekit._context import is_suppressed
from tracekit._guard import internal_error
from tracekit.integrations._base import BaseIntegration
from tracekit.integrations._call import HelperManager, _Call, named, unrecorded
from tracekit.integrations._endpoint import Endpoint, Kind, Prepared, StreamSeam
from tracekit.integrations._registry import IntegrationSpec
from tracekit.integrations._streams import StreamManager

# Re-exported: provider modules declare endpoints with what the engine runs.
__all__ = ["Endpoint", "Integration", "Kind", "Prepared", "StreamSeam"]

logger = logging.getLogger("tracekit")


class Integration(BaseIntegration):
    """The patches of one SDK's methods, and whether they record (decided at call time)."""

    def __init__(self, spec: IntegrationSpec, endpoints: list[Endpoint]) -> None:
        super().__init__(spec)
        self.endpoints = endpoints
        self._patched: list[tuple[Any, str, Any]] = []
        self._generation = 0  # bumped by revert(): hooks registered before it do nothing

    def _patch(self) -> None:
        """Patch each endpoint when its module is imported: at once for a module the
        program already imported, else by a post-import hook. The SDKs import their
        resource modules lazily (OpenAI's Responses alone is ~45 ms); importing them
        all here would make `autolog()` cost what the program may never use."""
        generation = self._generation
        for endpoint in self.endpoints:
            if endpoint.module in sys.modules:
                self._patch_endpoint(endpoint, sys.modules[endpoint.module])
            else:
                wrapt.register_post_import_hook(
                    functools.partial(self._imported, endpoint, generation), endpoint.module
                )

    def _imported(self, endpoint: Endpoint, generation: int, module: Any) -> None:
        if generation == self._generation:  # not reverted since the hook was registered
            try:
                self._patch_endpoint(endpoint, module)
            except Exception as exc:  # never break the program's import
                internal_error(f"{endpoint.target} patch", exc)

    def _patch_endpoint(self, endpoint: Endpoint, module: Any) -> None:
        try:
            owner_name, _, method = endpoint.target.rpartition(".")
            owner = getattr(module, owner_name) if owner_name else module
            original = owner.__dict__[method]
        except (AttributeError, KeyError):
            logger.debug("tracekit: %s has no %s; skipped", endpoint.module, endpoint.target)
            return
        self.patch(owner, method, endpoint, original)

    def patch(self, owner: Any, method: str, endpoint: Endpoint, original: Any = None) -> None:
        """Patch `owner.method` with `endpoint`'s behaviour; `revert()` undoes it.

        Also for what a `factory` endpoint's `instrument` finds at run time (a client
        class the SDK generated); a method this integration already patched is left.
        """
        current = owner.__dict__.get(method) if original is None else original
        if current is None or any(o is owner and m == method for o, m, _ in self._patched):
            return
        wrapt.wrap_function_wrapper(owner, method, self._wrapper(endpoint))
        self._patched.append((owner, method, current))

    def _unpatch(self) -> None:
        for owner, method, original in reversed(self._patched):
            setattr(owner, method, original)
        self._patched.clear()
        self._generation += 1

    def _wrapper(self, endpoint: Endpoint) -> Callable[..., Any]:
        kind = endpoint.kind
        if kind is Kind.RAW:
            assert endpoint.wrapper is not None
            return endpoint.wrapper
        if kind is Kind.STREAM_MANAGER:
            return self._manager_wrapper()
        if kind is Kind.HELPER_STREAM:
            return self._helper_wrapper(endpoint)
        if kind is Kind.FACTORY:
            return self._factory_wrapper(endpoint)
        return self._async_wrapper(endpoint) if endpoint.is_async else self._sync_wrapper(endpoint)

    def _factory_wrapper(self, endpoint: Endpoint) -> Callable[..., Any]:
        def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            created = wrapped(*args, **kwargs)
            try:
                assert endpoint.instrument is not None
                endpoint.instrument(created, self)
            except Exception as exc:
                internal_error(f"{endpoint.target} instrument", exc)
            return created

        return wrapper

    def _skip(self, endpoint: Endpoint | None = None) -> bool:
        # Runs on every call of a patched method, traced or not: `active()` inlined.
        if not self.enabled or not _state.config().enabled or is_suppressed():
            return True
        return endpoint is not None and endpoint.when is not None and not endpoint.when()

    def _manager_wrapper(self) -> Callable[..., Any]:
        def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            manager = wrapped(*args, **kwargs)
            if self._skip():
                return manager
            return StreamManager(manager)

        return wrapper

    def _helper_wrapper(self, endpoint: Endpoint) -> Callable[..., Any]:
        def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            if self._skip():
                return wrapped(*args, **kwargs)
            # The span starts now: the helper builds its request (headers included) now,
            # and the request names the span in its `traceparent`.
            call = _Call.begin(endpoint, instance, kwargs)
            if call is None:
                return wrapped(*args, **unrecorded(endpoint, instance, kwargs))
            try:
                manager = _through(endpoint, wrapped, instance)(
                    *args, **call.propagate(instance, kwargs)
                )
            except BaseException as exc:
                call.fail(exc)
                raise
            call.detach()
            return HelperManager(manager, endpoint, call)

        return wrapper

    def _sync_wrapper(self, endpoint: Endpoint) -> Callable[..., Any]:
        def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            if self._skip(endpoint):
                return wrapped(*args, **kwargs)
            call = _Call.begin(endpoint, instance, named(endpoint, args, kwargs))
            if call is None:
                return wrapped(*args, **unrecorded(endpoint, instance, kwargs))
            # `prepare` and `parse_raw` only where they can act: every call runs this.
            prepared = call.prepare(self.options) if self.options else None
            sent = call.propagate(instance, prepared.kwargs if prepared else kwargs)
            try:
                result = _through(endpoint, wrapped, instance)(*args, **sent)
            except BaseException as exc:
                call.fail(exc)
                raise
            parsed = call.parse_raw(result) if call.raw is not None else None
            return call.succeed(result, is_async=False, prepared=prepared, parsed=parsed)

        return wrapper

    def _async_wrapper(self, endpoint: Endpoint) -> Callable[..., Any]:
        async def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            if self._skip(endpoint):
                return await wrapped(*args, **kwargs)
            call = _Call.begin(endpoint, instance, named(endpoint, args, kwargs))
            if call is None:
                return await wrapped(*args, **unrecorded(endpoint, instance, kwargs))
            prepared = call.prepare(self.options) if self.options else None
            sent = call.propagate(instance, prepared.kwargs if prepared else kwargs)
            try:
                result = await _through(endpoint, wrapped, instance)(*args, **sent)
            except BaseException as exc:
                call.fail(exc)
                raise
            parsed = call.parse_raw(result) if call.raw is not None else None
            if inspect.isawaitable(parsed):  # async raw responses parse with a coroutine
                try:
                    parsed = await parsed
                except Exception as exc:
                    internal_error(f"{endpoint.target} raw parse", exc)
                    parsed = None
            return call.succeed(result, is_async=True, prepared=prepared, parsed=parsed)

        return wrapper


def _through(endpoint: Endpoint, wrapped: Any, instance: Any) -> Any:
    """What a traced call is made through: `wrapped`, unless the endpoint says otherwise."""
    if endpoint.through is None:
        return wrapped
    try:
        return endpoint.through(wrapped, instance)
    except Exception as exc:
        internal_error(f"{endpoint.target} through", exc)
        return wrapped
