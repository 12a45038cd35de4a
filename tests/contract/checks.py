"""What every stream's span must show, whatever the provider."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.contract.adapters import ANSWER, Adapter
from tests.contract.outcome import Outcome
from tests.trace_checks import only_span

from tracekit.testing import Capture


def recorded_text(a: Adapter, span: dict[str, Any]) -> str:
    """The answer's text in the span's outputs ("" where there are none)."""
    try:
        return a.text_of(span)
    except (KeyError, IndexError, TypeError):
        return ""


def check_error(span: dict[str, Any], exc: BaseException | None) -> None:
    """The span's status and events: the caller's exception, or OK and none."""
    if exc is None:
        assert span["status"] == {"code": "OK", "message": ""}
        assert span["events"] == []
        return
    assert span["status"] == {"code": "ERROR", "message": f"{type(exc).__name__}: {exc}"}
    (event,) = span["events"]
    assert event["name"] == "exception"
    assert event["attributes"]["exception.type"] == type(exc).__qualname__
    assert event["attributes"]["exception.message"] == str(exc)


def check_stream_span(
    a: Adapter, captured: Capture, finishes: Counter[str], outcome: Outcome
) -> dict[str, Any]:
    span = only_span(captured)
    assert span["name"] == a.span_name
    assert span["span_type"] == "CHAT_MODEL"
    assert finishes == {a.span_name: 1}, "the span must end exactly once"
    assert span["end_time_ns"] >= span["start_time_ns"]
    attributes = span["attributes"]
    assert attributes["tracekit.stream"] is True
    assert "tracekit.force_ended" not in attributes
    ended_by = attributes.get("tracekit.stream.ended_by")
    if isinstance(outcome.ended_by, set):
        assert ended_by in outcome.ended_by, attributes
    else:
        assert ended_by == outcome.ended_by, attributes
    chunks = attributes["tracekit.stream.chunks"]
    if outcome.partial and a.style == "helper" and a.reads_ahead:
        # A helper may read ahead of the events it hands out, never to the end.
        assert 1 <= chunks < a.full_chunks, attributes
    elif outcome.chunks is not None:
        assert chunks == outcome.chunks, attributes
    elif outcome.full:
        # A helper's reading method (get_final_message ...) read it all.
        assert chunks == a.full_chunks, attributes
    if chunks:
        assert attributes["tracekit.time_to_first_chunk_s"] > 0
    else:
        assert "tracekit.time_to_first_chunk_s" not in attributes
    check_error(span, outcome.error)
    # Whatever arrived is recorded, never more: the text so far, the usage so far.
    text = recorded_text(a, span)
    if outcome.full:
        assert text == ANSWER
        assert span["token_usage"] == a.usage, span["token_usage"]
    else:
        assert text != ANSWER
        assert ANSWER.startswith(text)
        assert span.get("token_usage", {}).get("output_tokens") != a.usage["output_tokens"]
    return span


def summed_usage(spans: list[dict[str, Any]]) -> dict[str, int]:
    """The token usage of the spans, added key by key (what their trace must carry)."""
    total: Counter[str] = Counter()
    for span in spans:
        total.update(span["token_usage"])
    return dict(total)
