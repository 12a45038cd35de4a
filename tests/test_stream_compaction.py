"""Stream chunks kept for the export worker in a compact form (`Accumulator.compact`).

OpenAI's and Anthropic's stream accumulators turn their common chunk (a text delta)
into a small tuple on the caller's thread, so the SDK's chunk objects are not kept
alive until the worker folds them. Folding the compact forms must give exactly what
folding the SDK's chunks gives: here every recorded stream of both providers is
parsed into the SDK's own event models and folded both ways, on real spans.
"""

from __future__ import annotations

from typing import Any

import pytest
from tests.replay import load_or_skip

from tracekit import start_span
from tracekit.testing import Capture

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")
pydantic = pytest.importorskip("pydantic")

from openai.types.chat import ChatCompletionChunk  # noqa: E402

from tracekit.integrations._common import Request  # noqa: E402
from tracekit.integrations.anthropic import EventAccumulator  # noqa: E402
from tracekit.integrations.openai import ChatAccumulator  # noqa: E402

OPENAI_STREAMS = [
    "openai/chat_completions_stream_include_usage.yaml",
    "openai/chat_completions_stream_without_include_usage.yaml",
    "openai/chat_completions_tool_calls_stream_parallel.yaml",
    "openai/openai_compatible_openrouter_stream_reasoning.yaml",
]
ANTHROPIC_STREAMS = [
    "anthropic/messages_stream_basic.yaml",
    "anthropic/messages_extended_thinking_stream.yaml",
    "anthropic/messages_prompt_caching_stream_write_then_read.yaml",
    "anthropic/messages_stream_legacy_usage_2024.yaml",
    "anthropic/messages_tool_use_stream_parallel.yaml",
]


def _openai_chunks(path: str) -> list[Any]:
    return [ChatCompletionChunk.model_validate(p) for p in load_or_skip(path).sse_json()]


def _anthropic_events(path: str) -> list[Any]:
    adapter = pydantic.TypeAdapter(anthropic.types.RawMessageStreamEvent)
    cassette = load_or_skip(path)
    events = []
    for i in range(len(cassette)):
        for payload in cassette.sse_json(i):
            if payload.get("type") not in ("ping", "error"):
                events.append(adapter.validate_python(payload))
    return events


def _folded(accumulator: Any, items: list[Any]) -> dict[str, Any]:
    """What the accumulator records on a real span after folding `items`."""
    with start_span("stream") as span:
        for item in items:
            accumulator.add(item)
        accumulator.finish(span)
        return {
            "outputs": span.outputs,
            "attributes": span.attributes,
            "token_usage": span.token_usage,
        }


def _both_ways(cls: Any, chunks: list[Any]) -> tuple[dict[str, Any], dict[str, Any], int]:
    request = Request("stream", "CHAT_MODEL", None, {})
    compacted = [cls.compact(chunk) for chunk in chunks]
    tuples = sum(type(c) is tuple for c in compacted)
    return _folded(cls(request), chunks), _folded(cls(request), compacted), tuples


@pytest.mark.parametrize("path", OPENAI_STREAMS)
def test_openai_chunks_fold_the_same_compacted(path: str, captured: Capture) -> None:
    chunks = _openai_chunks(path)
    whole, compact, tuples = _both_ways(ChatAccumulator, chunks)
    assert compact == whole
    assert whole["outputs"]["choices"], "the stream recorded no choice"
    if "tool_calls" in path or "reasoning" in path:
        assert tuples < len(chunks)  # tool-call and reasoning deltas stay whole
    if path.endswith("stream_include_usage.yaml"):
        # Every chunk but the usage one: role, text and finish reason.
        assert tuples == len(chunks) - 1, [type(c).__name__ for c in chunks]


@pytest.mark.parametrize("path", ANTHROPIC_STREAMS)
def test_anthropic_events_fold_the_same_compacted(path: str, captured: Capture) -> None:
    events = _anthropic_events(path)
    whole, compact, tuples = _both_ways(EventAccumulator, events)
    assert compact == whole
    assert whole["outputs"]["content"], "the stream recorded no content"
    text_deltas = sum(
        e.type == "content_block_delta" and e.delta.type == "text_delta" for e in events
    )
    assert tuples == text_deltas > 0 or "tool_use" in path


def test_what_is_not_the_sdks_chunk_is_kept_as_it_is() -> None:
    for item in ({"choices": [], "usage": None}, "text", None, 3):
        assert ChatAccumulator.compact(item) is item
        assert EventAccumulator.compact(item) is item
