"""Record now, map later: a traced call records references and the request is mapped
on the export worker. What the caller commonly changes once the call returned (the
lists and dicts it passed at the top level) is recorded as it was sent."""

from __future__ import annotations

from typing import Any

import pytest

openai = pytest.importorskip("openai")

import tracekit  # noqa: E402
import tracekit.openai  # noqa: E402
from tracekit._fake_server import FakeProviderServer  # noqa: E402
from tracekit.integrations.openai import integration  # noqa: E402
from tracekit.testing import Capture  # noqa: E402


def test_inputs_are_recorded_as_sent(captured: Capture) -> None:
    """`messages.append(reply)` and a reused `stream_options` dict changed right after
    the call do not reach the record; the span's name and attributes are the call's."""
    tracekit.openai.autolog()
    messages: list[dict[str, Any]] = [{"role": "user", "content": "hello there"}]
    options = {"include_usage": True}
    try:
        with FakeProviderServer() as server:
            client = openai.OpenAI(api_key="test", base_url=server.base_url + "/v1", max_retries=0)
            reply = client.chat.completions.create(
                model="fake-mini", messages=messages, temperature=0.5
            )
            messages.append({"role": "assistant", "content": reply.choices[0].message.content})
            chunks = client.chat.completions.create(
                model="fake-mini", messages=messages, stream=True, stream_options=options
            )
            messages.append({"role": "user", "content": "again"})
            options["include_usage"] = False
            list(chunks)
            tracekit.flush()
    finally:
        integration.revert()
    first, second = (trace["spans"][0] for trace in captured.traces)
    assert first["name"] == second["name"] == "chat fake-mini"
    assert first["inputs"]["messages"] == [{"role": "user", "content": "hello there"}]
    assert first["attributes"]["gen_ai.request.temperature"] == 0.5
    assert first["attributes"]["gen_ai.request.model"] == "fake-mini"
    assert len(second["inputs"]["messages"]) == 2
    assert second["inputs"]["stream_options"] == {"include_usage": True}
    assert second["attributes"]["tracekit.stream"] is True


def test_current_span_is_named_during_the_call(captured: Capture) -> None:
    """What the caller's code sees while the call runs (here: the SDK's transport) is
    the span as named by the call."""
    tracekit.openai.autolog()
    seen: list[Any] = []

    def handler(request: Any) -> Any:
        import httpx

        span = tracekit.get_current_span()
        seen.append(span.name if span is not None else None)
        body = {
            "id": "c",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "ok"},
                    "finish_reason": "stop",
                }
            ],
        }
        return httpx.Response(200, json=body)

    try:
        import httpx

        client = openai.OpenAI(
            api_key="test",
            base_url="http://127.0.0.1:9/v1",
            max_retries=0,
            http_client=httpx.Client(transport=httpx.MockTransport(handler)),
        )
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        tracekit.flush()
    finally:
        integration.revert()
    assert seen == ["chat m"]
    assert captured.traces[0]["spans"][0]["inputs"]["model"] == "m"
