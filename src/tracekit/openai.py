"""Tracing for the `openai` SDK: `tracekit.openai.autolog()`.

Every call of `chat.completions.create/parse/stream`, `responses.create/parse/
stream`, `embeddings.create` and the legacy `completions.create` — sync, async
and streaming, on `OpenAI`, `AsyncOpenAI`, `AzureOpenAI` and clients pointed at
OpenAI-compatible endpoints — becomes one span with inputs, outputs, timing,
errors and token usage.
"""

from __future__ import annotations

from tracekit.integrations.openai import integration


def autolog(
    disable: bool = False,
    log_traces: bool = True,
    silent: bool = False,
    *,
    stream_usage: bool = False,
) -> None:
    """Trace the OpenAI SDK.

    Args:
        disable: stop tracing OpenAI calls (the patches stay; calls pass through).
        log_traces: False records nothing, like `disable=True` (MLflow's signature).
        silent: no warning when the `openai` package is not installed.
        stream_usage: ask chat streams for usage (`stream_options.include_usage`)
            when the caller did not decide, and hide the extra usage-only chunk,
            so the caller sees exactly what it would have seen. Off by default:
            tracekit never changes a request unless asked to.

    Example:
        import tracekit
        tracekit.openai.autolog()
        client = openai.OpenAI()
        client.chat.completions.create(model="gpt-4o-mini", messages=[...])
    """
    integration.autolog(
        disable=disable, log_traces=log_traces, silent=silent, stream_usage=stream_usage
    )
