"""tracekit's added latency per SDK call, all six peer cases, in the project's own venv.

Run it (a few minutes on two cores):

    .venv/bin/python benchmarks/hotpath.py [--rounds N] [--only SUBSTRING]
    .venv/bin/python benchmarks/hotpath.py --profile [--only SUBSTRING]

The cases, clients and recorded bodies are those of `benchmarks/peers.py` (an
in-process `httpx2.MockTransport` serving the cassettes in
tests/cassettes), without its separate virtualenv and peer variants:
`bare` (tracekit never imported) against `tracekit` (`autolog()` of the three
SDKs, default file store in the child's temporary directory). Each variant
runs in a fresh interpreter per round, interleaved (bare, tracekit, bare, ...);
a cell is the median over rounds of (tracekit - bare) median latency and of
the tracekit/bare ratio. Beside wall time, the calling thread's CPU time
(`time.thread_time_ns`) is reported: it leaves out the time the caller waits
for the GIL while the export worker runs, so it is the hot path alone.

`--profile` runs one tracekit child under pyinstrument (all threads' time as
seen from the caller) and cProfile (caller thread), per case.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers  # the shared cases, clients and cassettes
from _common import emit, revision
from _common import run_child as run_child_results

US = 1_000.0
SIZES = {  # (timed samples, warm-up samples) per child
    "openai_chat": (2_000, 200),
    "openai_stream": (1_000, 100),
    "openai_async": (30, 4),
    "anthropic_messages": (2_000, 200),
    "anthropic_stream": (1_000, 100),
    "gemini_generate": (2_000, 200),
}


def _timed(clients: Any, case: str, n: int) -> tuple[list[int], list[int]]:
    """(wall ns, calling thread's CPU ns) per sample."""
    if case == "openai_async":
        import asyncio

        clock, cpu = time.perf_counter_ns, time.thread_time_ns
        walls: list[int] = []
        cpus: list[int] = []

        async def run() -> None:
            client = clients.openai_async()
            create = client.chat.completions.create
            for _ in range(n):
                t0, c0 = clock(), cpu()
                await asyncio.gather(*(create(**clients.openai_chat) for _ in range(peers.BATCH)))
                cpus.append(cpu() - c0)
                walls.append(clock() - t0)
            await client.close()

        asyncio.run(run())
        return walls, cpus
    call = clients.call
    clock, cpu = time.perf_counter_ns, time.thread_time_ns
    walls, cpus = [], []
    for _ in range(n):
        t0, c0 = clock(), cpu()
        call(case)
        cpus.append(cpu() - c0)
        walls.append(clock() - t0)
    return walls, cpus


def _flush() -> None:
    if "tracekit" in sys.modules:
        sys.modules["tracekit"].flush(120)


def child_latency(spec: dict[str, Any]) -> None:
    variant, clients = peers._setup(spec)
    out: dict[str, Any] = {"errors": variant.errors, "cases": {}}
    for case in spec["cases"]:
        n, warm = spec["sizes"][case]
        _timed(clients, case, warm)
        _flush()
        gc.collect()
        walls, cpus = _timed(clients, case, n)
        _flush()
        out["cases"][case] = {
            "median_ns": statistics.median(walls),
            "cpu_ns": statistics.median(cpus),
            "n": n,
        }
    if spec["variant"] == "tracekit":
        import tracekit

        spans = llm = usage = 0
        for fresh in variant.new_spans():
            spans += 1
            llm += fresh[0]
            usage += fresh[1]
        out["check"] = {
            "spans": spans,
            "llm": llm,
            "usage": usage,
            "stats": {k: v for k, v in tracekit.get_stats().items() if v},
        }
    emit(out)
    os._exit(0)


def child_profile(spec: dict[str, Any]) -> None:
    import cProfile
    import io
    import pstats

    from pyinstrument import Profiler

    _variant, clients = peers._setup(spec)
    for case in spec["cases"]:
        n = spec["sizes"][case][0] // (10 if case == "openai_async" else 2)
        _timed(clients, case, max(2, n // 10))
        _flush()
        profiler = Profiler(interval=0.0001)
        profiler.start()
        _timed(clients, case, n)
        profiler.stop()
        _flush()
        print(f"\n### pyinstrument, {case}, {n} samples\n", flush=True)
        print(profiler.output_text(unicode=False, color=False, show_all=False), flush=True)
        prof = cProfile.Profile()
        prof.enable()
        _timed(clients, case, n)
        prof.disable()
        _flush()
        text = io.StringIO()
        stats = pstats.Stats(prof, stream=text)
        stats.sort_stats("tottime").print_stats(r"tracekit|wrapt|weakref|contextvars", 25)
        print(f"\n### cProfile (caller thread, self time), {case}\n", flush=True)
        print(text.getvalue(), flush=True)
    emit({"done": True})


def _pair(clients: Any, case: str) -> tuple[Any, Any]:
    """(bare, traced) callables of one sample: bare calls the patched method's
    original (`__wrapped__`), so it skips tracekit's wrapper entirely."""
    if case == "openai_async":
        import asyncio

        client = clients.openai_async()
        create = client.chat.completions.create
        request = clients.openai_chat

        def run(fn: Any) -> Any:
            async def batch() -> None:
                await asyncio.gather(*(fn(**request) for _ in range(peers.BATCH)))

            return lambda: asyncio.run(batch())

        return run(create.__wrapped__), run(create)
    if case.startswith("openai"):
        method, request = clients.openai.chat.completions.create, clients.openai_chat
        if case == "openai_stream":
            request = clients.openai_stream
    elif case.startswith("anthropic"):
        method = clients.anthropic.messages.create
        request = (
            clients.anthropic_stream if case == "anthropic_stream" else clients.anthropic_messages
        )
    else:
        method = clients.gemini.models.generate_content
        request = {"model": "gemini-2.0-flash", "contents": "What's the weather like?"}
    streamed = case.endswith("stream")

    def make(fn: Any) -> Any:
        if streamed:

            def sample() -> None:
                for _item in fn(**request):
                    pass

            return sample
        return lambda: fn(**request)

    return make(method.__wrapped__), make(method)


def child_inproc(spec: dict[str, Any]) -> None:
    """Bare and traced samples alternating in blocks, in one tracekit process."""
    _variant, clients = peers._setup(spec)
    clock, cpu = time.perf_counter_ns, time.thread_time_ns
    out: dict[str, Any] = {}
    for case in spec["cases"]:
        bare, traced = _pair(clients, case)
        n, warm = spec["sizes"][case]
        per = max(1, min(25, n // 40))
        for _ in range(max(2, warm // 2)):
            bare()
            traced()
        _flush()
        gc.collect()
        # "control" is the bare call again, timed as a third series: bare vs control is
        # the noise floor of this A/B on this machine, printed beside every ratio.
        series = (("bare", bare), ("traced", traced), ("control", bare))
        walls: dict[str, list[float]] = {name: [] for name, _ in series}
        cpus: dict[str, list[float]] = {name: [] for name, _ in series}
        for block in range(max(6, n // per)):
            shift = block % len(series)  # each series takes each position in turn
            for name, fn in series[shift:] + series[:shift]:
                t0, c0 = clock(), cpu()
                for _ in range(per):
                    fn()
                cpus[name].append((cpu() - c0) / per)
                walls[name].append((clock() - t0) / per)
        _flush()
        out[case] = {
            "median_ns": {k: statistics.median(v) for k, v in walls.items()},
            "cpu_ns": {k: statistics.median(v) for k, v in cpus.items()},
        }
    emit(out)
    os._exit(0)


def run_child(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hotpath-bench-") as tmp:
        env = peers.child_env(spec["variant"], tmp, "file")
        results = run_child_results(
            __file__, [kind, json.dumps(spec)], env=env, cwd=tmp, echo=kind == "profile"
        )
    return results[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--only", default="", help="cases whose name contains this")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the sample counts")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--inproc",
        action="store_true",
        help="bare (the original method) and traced calls alternating in one process",
    )
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, spec = args.child
        children = {"profile": child_profile, "inproc": child_inproc, "latency": child_latency}
        children[kind](json.loads(spec))
        return 0
    bodies = peers.load_cassettes()
    if bodies is None:
        print(f"no cassettes at {peers.CASSETTES}")
        return 1
    cases = [c for c in peers.CASES if args.only in c]
    sizes = {
        c: (max(4, int(n * args.scale)), max(2, int(w * args.scale))) for c, (n, w) in SIZES.items()
    }
    base = {"transport": "mock", "bodies": bodies, "cases": cases, "sizes": sizes}
    if args.profile:
        run_child("profile", {**base, "variant": "tracekit"})
        return 0
    if args.inproc:
        return run_inproc(base, args.rounds)
    load = os.getloadavg()[0]
    started = time.perf_counter()
    rounds: list[dict[str, Any]] = []
    problems: list[str] = []
    for index in range(args.rounds):
        print(f"round {index + 1}/{args.rounds} ...", file=sys.stderr, flush=True)
        # The order of the children rotates per round (none always runs first), and a second
        # bare child ("control") shows what two identical processes differ by.
        order = ["bare", "tracekit", "control"]
        order = order[index % 3 :] + order[: index % 3]
        results = {
            v: run_child("latency", {**base, "variant": "bare" if v == "control" else v})
            for v in order
        }
        check = results["tracekit"]["check"]
        if check["stats"] or check["llm"] != check["spans"] or check["usage"] != check["llm"]:
            problems.append(f"round {index + 1}: {check}")
        rounds.append(results)
    print(
        f"\n{revision()}, {args.rounds} rounds, {time.perf_counter() - started:.0f} s, "
        f"load {load:.2f} before / {os.getloadavg()[0]:.2f} after\n"
    )
    print(HEADER)
    for case in cases:
        pairs = [(r["bare"]["cases"][case], r["tracekit"]["cases"][case]) for r in rounds]
        controls = [
            r["control"]["cases"][case]["median_ns"] / r["bare"]["cases"][case]["median_ns"]
            for r in rounds
        ]
        per = peers.BATCH if case == "openai_async" else 1
        ratios = [t["median_ns"] / b["median_ns"] for b, t in pairs]
        added = statistics.median(t["median_ns"] - b["median_ns"] for b, t in pairs) / per
        cpu_added = statistics.median(t["cpu_ns"] - b["cpu_ns"] for b, t in pairs) / per
        cpu_ratio = statistics.median(t["cpu_ns"] / b["cpu_ns"] for b, t in pairs)
        bare = statistics.median(b["median_ns"] for b, _ in pairs)
        print(
            f"| {peers.CASES[case][1]} | {bare / US:,.0f} µs{' /batch' if per > 1 else ''} "
            f"| {added / US:+.1f} µs{'/call' if per > 1 else ''} "
            f"| {statistics.median(ratios):.3f} ({min(ratios):.3f}–{max(ratios):.3f}) "
            f"| {cpu_added / US:+.1f} µs | {cpu_ratio:.3f} | {_control(controls)} |"
        )
    for problem in problems:
        print(f"\n!! tracekit did not record every call: {problem}")
    return 1 if problems else 0


def run_inproc(base: dict[str, Any], rounds: int) -> int:
    load = os.getloadavg()[0]
    results = []
    for index in range(rounds):
        print(f"round {index + 1}/{rounds} ...", file=sys.stderr, flush=True)
        results.append(run_child("inproc", {**base, "variant": "tracekit"}))
    print(
        f"\n{revision()}, in-process A/B, {rounds} rounds, load {load:.2f} before / "
        f"{os.getloadavg()[0]:.2f} after\n"
    )
    print(HEADER)
    for case in base["cases"]:
        rs = [r[case] for r in results]
        controls = [r["median_ns"]["control"] / r["median_ns"]["bare"] for r in rs]
        per = peers.BATCH if case == "openai_async" else 1
        ratios = [r["median_ns"]["traced"] / r["median_ns"]["bare"] for r in rs]
        added = statistics.median(r["median_ns"]["traced"] - r["median_ns"]["bare"] for r in rs)
        cpu_added = statistics.median(r["cpu_ns"]["traced"] - r["cpu_ns"]["bare"] for r in rs)
        cpu_ratio = statistics.median(r["cpu_ns"]["traced"] / r["cpu_ns"]["bare"] for r in rs)
        bare = statistics.median(r["median_ns"]["bare"] for r in rs)
        print(
            f"| {peers.CASES[case][1]} | {bare / US:,.0f} µs{' /batch' if per > 1 else ''} "
            f"| {added / US / per:+.1f} µs{'/call' if per > 1 else ''} "
            f"| {statistics.median(ratios):.3f} ({min(ratios):.3f}–{max(ratios):.3f}) "
            f"| {cpu_added / US / per:+.1f} µs | {cpu_ratio:.3f} | {_control(controls)} |"
        )
    return 0


HEADER = (
    "| case | bare | tracekit added | ratio (range) | caller CPU added | CPU ratio "
    "| control: bare/bare (range) |\n|---|---|---|---|---|---|---|"
)


def _control(ratios: list[float]) -> str:
    """The bare-vs-bare ratio: a tracekit ratio inside this range is noise, not cost."""
    return f"{statistics.median(ratios):.3f} ({min(ratios):.3f}–{max(ratios):.3f})"


if __name__ == "__main__":
    sys.exit(main())
