"""The demo: `python -m tracekit.demo`.

A small support agent, traced end to end: retrieval fanned out to a thread
pool, an OpenAI chat call that asks for a tool, the tool (async), and a
streamed final answer — against a local fake OpenAI-compatible server, so it
runs offline. The trace goes to the default file store (or
TRACEKIT_TRACKING_URI); the demo reads it back and prints the tree.
"""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import tracekit
from tracekit import _state, _store
from tracekit._fake_server import FakeProviderServer
from tracekit._render import render_trace

DOCS = {
    "refunds": "Refunds are paid within 14 days of the return arriving.",
    "shipping": "Orders ship within 2 working days.",
    "returns": "Items can be returned within 30 days.",
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "order_status",
            "description": "Look up an order",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    }
]


@tracekit.trace(span_type="RETRIEVER")
def search(topic: str) -> list[str]:
    time.sleep(0.005)  # a vector store round trip
    return [DOCS[topic]] if topic in DOCS else []


@tracekit.trace(span_type="TOOL")
async def order_status(query: str) -> dict[str, str]:
    await asyncio.sleep(0.005)
    return {"order_id": "A-1001", "status": "returned", "received": "2026-11-20"}


class DemoServer(FakeProviderServer):
    """The fake provider, with a friendlier final answer."""

    def answer(self, question: str, messages: Any) -> str:
        for message in messages or []:
            if isinstance(message, dict) and message.get("role") == "tool":
                order = json.loads(message["content"])
                return (
                    f"Your return of order {order['order_id']} arrived on {order['received']}, "
                    "so your refund will be paid within 14 days of that date."
                )
        return super().answer(question, messages)


class SupportBot:
    """The demo's agent; it holds the client, so the trace records only the question."""

    def __init__(self, client: Any) -> None:
        self.client = client

    @tracekit.trace(span_type="AGENT")
    def answer_question(self, question: str) -> str:
        tracekit.update_current_trace(tags={"app": "demo"}, session_id="s-1", user_id="u-1")
        with ThreadPoolExecutor(max_workers=3) as pool:
            topics = ["refunds", "returns", "unknown"]
            found = [d for docs in pool.map(search, topics) for d in docs]
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": "Answer from these documents: " + " ".join(found)},
            {"role": "user", "content": question},
        ]
        chat = self.client.chat.completions
        first = chat.create(model="fake-mini", messages=messages, tools=TOOLS)
        call = first.choices[0].message.tool_calls[0]
        result = asyncio.run(order_status(**json.loads(call.function.arguments)))
        messages += [
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)},
        ]
        stream = chat.create(
            model="fake-mini",
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        )
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def main() -> None:
    try:
        import openai
    except ImportError:
        raise SystemExit("The demo uses the OpenAI SDK: pip install 'tracekit[openai]'") from None
    tracekit.openai.autolog()
    with DemoServer() as server:
        client = openai.OpenAI(api_key="demo", base_url=server.base_url + "/v1")
        question = "When will I get my refund for order A-1001?"
        print("Q:", question)
        print("A:", SupportBot(client).answer_question(question))
    trace_id = tracekit.get_last_trace_id()
    tracekit.flush(timeout=10)
    store = _store.store_path()
    records = [r for r in _store.load(store) if r["trace_id"] == trace_id]
    print()
    if records:
        print(render_trace(records[0]))
        print(
            f"\nStored in {store}/ — list traces with `tracekit ls`, "
            f"show this one with `tracekit show {trace_id}`, browse them with `tracekit ui`."
        )
    else:
        print(f"The trace went to {_state.config().tracking_uris}, not to a file store.")


if __name__ == "__main__":
    main()
