"""Making a finished trace's export record: the one place it is done, on the export
worker (soon after the trace ended) or on a caller spilling an overflow to disk.

`RecordMaker.digest` makes the records of a group of traces early and keeps each on
its trace (`TraceState.digested`), encoded for an exporter that takes records encoded;
`RecordMaker.take` hands a trace's record to a batch, making it then if it was not
made yet. A group's records are made step by step (every trace's deferred mapping,
then every record, its costs, its chat view), not trace by trace: each step's code
then stays in the processor's caches across the group, which measured about a quarter
less of the worker's CPU per trace (OpenAI chat 132 -> 97 µs a trace, Gemini 140 ->
104, OpenAI stream 144 -> 109, in groups of 8).

Both hold one reentrant lock while they make a record, so the worker and a spilling
caller never make the same trace's record at once (a spill could otherwise
take a trace the worker is digesting and make a second record from spans the digest
is emptying). Reentrant: a span processor may itself finish a trace whose enqueue
spills.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from tracekit import _stats
from tracekit._buffer import TraceState
from tracekit._config import Config
from tracekit._guard import guard, internal_error, warn_limited
from tracekit._serialize import fill_deferred, trace_record
from tracekit.exporters.base import TraceRecord

FAILED: TraceRecord = {}  # the record of a trace that could not be serialized
_NO_PRICES: dict[str, Any] = {}  # read only


class _WorkerModules:
    """What making a record needs beyond `_serialize`, imported once, on the worker (the
    exporter's build imported them under the fork guard): an `import` statement per
    trace costs microseconds (`from package import name` runs importlib's Python)."""

    def __init__(self) -> None:
        from tracekit._chat import add_chats
        from tracekit._cost import add_costs, user_prices

        self.add_chats = add_chats
        self.add_costs = add_costs
        self.user_prices = user_prices


_modules: _WorkerModules | None = None


def _worker_modules() -> _WorkerModules:
    global _modules
    if _modules is None:
        _modules = _WorkerModules()
    return _modules


class RecordMaker:
    """Makes the records of one pipeline's traces (its configuration and resource)."""

    def __init__(self, config: Config, resource: Mapping[str, Any]) -> None:
        self._config = config
        self._resource = dict(resource)
        self._making = threading.RLock()

    def digest(
        self, traces: list[TraceState], encoded: Callable[[TraceRecord], Any] | None
    ) -> None:
        """Make the records of traces waiting for their batch and keep each on its
        trace (`encoded` by the exporter when it takes records so); a failure is counted."""
        with self._making:
            todo = [t for t in traces if t.record is None and t.spans]  # else made or dropped
            for trace, made in zip(todo, self._make(todo), strict=True):
                if isinstance(made, Exception):
                    if trace.spans:  # else dropped while serialized: counted as such
                        trace.digested(FAILED)
                        _stats.count("serialize_failed")
                        internal_error("serialize", made)
                    continue
                trace.digested(_encode(encoded, made) if encoded is not None else made)

    def take(self, trace: TraceState, into: list[TraceRecord]) -> None:
        """Append the trace's record to `into` (made now if it was not) and release the
        trace; a trace that cannot be serialized is counted as dropped (and reported),
        never silently skipped."""
        with self._making:
            try:
                record = trace.take_record()
                if record is None:
                    into.append(self.make(trace))
                elif record is not FAILED:  # digested already (failures were counted then)
                    into.append(record)
            except Exception as exc:
                _stats.count("serialize_failed")
                internal_error("serialize", exc)
            finally:
                trace.release()

    def make(self, trace: TraceState) -> TraceRecord:
        """The trace's record: serialized, seen by the span processors, with the
        normalized chat of its model calls (raises what making it raised)."""
        made = self._make([trace])[0]
        if isinstance(made, Exception):
            raise made
        return made

    def _make(self, traces: list[TraceState]) -> list[TraceRecord | Exception]:
        """The traces' records (or what making each raised), step by step over the group."""
        config = self._config
        modules = _worker_modules()
        for trace in traces:  # the integrations' mapping, deferred to the worker
            fill_deferred(trace)
        made: list[TraceRecord | Exception] = []
        for trace in traces:
            try:
                limits = (config.max_value_chars, config.max_trace_chars)
                made.append(trace_record(trace, self._resource, *limits))
            except Exception as exc:
                made.append(exc)
        prices = self._prices()
        for record in made:  # estimated from the usage, like the usage counted once
            if not isinstance(record, Exception):
                with guard("cost"):
                    modules.add_costs(record, prices)
        if config.span_processors:
            for record in made:
                if not isinstance(record, Exception):
                    record["spans"] = [self._process(span) for span in record["spans"]]
        for i, trace in enumerate(traces):
            record = made[i]
            if trace.capture_content and not isinstance(record, Exception):
                try:  # the normalized messages, read from what processors left
                    modules.add_chats(record["spans"])
                except Exception as exc:
                    made[i] = exc
        return made

    def _prices(self) -> dict[str, Any]:
        """The user's prices (a TRACEKIT_PRICES file is read again when it changes)."""
        config = self._config
        if not config.prices and not config.prices_file:
            return _NO_PRICES
        return _worker_modules().user_prices(config.prices, config.prices_file)

    def _process(self, span: dict[str, Any]) -> dict[str, Any]:
        for processor in self._config.span_processors:
            try:
                replaced = processor(span)
            except Exception as exc:
                # A failing processor may be the one that redacts secrets:
                # export the span without its content rather than unredacted.
                warn_limited(
                    "processor:" + getattr(processor, "__qualname__", repr(processor)),
                    "tracekit: span processor %r failed (%s: %s); exporting span %r without "
                    "inputs and outputs",
                    processor,
                    type(exc).__name__,
                    exc,
                    span.get("name"),
                )
                span["inputs"] = span["outputs"] = "[tracekit: removed, a span processor failed]"
                continue
            if isinstance(replaced, dict):
                span = replaced
        return span


def _encode(encoded: Callable[[TraceRecord], Any], record: TraceRecord) -> Any:
    """The record as the exporter keeps it; the record itself if that fails (the
    exporter then gets the record, as exporters that do not encode early do)."""
    try:
        return encoded(record)
    except Exception as exc:
        internal_error("encode", exc)
        return record
