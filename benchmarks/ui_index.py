"""How fast `tracekit ui` lists a big file store: its SQLite index.

    .venv/bin/python benchmarks/ui_index.py                    # 20,000 and 1,000 traces
    .venv/bin/python benchmarks/ui_index.py --traces 100000    # the issue's size (about a minute)

Writes synthetic stores (demo-shaped traces: an agent, three retrievals, two chat
calls with messages and usage, a tool; ~4 KB a line) through the file exporter
into a temporary directory, then measures, each in this process:

- first open: a new index reads the whole store, then the first page of 50;
- next open: a new `StoreIndex` on the same cache file (as a second `tracekit ui`
  run), its refresh (nothing new: a `stat` per file) and the first page — median
  of 7;
- a filtered search (tag, session, name text) on the open index — median of 7;
- 100 traces appended, then the refresh that reads them;
- for comparison, `tracekit ls`'s reader (`_store.load`: parse every line).

Other work on the machine skews every figure: the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import revision
from tracekit import _store
from tracekit._ui.index import Query, StoreIndex
from tracekit.exporters.file import FileExporter

T0 = 1_795_000_000_000_000_000
PROMPT = "Answer from these documents: " + "Refunds are paid within 14 days. " * 12


def record(n: int) -> dict[str, Any]:
    """A demo-shaped trace; every 50th is in session s-<n//50>, tags vary."""
    start = T0 + n * 1_000_000_000
    ids = [f"{n:012x}{i:04x}" for i in range(7)]

    def span(i: int, parent: int | None, name: str, kind: str, a: int, b: int) -> dict[str, Any]:
        return {
            "span_id": ids[i],
            "parent_id": ids[parent] if parent is not None else None,
            "name": name,
            "span_type": kind,
            "start_time_ns": start + a * 1_000_000,
            "end_time_ns": start + b * 1_000_000,
            "status": {"code": "ERROR" if n % 97 == 0 and i == 0 else "OK", "message": ""},
            "inputs": None,
            "outputs": None,
            "attributes": {},
            "events": [],
        }

    spans = [span(0, None, "answer_question", "AGENT", 0, 100 + n % 400)]
    spans += [span(i, 0, "search", "RETRIEVER", 1, 6) for i in (1, 2, 3)]
    for i, (a, b) in ((4, (10, 40)), (6, (60, 95))):
        llm = span(i, 0, "chat gpt-4o-mini", "CHAT_MODEL", a, b)
        llm["inputs"] = {
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": PROMPT},
                {"role": "user", "content": f"Question number {n}?"},
            ],
        }
        llm["outputs"] = {"choices": [{"message": {"content": f"Answer {n}. " * 20}}]}
        llm["attributes"] = {"gen_ai.request.model": "gpt-4o-mini"}
        llm["token_usage"] = {"input_tokens": 60, "output_tokens": 20, "total_tokens": 80}
        spans.append(llm)
    spans.insert(5, span(5, 0, "order_status", "TOOL", 45, 55))
    return {
        "schema": "tracekit.trace/1",
        "trace_id": f"{n:032x}",
        "name": "answer_question",
        "status": spans[0]["status"]["code"],
        "start_time_ns": spans[0]["start_time_ns"],
        "end_time_ns": spans[0]["end_time_ns"],
        "tags": {"app": "bench", "shard": str(n % 10)},
        "metadata": {"session_id": f"s-{n // 50}", "user_id": f"u-{n % 100}"},
        "token_usage": {"input_tokens": 120, "output_tokens": 40, "total_tokens": 160},
        "spans": spans,
    }


def write(store: Path, first: int, count: int) -> None:
    exporter = FileExporter(store)
    for start in range(first, first + count, 500):
        exporter.export([record(n) for n in range(start, min(first + count, start + 500))])
    exporter.shutdown()


def timed(fn: Callable[[], Any]) -> float:
    began = time.perf_counter()
    fn()
    return (time.perf_counter() - began) * 1000


def median_ms(fn: Callable[[], Any], runs: int = 7) -> float:
    return statistics.median(timed(fn) for _ in range(runs))


def measure(root: Path, traces: int) -> dict[str, float]:
    store = root / f"store-{traces}"
    cache = root / f"index-{traces}.sqlite"
    began = time.perf_counter()
    write(store, 0, traces)
    written_s = time.perf_counter() - began
    size_mb = sum(p.stat().st_size for p in store.glob("*.jsonl")) / 2**20

    def open_and_list() -> None:
        index = StoreIndex(store, cache)
        index.refresh()
        index.search(Query(limit=50))
        index.close()

    figures = {"traces": traces, "store MiB": size_mb, "write s": written_s}
    figures["first open ms"] = timed(open_and_list)
    figures["next open ms"] = median_ms(open_and_list)
    index = StoreIndex(store, cache)
    index.refresh()
    figures["tag filter ms"] = median_ms(lambda: index.search(Query(tag="shard=3")))
    figures["session filter ms"] = median_ms(lambda: index.search(Query(session="s-7")))
    figures["name search ms"] = median_ms(lambda: index.search(Query(text="question")))
    figures["last page ms"] = median_ms(lambda: index.search(Query(offset=traces - 50)))
    write(store, traces, 100)
    figures["+100 traces refresh ms"] = timed(index.refresh)
    index.close()
    figures["ls reader (_store.load) ms"] = timed(lambda: _store.load(store))
    figures["index MiB"] = cache.stat().st_size / 2**20
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=20_000, help="the big store's size")
    parser.add_argument("--small", type=int, default=1_000, help="the small store's size")
    args = parser.parse_args()
    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="tracekit-ui-bench-"))
    try:
        results = [measure(root, args.small), measure(root, args.traces)]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    load_after = os.getloadavg()
    print(f"tracekit ui index benchmark at {revision()}, Python {sys.version.split()[0]}, ")
    print(f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after\n")
    print("| measurement | " + " | ".join(f"{int(r['traces']):,} traces" for r in results) + " |")
    print("|---|" + "---:|" * len(results))
    for key in list(results[0])[1:]:
        cells = []
        for r in results:
            value = r[key]
            cells.append(f"{value:,.1f}" if value < 100 else f"{value:,.0f}")
        print(f"| {key} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
