"""`tracekit.autolog()`: every integration whose SDK is installed, in one call."""

from __future__ import annotations

import importlib
import sys

from tracekit._guard import guard
from tracekit.integrations._registry import INTEGRATIONS


def autolog(disable: bool = False, log_traces: bool = True, silent: bool = False) -> None:
    """Trace every installed SDK tracekit has an integration for.

    Turns on `tracekit.openai`, `tracekit.anthropic`, `tracekit.gemini` and
    `tracekit.langchain` (each as its own `autolog()` would) for the SDKs that are
    installed, and skips the others with one debug line. Each SDK is patched
    once; it need not be imported yet. An integration that fails to start logs
    one warning and leaves the others on.

    Args:
        disable: stop tracing every integration turned on so far (the patches
            stay; calls pass through).
        log_traces: False records nothing, like `disable=True` (MLflow's signature).
        silent: no warning from an integration that cannot start.

    Example:
        import tracekit
        tracekit.autolog()
        openai.OpenAI().chat.completions.create(model="gpt-4o-mini", messages=[...])
    """
    for spec in INTEGRATIONS:
        if disable or not log_traces:
            module = sys.modules.get(spec.implementation)
            if module is not None:  # never turned on otherwise: nothing to turn off
                module.integration.autolog(disable=True)
            continue
        if not _installed(spec.sdk_module):
            import logging

            logging.getLogger("tracekit").debug(
                "tracekit: autolog: %s is not installed; %s skipped", spec.distribution, spec.name
            )
            continue
        with guard(f"{spec.name} autolog"):  # one that fails must not stop the others
            importlib.import_module(spec.implementation).integration.autolog(silent=silent)


def _installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it (its parent package,
    `google` for `google.genai`, is imported)."""
    if module in sys.modules:
        return sys.modules[module] is not None  # None: imports of it are blocked
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a broken stub
        return False
