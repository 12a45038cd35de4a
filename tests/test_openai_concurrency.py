"""200 concurrent async streams and a thread-pool fan-out: every span complete and
correctly parented, each with its own inputs and outputs, no cross-talk."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

import tracekit
from tracekit._fake_server import FakeProviderServer
from tracekit.testing import Capture

openai = pytest.importorskip("openai")


@pytest.fixture(autouse=True)
def _autolog(integrations: Callable[..., None]) -> None:
    integrations("openai")


def _children(record: dict, parent_name: str) -> tuple[dict, list[dict]]:
    (root,) = [s for s in record["spans"] if s["name"] == parent_name]
    return root, [s for s in record["spans"] if s["parent_id"] == root["span_id"]]


def test_200_concurrent_async_streams(captured_realtime: Capture, server: FakeProviderServer):
    client = openai.AsyncOpenAI(api_key="k", base_url=server.base_url + "/v1", max_retries=0)

    async def ask(i: int) -> str:
        stream = await client.chat.completions.create(
            model="fake-mini",
            messages=[{"role": "user", "content": f"question {i}"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        parts = []
        async for chunk in stream:
            if chunk.choices:
                parts.append(chunk.choices[0].delta.content or "")
        return "".join(parts)

    @tracekit.trace
    async def fan_out() -> list[str]:
        return await asyncio.gather(*(ask(i) for i in range(200)))

    answers = asyncio.run(fan_out())
    assert answers == [f"You asked: question {i}" for i in range(200)]

    (record,) = captured_realtime.traces
    _, children = _children(record, "fan_out")
    assert len(record["spans"]) == 201
    assert len(children) == 200
    seen = set()
    for span in children:
        question = span["inputs"]["messages"][0]["content"]
        i = int(question.split()[-1])
        seen.add(i)
        assert span["name"] == "chat fake-mini"
        assert span["status"]["code"] == "OK"
        assert span["end_time_ns"] is not None
        assert span["attributes"]["tracekit.stream"] is True
        assert span["outputs"]["choices"][0]["message"]["content"] == f"You asked: question {i}"
        assert span["token_usage"]["output_tokens"] == 4
    assert seen == set(range(200))
    assert record["token_usage"]["output_tokens"] == 800


def test_thread_pool_fan_out_nests_under_the_submitting_span(
    captured_realtime: Capture, server: FakeProviderServer
):
    client = openai.OpenAI(api_key="k", base_url=server.base_url + "/v1", max_retries=0)

    def ask(i: int) -> str:
        response = client.chat.completions.create(
            model="fake-mini", messages=[{"role": "user", "content": f"q{i}"}]
        )
        return response.choices[0].message.content

    @tracekit.trace
    def batch() -> list[str]:
        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(ask, range(40)))

    assert batch() == [f"You asked: q{i}" for i in range(40)]
    (record,) = captured_realtime.traces
    _, children = _children(record, "batch")
    assert len(children) == 40
    assert sorted(s["inputs"]["messages"][0]["content"] for s in children) == sorted(
        f"q{i}" for i in range(40)
    )
    for span in children:
        question = span["inputs"]["messages"][0]["content"]
        content = span["outputs"]["choices"][0]["message"]["content"]
        assert content == f"You asked: {question}"
