"""What tracekit adds to one SDK call, counted rather than timed: the same every run.

    .venv/bin/python benchmarks/callcount.py [--only SUBSTRING] [--detail]

On this machine the latency of a traced call moves by ±20-40 µs between runs of the
same code (`hotpath.py --inproc`), more than most changes to the hot path are worth.
These counts do not move, so a change can be judged by them first and timed after:

- Python function calls and C calls made on the calling thread during one call, traced
  minus bare (`sys.setprofile`). A cold Python call costs roughly 0.2-0.3 µs here:
  forty more distinct functions per OpenAI call measured +6-13 µs.
- GC-tracked objects still alive when the call returns, traced minus bare (the young
  generation's count with the collector paused): what tracekit keeps for the export
  worker. Every 700 of them cost the caller a young-generation pass, and a stream's
  chunks are most of them.

The cases, clients and recorded bodies are `hotpath.py`'s (an in-process transport
serving tests/cassettes); bare is the patched method's original, or tracing switched
off for LangChain. Anthropic's traced calls make fewer calls than bare: tracekit makes
them without the SDK's own OpenTelemetry span (`anthropic.py`, `without_sdk_spans`).
`--detail` lists, per case, the functions whose call count differs.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hotpath
import peerbench as peers
from _common import emit, revision
from _common import run_child as run_child_results

WARM = 30  # calls of each form before counting
KEPT_SAMPLES = 11  # calls per form whose kept objects are counted (median)


def _where(frame: Any) -> str:
    path = frame.f_code.co_filename
    for marker in ("site-packages/", "/src/"):
        path = path.split(marker)[-1]
    return f"{path}:{frame.f_code.co_name}"


def _calls(fn: Any, before: Any) -> tuple[Counter[str], Counter[str]]:
    """(totals {"py", "c"}, Python calls per function) of one call of `fn`."""
    totals: Counter[str] = Counter()
    functions: Counter[str] = Counter()

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            totals["py"] += 1
            functions[_where(frame)] += 1
        elif event == "c_call":
            totals["c"] += 1

    if before is not None:
        before()
    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return totals, functions


def _kept(fn: Any, before: Any) -> float:
    """GC-tracked objects still alive right after one call (median over samples)."""
    counts = []
    for _ in range(KEPT_SAMPLES):
        if before is not None:
            before()
        hotpath._flush()  # nothing of an earlier call is waiting for the worker
        gc.collect()
        gc.disable()
        start = gc.get_count()[0]
        fn()
        counts.append(gc.get_count()[0] - start)
        gc.enable()
    return statistics.median(counts)


def child(spec: dict[str, Any]) -> None:
    _variant, own = hotpath._setup(spec)
    out: dict[str, Any] = {}
    for case in spec["cases"]:
        (bare, off), (traced, on) = hotpath._pair(own, case)
        for _ in range(WARM):
            for fn, before in ((bare, off), (traced, on)):
                if before is not None:
                    before()
                fn()
        hotpath._flush()
        bare_totals, bare_functions = _calls(bare, off)
        traced_totals, traced_functions = _calls(traced, on)
        traced_functions.subtract(bare_functions)
        out[case] = {
            "py": [bare_totals["py"], traced_totals["py"]],
            "c": [bare_totals["c"], traced_totals["c"]],
            "kept": [_kept(bare, off), _kept(traced, on)],
            "functions": {k: n for k, n in traced_functions.most_common() if n},
        }
        if on is not None:
            on()
    emit(out)
    os._exit(0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="cases whose name contains this")
    parser.add_argument("--detail", action="store_true", help="the functions that differ")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return 0
    bodies = peers.load_cassettes()
    if bodies is None:
        print(f"no cassettes at {peers.CASSETTES}")
        return 1
    cases = [c for c in hotpath.CASES if args.only in c]
    spec = {
        "transport": "mock",
        "bodies": bodies,
        "cases": cases,
        "sizes": hotpath.SIZES,
        "variant": "tracekit",
    }
    with tempfile.TemporaryDirectory(prefix="callcount-bench-") as tmp:
        env = peers.child_env("tracekit", tmp, "file")
        result = run_child_results(__file__, [json.dumps(spec)], env=env, cwd=tmp)[-1]
    print(f"\n{revision()}: what one traced call adds on the calling thread (counted)\n")
    print("| case | Python calls, bare → traced | added | C calls added | objects kept added |")
    print("|---|---|---|---|---|")
    for case in cases:
        r = result[case]
        (py0, py1), (c0, c1), (k0, k1) = r["py"], r["c"], r["kept"]
        per = peers.BATCH if case == "openai_async" else 1  # a gather: counted per call
        label = hotpath.CASES[case][1] + (" (per call)" if per > 1 else "")
        print(
            f"| {label} | {py0 / per:,.0f} → {py1 / per:,.0f} | {(py1 - py0) / per:+,.0f} "
            f"| {(c1 - c0) / per:+,.0f} | {(k1 - k0) / per:+,.0f} |"
        )
    if args.detail:
        for case in cases:
            print(f"\n{case}: Python calls per function, traced minus bare")
            for where, n in result[case]["functions"].items():
                print(f"  {n:+5d} {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
