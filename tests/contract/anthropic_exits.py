"""The Anthropic `messages.stream()` helper's own exits.

The helper reads the stream for the caller (`text_stream`, `get_final_message()`,
`get_final_text()`, `until_done()`) and can be left by an exception in the block:
each must end the span once, like the exits every stream has.
"""

from __future__ import annotations

from typing import Any

import pytest
from tests.contract.adapters import ANSWER, QUESTION, Adapter
from tests.contract.anthropic_server import REQUEST_ID
from tests.contract.outcome import Outcome

import tracekit
from tracekit.testing import Capture

TEXTS = 4  # text deltas in ANSWER


def _open(a: Adapter, client: Any) -> Any:
    return a.open_sync(client, QUESTION, a.model)


async def _aopen(a: Adapter, client: Any) -> Any:
    return await a.open_async(client, QUESTION, a.model)


# -- sync ------------------------------------------------------------------------------


def text_stream(a: Adapter, client: Any, captured: Capture) -> Outcome:
    texts = []
    with _open(a, client) as stream:
        for text in stream.text_stream:
            assert tracekit.get_current_span() is None  # not current between chunks
            texts.append(text)
    assert "".join(texts) == ANSWER
    return Outcome(None, TEXTS, full=True)


def text_stream_break(a: Adapter, client: Any, captured: Capture) -> Outcome:
    with _open(a, client) as stream:
        for text in stream.text_stream:
            assert text == "You "
            break
    return Outcome("close", 1)


def get_final_message(a: Adapter, client: Any, captured: Capture) -> Outcome:
    import anthropic

    with _open(a, client) as stream:
        message = stream.get_final_message()
        assert isinstance(message, anthropic.types.Message)
        assert message.content[0].text == ANSWER
    return Outcome(None, None, full=True)


def get_final_text(a: Adapter, client: Any, captured: Capture) -> Outcome:
    with _open(a, client) as stream:
        assert stream.get_final_text() == ANSWER
    return Outcome(None, None, full=True)


def until_done(a: Adapter, client: Any, captured: Capture) -> Outcome:
    with _open(a, client) as stream:
        assert stream.until_done() is None
        assert stream.current_message_snapshot.content[0].text == ANSWER
    return Outcome(None, None, full=True)


def exception_in_block(a: Adapter, client: Any, captured: Capture) -> Outcome:
    boom = ValueError("boom in the block")

    def block() -> None:
        with _open(a, client) as stream:
            assert stream.request_id == REQUEST_ID
            next(stream)
            raise boom

    with pytest.raises(ValueError, match="boom in the block") as info:
        block()
    assert info.value is boom  # the caller's own exception, unchanged
    return Outcome("context_exit", 1, boom)


# -- async -----------------------------------------------------------------------------


async def atext_stream(a: Adapter, client: Any, captured: Capture) -> Outcome:
    async with await _aopen(a, client) as stream:
        assert "".join([text async for text in stream.text_stream]) == ANSWER
    return Outcome(None, TEXTS, full=True)


async def atext_stream_break(a: Adapter, client: Any, captured: Capture) -> Outcome:
    async with await _aopen(a, client) as stream:
        async for text in stream.text_stream:
            assert text == "You "
            break
    # An abandoned async generator is closed by the event loop later: either exit may win.
    return Outcome({"close", "context_exit"}, 1)


async def aget_final_message(a: Adapter, client: Any, captured: Capture) -> Outcome:
    async with await _aopen(a, client) as stream:
        message = await stream.get_final_message()
        assert message.content[0].text == ANSWER
    return Outcome(None, None, full=True)


async def aget_final_text(a: Adapter, client: Any, captured: Capture) -> Outcome:
    async with await _aopen(a, client) as stream:
        assert await stream.get_final_text() == ANSWER
    return Outcome(None, None, full=True)


async def auntil_done(a: Adapter, client: Any, captured: Capture) -> Outcome:
    async with await _aopen(a, client) as stream:
        assert await stream.until_done() is None
    return Outcome(None, None, full=True)


async def aexception_in_block(a: Adapter, client: Any, captured: Capture) -> Outcome:
    boom = ValueError("boom in the block")

    async def block() -> None:
        async with await _aopen(a, client) as stream:
            assert stream.request_id == REQUEST_ID
            await stream.__anext__()
            raise boom

    with pytest.raises(ValueError, match="boom in the block") as info:
        await block()
    assert info.value is boom
    return Outcome("context_exit", 1, boom)


EXITS = {
    "text_stream": (text_stream, atext_stream),
    "text_stream_break": (text_stream_break, atext_stream_break),
    "get_final_message": (get_final_message, aget_final_message),
    "get_final_text": (get_final_text, aget_final_text),
    "until_done": (until_done, auntil_done),
    "exception_in_block": (exception_in_block, aexception_in_block),
}
