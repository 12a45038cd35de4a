"""Tracing for the `anthropic` SDK: `tracekit.anthropic.autolog()`.

`messages.create` (plain and `stream=True`), the `messages.stream()` helper,
`messages.parse` and `messages.count_tokens`, also on `beta.messages`, sync and
async, on `Anthropic`, `AsyncAnthropic` and the Bedrock and Vertex clients:
each call becomes one span with inputs, outputs, timing, errors and token usage
(cache reads and writes included).

The anthropic SDK can also trace itself with OpenTelemetry
(`ANTHROPIC_OPEN_TELEMETRY`); for the calls tracekit traces it is turned off
(each call has one LLM span, and its `traceparent` names tracekit's), unless
`autolog(sdk_spans=True)`.
"""

from __future__ import annotations

from tracekit.integrations.anthropic import integration


def autolog(
    disable: bool = False, log_traces: bool = True, silent: bool = False, sdk_spans: bool = False
) -> None:
    """Trace the Anthropic SDK.

    Args:
        disable: stop tracing Anthropic calls (the patches stay; calls pass through).
        log_traces: False records nothing, like `disable=True` (MLflow's signature).
        silent: no warning when the `anthropic` package is not installed.
        sdk_spans: keep the SDK's own OpenTelemetry span for the calls tracekit
            traces (by default tracekit makes them through a copy of the client
            with `open_telemetry=False`, so that each call has one LLM span and
            its `traceparent` names tracekit's).

    Example:
        import tracekit
        tracekit.anthropic.autolog()
        client = anthropic.Anthropic()
        client.messages.create(model="claude-sonnet-4-5", max_tokens=256, messages=[...])
    """
    integration.autolog(disable=disable, log_traces=log_traces, silent=silent, sdk_spans=sdk_spans)
