"""Where spans start: the policy (tracing on or off, sampling at a root, a remote
parent) above the trace buffer, which only stores what it is given.

`@trace`, `start_span` and every integration (through `_api.start`) come here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tracekit import _propagation, _runtime, _state
from tracekit._context import current_span
from tracekit._span import NON_RECORDING, Span

if TYPE_CHECKING:
    from tracekit._config import Config


def off() -> bool:
    """True when nothing started now can be recorded: tracing disabled, or sampled
    out at 0 (a root span without a recorded remote parent). Lets `@trace` and
    `start_span` skip even binding the inputs."""
    config = _state.config()
    return not config.enabled or (
        config.sampling_ratio == 0.0
        and current_span.get() is None
        and _propagation.incoming(config) is None
    )


def start_span(name: str, span_type: str, parent: Span | None, config: Config) -> Span:
    """Start a span under `parent` (None: the root of a new trace, or of a fragment
    under a remote parent). Never raises for limits: what cannot be recorded is
    `NON_RECORDING`."""
    buffer = _state.buffer
    if parent is None:
        if not config.enabled:
            return NON_RECORDING
        remote = _propagation.incoming(config)  # a recorded remote parent: recorded too
        if remote is None:
            if config.sampling_ratio < 1.0 and _runtime.sample() >= config.sampling_ratio:
                return NON_RECORDING
            trace_id, span_id = _runtime.root_ids()
            root = buffer.start_root(trace_id, span_id, name, span_type, config)
            return NON_RECORDING if root is None else root
        # a fragment of a trace started in another process
        trace = buffer.new_trace(remote[0], config)
        parent_id = remote[1]
        if trace is None:
            return NON_RECORDING
    elif not parent.is_recording:
        return NON_RECORDING
    else:
        trace = parent._trace
        parent_id = parent.span_id
    span = Span(trace, _runtime.ids.span_id(), parent_id, name, span_type, _runtime.clock())
    if trace.add(span):
        return span
    if parent is not None and buffer.add_to_fragment(span, config):
        return span
    return NON_RECORDING
