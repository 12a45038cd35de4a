"""The export worker's CPU per traced call, and the garbage collector's passes it causes.

Run it (about half a minute on two cores):

    .venv/bin/python benchmarks/worker.py [--calls N] [--only SUBSTRING]
    .venv/bin/python benchmarks/worker.py --profile [--calls N] [--only SUBSTRING]

Each case of `hotpath.py` (the peers' clients on an in-process `httpx2.MockTransport`
serving the recorded bodies in tests/cassettes, default file store in a temporary
directory) makes `--calls` traced calls in one fresh interpreter, then waits for the
export (`tracekit.flush`). Figures per case:

- worker µs/trace: the CPU the export thread spent (its own CPU clock,
  `time.pthread_getcpuclockid`) over the calls and the flush, per call. CPU time is
  robust to other load on the machine, unlike wall time;
- direct µs/trace: the same steps (digest: deferred mapping, serialization, the chat
  and cost keys; then export to the file store) run on the finished traces in the
  benchmark's own thread, after the calls (the traces are held meanwhile), in groups of
  50: the best group's figure and the median. The best group is the steadiest figure
  on a shared machine (other load only ever adds to it);
- raw floor µs/trace: a prototype, not what tracekit does: the same held traces
  written as one JSON line each by pydantic-core with nothing mapped (each span's ids,
  times, status and the raw material its deferred mapping reads: the keyword
  arguments' snapshot, the SDK's response, a stream's kept chunks). The least a worker
  that mapped at read time would spend, beside the direct figure (docs/overhead.md);
- caller µs/call: the calling thread's CPU per call (the hot path and the SDK, plus
  the garbage collector's passes that fall on it);
- GC passes per 1,000 calls by generation, on the caller and on the worker
  (`gc.callbacks`), beside the caller's passes with tracing switched off
  (`autolog(disable=True)`, the same number of calls): what the worker's
  allocations add to every thread's collections.
- undigested at the last call: the traces still waiting for the worker to make their
  record when the last call returned. The calls run back to back on an in-process
  transport, where the worker hardly gets the GIL (docs/overhead.md: the OpenAI SDK's
  `os.urandom` read per request restarts the wait of a thread that wants it), so most
  wait until the flush: the tight loop is the worker's worst case, not a real app's.

`--profile` prints a cProfile of the direct steps per case (self time, top entries).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peerbench as peers  # the shared cases, clients and cassettes
from _common import emit, print_profile, revision
from _common import run_child as run_child_results

CASES = [c for c in peers.CASES if c != "openai_async"]
PROVIDER = {c: peers.CASES[c][0] for c in CASES}
WARM = 100
GROUP = 50  # traces per group in the direct figure (its best group is the one printed)


class Passes:
    """GC passes by generation on the calling thread and on every other thread."""

    def __init__(self) -> None:
        self.caller = threading.get_ident()
        self.counts = {"caller": [0, 0, 0], "other": [0, 0, 0]}
        gc.callbacks.append(self.callback)

    def callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "stop":
            who = "caller" if threading.get_ident() == self.caller else "other"
            self.counts[who][info["generation"]] += 1

    def close(self) -> None:
        gc.callbacks.remove(self.callback)


def _switch(provider: str, on: bool) -> None:
    import tracekit

    getattr(tracekit, provider).autolog(disable=not on)


def _worker_clock() -> int:
    """The export thread's CPU clock id (the worker is running once a trace went out)."""
    for thread in threading.enumerate():
        if thread.name == "tracekit-export" and thread.ident is not None:
            return time.pthread_getcpuclockid(thread.ident)
    raise RuntimeError("no export worker")


def _undigested() -> int:
    """Traces queued whose record the worker has not made yet."""
    from tracekit import _state

    return sum(trace.record is None for trace in list(_state.pipeline()._queue))


def child_measure(spec: dict[str, Any]) -> None:
    import tracekit

    _variant, clients = peers.setup({**spec, "variant": "tracekit"})
    calls = spec["calls"]
    out: dict[str, Any] = {}
    for case in spec["cases"]:
        provider = PROVIDER[case]
        for _ in range(WARM):
            clients.call(case)
        tracekit.flush(60)
        clock = _worker_clock()
        # Tracing off: the garbage collector's passes the SDK call alone causes.
        _switch(provider, False)
        gc.collect()
        bare = Passes()
        for _ in range(calls):
            clients.call(case)
        bare.close()
        _switch(provider, True)
        gc.collect()
        passes = Passes()
        w0, c0 = time.clock_gettime_ns(clock), time.thread_time_ns()
        for _ in range(calls):
            clients.call(case)
        caller = time.thread_time_ns() - c0
        backlog = _undigested()
        tracekit.flush(60)
        worker = time.clock_gettime_ns(clock) - w0
        passes.close()
        out[case] = {
            "worker_us": worker / calls / 1e3,
            "caller_us": caller / calls / 1e3,
            "backlog": backlog,
            "bare_gc": [n * 1000 / calls for n in bare.counts["caller"]],
            "caller_gc": [n * 1000 / calls for n in passes.counts["caller"]],
            "worker_gc": [n * 1000 / calls for n in passes.counts["other"]],
            "direct_us": _direct(clients, case, calls, None),
            "floor_us": _floor(clients, case, calls),
        }
    out["stats"] = {k: v for k, v in tracekit.get_stats().items() if v}
    emit(out)
    os._exit(0)


def _hold(clients: Any, case: str, calls: int) -> tuple[Any, list[Any]]:
    """`calls` finished traces, held here instead of queued for the worker."""
    import tracekit
    from tracekit import _state

    tracekit.flush(60)
    pipeline = _state.pipeline()
    held: list[Any] = []
    pipeline.enqueue = held.append  # type: ignore[method-assign]  # the traces stay here
    try:
        for _ in range(calls):
            clients.call(case)
    finally:
        del pipeline.enqueue
    gc.collect()
    return pipeline, held


def _per_group(held: list[Any], step: Any) -> list[float]:
    """µs of this thread's CPU per trace of `step` run on each group of `GROUP` traces."""
    per: list[float] = []
    clock = time.thread_time_ns
    for i in range(0, len(held), GROUP):
        group = held[i : i + GROUP]
        c0 = clock()
        step(group)
        per.append((clock() - c0) / len(group) / 1e3)
    return per


def _direct(clients: Any, case: str, calls: int, profile: Any) -> list[float]:
    """The worker's steps run here on `calls` finished traces, in groups of `GROUP`
    (digested, then exported): µs per trace of each group."""
    pipeline, held = _hold(clients, case, calls)

    def step(group: list[Any]) -> None:
        if profile is not None:
            profile.enable()
        pipeline._digest(group)
        pipeline._export(group)
        if profile is not None:
            profile.disable()

    return _per_group(held, step)


def _raw_material(trace: Any) -> dict[str, Any]:
    """A prototype, not tracekit: what a worker that maps nothing would keep of a trace,
    each span's ids, times and status and the raw material its deferred mapping reads
    (the call's keyword arguments, the SDK's response or a stream's kept chunks)."""
    spans = []
    for span in trace.spans:
        material: list[Any] = []
        deferred = span.deferred
        fills = deferred if isinstance(deferred, list) else [deferred] if deferred else []
        for fill in fills:
            owner = getattr(fill, "__self__", None)
            if owner is not None:  # a stream's fold: its kept chunks, or what the
                pending = getattr(owner, "pending", None)  # caller folded already
                accumulator = getattr(owner, "accumulator", None)
                material.append(pending if pending is not None else vars(accumulator))
                continue
            # the keyword arguments' snapshot, the response (not the span, endpoint or
            # the SDK resource the call was made on): a partial's arguments, or what an
            # SDK call's record (`_Call`) holds for its mapping
            held = getattr(fill, "args", None)
            if held is None:
                held = (getattr(fill, "snapshot", None), getattr(fill, "response", None))
            material += [
                a
                for a in held
                if isinstance(a, (dict, list)) or hasattr(type(a), "__pydantic_serializer__")
            ]
        spans.append(
            {
                "span_id": span.span_id,
                "parent_id": span.parent_id,
                "name": span.name,
                "start_time_ns": span.start_time_ns,
                "end_time_ns": span.end_time_ns,
                "status": span.status,
                "attributes": span.attributes,
                "raw": material,
            }
        )
    return {"trace_id": trace.trace_id, "spans": spans}


def _floor(clients: Any, case: str, calls: int) -> list[float]:
    """µs per trace (per group of `GROUP`) of the prototype above written as one JSON
    line by pydantic-core: the floor of a worker that would map at read time."""
    from pydantic_core import to_json

    _pipeline, held = _hold(clients, case, calls)

    def step(group: list[Any]) -> None:
        for trace in group:
            to_json(_raw_material(trace), fallback=repr)

    return _per_group(held, step)


def child_profile(spec: dict[str, Any]) -> None:
    import cProfile

    _variant, clients = peers.setup({**spec, "variant": "tracekit"})
    for case in spec["cases"]:
        for _ in range(WARM):
            clients.call(case)
        prof = cProfile.Profile()
        per = statistics.median(_direct(clients, case, spec["calls"], prof))
        print_profile(
            prof, "tottime", f"{case}: worker steps, {per:.1f} µs/trace under cProfile", 30
        )
        print_profile(
            prof, "cumulative", f"{case}: cumulative, tracekit's functions", "tracekit", 30
        )
    emit({"done": True})


def run_child(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="worker-bench-") as tmp:
        env = peers.child_env("tracekit", tmp, "file")
        results = run_child_results(
            __file__, [kind, json.dumps(spec)], env=env, cwd=tmp, echo=kind == "profile"
        )
    return results[-1]


def _gens(counts: list[float]) -> str:
    return " / ".join(f"{n:.1f}" for n in counts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1_000, help="traced calls per case")
    parser.add_argument("--only", default="", help="cases whose name contains this")
    parser.add_argument("--profile", action="store_true", help="cProfile of the worker's steps")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, spec = args.child
        {"measure": child_measure, "profile": child_profile}[kind](json.loads(spec))
        return 0
    bodies = peers.load_cassettes()
    if bodies is None:
        print(f"no cassettes at {peers.CASSETTES}")
        return 1
    cases = [c for c in CASES if args.only in c]
    spec = {"transport": "mock", "bodies": bodies, "cases": cases, "calls": args.calls}
    if args.profile:
        run_child("profile", spec)
        return 0
    started = time.perf_counter()
    result = run_child("measure", spec)
    print(
        f"\n{revision()}, {args.calls:,} traced calls per case, "
        f"{time.perf_counter() - started:.0f} s\n"
    )
    print(
        "| case | worker µs/trace | direct µs/trace, best / median group "
        "| raw floor µs/trace, best / median group | caller µs/call "
        "| caller GC gen 0/1/2 per 1,000: off → traced | worker GC gen 0/1/2 per 1,000 "
        "| undigested at the last call |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    for case in cases:
        r = result[case]
        print(
            f"| {peers.CASES[case][1]} | {r['worker_us']:.1f} "
            f"| {min(r['direct_us']):.1f} / {statistics.median(r['direct_us']):.1f} "
            f"| {min(r['floor_us']):.1f} / {statistics.median(r['floor_us']):.1f} "
            f"| {r['caller_us']:.1f} | {_gens(r['bare_gc'])} → {_gens(r['caller_gc'])} "
            f"| {_gens(r['worker_gc'])} | {r['backlog']:,} of {args.calls:,} |"
        )
    if result["stats"]:
        print(f"\n!! tracekit's counters: {result['stats']}")
    return 1 if result["stats"] else 0


if __name__ == "__main__":
    sys.exit(main())
