"""Tracing for LangChain (`langchain-core`): `tracekit.langchain.autolog()`.

Every runnable — chains, chat models, LLMs, tools, retrievers, LangGraph graphs
and nodes — becomes a span, with no callbacks to pass. Combined with
`tracekit.openai.autolog()` (or anthropic, gemini), the provider span nests
inside the LangChain model span and the trace counts its tokens once.
"""

from __future__ import annotations

from tracekit.integrations.langchain import integration


def autolog(disable: bool = False, log_traces: bool = True, silent: bool = False) -> None:
    """Trace LangChain runnables.

    Args:
        disable: stop tracing LangChain runs (the patch stays; runs are not recorded).
        log_traces: False records nothing, like `disable=True` (MLflow's signature).
        silent: no warning when `langchain-core` is not installed.

    Example:
        import tracekit
        tracekit.langchain.autolog()
        chain.invoke({"question": "..."})
    """
    integration.autolog(disable=disable, log_traces=log_traces, silent=silent)
