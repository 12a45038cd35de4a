"""A small traced app: `python -m tracekit.demo`.

It answers a question in several traced steps (retrieval fanned out to a
thread pool, a tool call, a streamed answer), writes the trace to the default
file store (or TRACEKIT_TRACKING_URI), reads it back and prints the tree.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import tracekit
from tracekit import _state, _store
from tracekit._render import render_trace
from tracekit.cli import store_path

DOCS = {
    "refunds": "Refunds are paid within 14 days of the return arriving.",
    "shipping": "Orders ship within 2 working days.",
    "returns": "Items can be returned within 30 days.",
}


@tracekit.trace(span_type="RETRIEVER")
def search(topic: str) -> list[str]:
    time.sleep(0.005)  # a vector store round trip
    return [DOCS[topic]] if topic in DOCS else []


@tracekit.trace(span_type="TOOL")
async def order_status(order_id: str) -> dict[str, str]:
    await asyncio.sleep(0.005)
    return {"order_id": order_id, "status": "returned", "received": "2026-11-20"}


@tracekit.trace(span_type="LLM", name="generate")
def generate(question: str, context: list[str]) -> Iterator[str]:
    answer = f"Based on {len(context)} documents: refunds are paid within 14 days."
    for word in answer.split(" "):
        yield word + " "


@tracekit.trace(span_type="AGENT")
def answer_question(question: str, order_id: str) -> str:
    tracekit.update_current_trace(tags={"app": "demo"}, session_id="s-1", user_id="u-1")
    with ThreadPoolExecutor(max_workers=3) as pool:
        found = [
            doc for docs in pool.map(search, ["refunds", "returns", "unknown"]) for doc in docs
        ]
    status = asyncio.run(order_status(order_id))
    context = [*found, f"order {status['order_id']} is {status['status']}"]
    return "".join(generate(question, context)).strip()


def main() -> None:
    print("Q: When will I get my refund?")
    print("A:", answer_question("When will I get my refund?", order_id="A-1001"))
    trace_id = tracekit.get_last_trace_id()
    tracekit.flush(timeout=10)
    store = store_path(None)
    records = [r for r in _store.load(store) if r["trace_id"] == trace_id]
    print()
    if records:
        print(render_trace(records[0]))
        print(
            f"\nStored in {store}/ — list traces with `tracekit ls`, "
            f"show this one with `tracekit show {trace_id}`."
        )
    else:
        print(f"The trace was sent to {_state.config().tracking_uris}, not a file store.")


if __name__ == "__main__":
    main()
