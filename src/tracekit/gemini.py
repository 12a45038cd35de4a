"""Tracing for the `google-genai` SDK (Gemini): `tracekit.gemini.autolog()`.

`models.generate_content`, `models.generate_content_stream`,
`models.embed_content` and `models.count_tokens`, on `client.models` and
`client.aio.models` (chats go through them), for the Gemini Developer API
(`gcp.gemini`) and Vertex AI (`gcp.vertex_ai`).
"""

from __future__ import annotations

from tracekit.integrations.gemini import integration


def autolog(disable: bool = False, log_traces: bool = True, silent: bool = False) -> None:
    """Trace the google-genai SDK.

    Args:
        disable: stop tracing Gemini calls (the patches stay; calls pass through).
        log_traces: False records nothing, like `disable=True` (MLflow's signature).
        silent: no warning when `google-genai` is not installed.

    Example:
        import tracekit
        tracekit.gemini.autolog()
        client = genai.Client()
        client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    """
    integration.autolog(disable=disable, log_traces=log_traces, silent=silent)
