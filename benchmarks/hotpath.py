"""tracekit's added latency per SDK call, the peer cases and its own, in the project's own venv.

Run it (a few minutes on two cores):

    .venv/bin/python benchmarks/hotpath.py [--rounds N] [--only SUBSTRING]
    .venv/bin/python benchmarks/hotpath.py --inproc [--rounds N] [--only SUBSTRING]
        [--transport loopback]
    .venv/bin/python benchmarks/hotpath.py --profile [--only SUBSTRING]

The peer cases, clients and recorded bodies are those of `benchmarks/peers.py` (an
in-process `httpx2.MockTransport` serving the cassettes in tests/cassettes, Gemini's
stream included), without its separate virtualenv and peer variants; two cases are
tracekit's own: LangChain's `ChatOpenAI` over the OpenAI SDK (both autologs; bare in
`--inproc` is both `autolog(disable=True)`), and `@tracekit.trace` on a trivial
function (bare: the function itself). Variants:
`bare` (tracekit never imported) against `tracekit` (`autolog()` of the three
SDKs, default file store in the child's temporary directory). Each variant
runs in a fresh interpreter per round, interleaved (bare, tracekit, bare, ...);
a cell is the median over rounds of (tracekit - bare) median latency and of
the tracekit/bare ratio. Beside wall time, the calling thread's CPU time
(`time.thread_time_ns`) is reported: it leaves out the time the caller waits
for the GIL while the export worker runs, so it is the hot path alone.

`--inproc` alternates blocks of bare and traced calls in one process, and a third
series, the bare call again ("control"), whose ratio to bare is the noise floor. A
second table counts the garbage collector's passes on the calling thread per series
(`gc.callbacks`): objects tracekit keeps until export make full passes more frequent,
which the medians leave out and the mean shows.
On a shared machine wall time is noise: judge by the caller thread's CPU and by
counts, next to the control column.

`--transport loopback` makes the calls real HTTP to tracekit's fake provider server on
127.0.0.1 (run by the benchmark's parent process, not the measured child) instead of
the in-process transport: each call then waits on a socket, as a real call waits on
the network, and the export worker gets the GIL meanwhile. On the in-process
transport it hardly does (the OpenAI SDK's `os.urandom` read per request restarts the
wait of a thread that wants the GIL; docs/overhead.md), so every trace waits for its
batch with its SDK objects and the garbage collector's passes on the caller are the
worst case, not a real app's.

Sustained load (calls at a fixed rate: lag, drops, RSS) is `sustained.py`'s, on the
same cases and clients.

`--profile` runs one tracekit child under pyinstrument (all threads' time as
seen from the caller) and cProfile (caller thread), per case.
"""

from __future__ import annotations

import argparse
import atexit
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

import peerbench as peers  # the shared cases, clients and cassettes
from _common import emit, print_profile, revision, rotated
from _common import fmt_us as _us
from _common import run_child as run_child_results
from _common import spread as _control

US = 1_000.0
# The peer cases, and tracekit's own (no peer has a row for them).
CASES = {
    **peers.CASES,
    "langchain_openai": ("langchain", "LangChain ChatOpenAI over OpenAI"),
    "trace_decorator": ("tracekit", "@trace on a trivial function"),
}
SIZES = {  # (timed samples, warm-up samples) per child
    "openai_chat": (2_000, 200),
    "openai_stream": (1_000, 100),
    "openai_async": (30, 4),
    "anthropic_messages": (2_000, 200),
    "anthropic_stream": (1_000, 100),
    "gemini_generate": (2_000, 200),
    "gemini_stream": (1_000, 100),
    "langchain_openai": (1_000, 100),
    "trace_decorator": (20_000, 2_000),
}
TARGET_TRACE_US = 15.0  # @trace on a trivial function, caller CPU added


def _work(x: int) -> int:
    """The trivial function of the `trace_decorator` case."""
    return x + 1


class Own:
    """tracekit's own cases on the peers' clients: one sample each, and for `--inproc`
    the bare and traced forms with what to do before a block of them."""

    def __init__(self, clients: Any, traced: bool, base_url: str = "") -> None:
        self.clients = clients
        self.traced = traced
        self.base_url = base_url  # the fake server's, on the loopback transport
        self.chat: Any = None
        self.work = _work
        if traced:
            import tracekit

            self.work = tracekit.trace(_work)

    def _chat(self) -> Any:
        if self.chat is None:
            import httpx2
            from langchain_openai import ChatOpenAI

            if self.base_url:
                client = httpx2.Client()
            else:
                client = httpx2.Client(transport=httpx2.MockTransport(self.clients._handler))
            self.chat = ChatOpenAI(
                model="gpt-4o-mini",
                api_key="test",
                base_url=(self.base_url or "http://bench.invalid") + "/v1",
                max_retries=0,
                http_client=client,
            )
        return self.chat

    def call(self, case: str) -> None:
        if case == "langchain_openai":
            self._chat().invoke("Say this is a test")
        elif case == "trace_decorator":
            self.work(1)
        else:
            self.clients.call(case)

    def pair(self, case: str) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
        """((bare, before its block), (traced, before its block))."""
        if case == "trace_decorator":
            traced = self.work
            return (lambda: _work(1), None), (lambda: traced(1), None)
        import tracekit

        chat = self._chat()

        def switch(on: bool) -> Any:
            def before() -> None:
                tracekit.langchain.autolog(disable=not on)
                tracekit.openai.autolog(disable=not on)

            return before

        sample = lambda: chat.invoke("Say this is a test")  # noqa: E731
        return (sample, switch(False)), (sample, switch(True))


def _setup(spec: dict[str, Any]) -> tuple[Any, Any]:
    """The peers' variant and clients, LangChain traced too in the tracekit variant."""
    variant, clients = peers.setup(spec)
    if spec["variant"] == "tracekit" and any(c in OWN for c in spec["cases"]):
        import tracekit

        tracekit.langchain.autolog()
    return variant, Own(clients, spec["variant"] == "tracekit", spec.get("base_url") or "")


OWN = ("langchain_openai", "trace_decorator")


def _timed(clients: Any, case: str, n: int) -> tuple[list[int], list[int]]:
    """(wall ns, calling thread's CPU ns) per sample."""
    if case == "openai_async":
        import asyncio

        clock, cpu = time.perf_counter_ns, time.thread_time_ns
        walls: list[int] = []
        cpus: list[int] = []

        async def run() -> None:
            client = clients.clients.openai_async()
            create = client.chat.completions.create
            request = clients.clients.openai_chat
            for _ in range(n):
                t0, c0 = clock(), cpu()
                await asyncio.gather(*(create(**request) for _ in range(peers.BATCH)))
                cpus.append(cpu() - c0)
                walls.append(clock() - t0)
            await client.close()

        asyncio.run(run())
        return walls, cpus
    call = clients.call  # an `Own`: the peers' cases and tracekit's own
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
    variant, clients = _setup(spec)
    out: dict[str, Any] = {"errors": variant.errors, "cases": {}}
    traced = spec["variant"] == "tracekit"
    spans = llm = usage = 0
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
        fresh = variant.new_spans() if traced else []
        if case not in OWN:  # one LLM span with usage per call (own cases: other spans)
            spans += len(fresh)
            llm += sum(is_llm for is_llm, _ in fresh)
            usage += sum(has_usage for _, has_usage in fresh)
    if traced:
        import tracekit

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

    try:  # not in the dev group: the cProfile table is printed without it
        from pyinstrument import Profiler
    except ImportError:
        Profiler = None  # noqa: N806
        print("(pyinstrument is not installed: cProfile only)", flush=True)

    _variant, clients = _setup(spec)
    for case in spec["cases"]:
        n = spec["sizes"][case][0] // (10 if case == "openai_async" else 2)
        _timed(clients, case, max(2, n // 10))
        _flush()
        if Profiler is not None:
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
        title = f"cProfile (caller thread, self time), {case}"
        print_profile(prof, "tottime", title, r"tracekit|wrapt|weakref|contextvars", 25)
    emit({"done": True})


def _pair(own: Any, case: str) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    """((bare, before its block), (traced, before its block)) of one sample: for an SDK
    case bare calls the patched method's original (`__wrapped__`), so it skips
    tracekit's wrapper entirely."""
    if case in OWN:
        return own.pair(case)
    clients = own.clients
    bare, traced = _sdk_pair(clients, case, sockets=bool(own.base_url))
    return (bare, None), (traced, None)


def _sdk_pair(clients: Any, case: str, sockets: bool = False) -> tuple[Any, Any]:
    if case == "openai_async":
        import asyncio

        client = clients.openai_async()
        create = client.chat.completions.create
        request = clients.openai_chat

        def run(fn: Any) -> Any:
            async def batch() -> None:
                await asyncio.gather(*(fn(**request) for _ in range(peers.BATCH)))

            return lambda: asyncio.run(batch())

        def run_fresh(traced: bool) -> Any:
            # Real connections belong to the event loop that opened them: a client per batch.
            async def batch() -> None:
                fresh = clients.openai_async()
                method = fresh.chat.completions.create
                fn = method if traced else method.__wrapped__
                await asyncio.gather(*(fn(**request) for _ in range(peers.BATCH)))
                await fresh.close()

            return lambda: asyncio.run(batch())

        if sockets:
            return run_fresh(False), run_fresh(True)
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
    elif case == "gemini_stream":
        method = clients.gemini.models.generate_content_stream
        request = {"model": "gemini-2.0-flash", "contents": "Tell me a short story about a cat."}
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


class GcWatch:
    """The garbage collector's passes on the calling thread, per series: how many of
    each generation and their time (a full pass is what a caller feels)."""

    def __init__(self, names: tuple[str, ...]) -> None:
        import threading

        self.thread = threading.get_ident()
        self.series = names[0]
        self.counts = {name: [0, 0, 0] for name in names}
        self.ns = dict.fromkeys(names, 0)
        self.started = 0
        gc.callbacks.append(self.callback)

    def callback(self, phase: str, info: dict[str, Any]) -> None:
        import threading

        if threading.get_ident() != self.thread:
            return
        if phase == "start":
            self.started = time.perf_counter_ns()
        else:
            self.ns[self.series] += time.perf_counter_ns() - self.started
            self.counts[self.series][info["generation"]] += 1

    def close(self) -> None:
        gc.callbacks.remove(self.callback)


def child_inproc(spec: dict[str, Any]) -> None:
    """Bare and traced samples alternating in blocks, in one tracekit process."""
    _variant, clients = _setup(spec)
    clock, cpu = time.perf_counter_ns, time.thread_time_ns
    out: dict[str, Any] = {}
    for case in spec["cases"]:
        (bare, off), (traced, on) = _pair(clients, case)
        n, warm = spec["sizes"][case]
        per = max(1, min(25, n // 40))
        for _ in range(max(2, warm // 2)):
            for fn, before in ((bare, off), (traced, on)):
                if before is not None:
                    before()
                fn()
        _flush()
        gc.collect()
        # "control" is the bare call again, timed as a third series: bare vs control is
        # the noise floor of this A/B on this machine, printed beside every ratio.
        series = (("bare", bare, off), ("traced", traced, on), ("control", bare, off))
        walls: dict[str, list[float]] = {name: [] for name, _, _ in series}
        cpus: dict[str, list[float]] = {name: [] for name, _, _ in series}
        watch = GcWatch(tuple(name for name, _, _ in series))
        blocks = max(6, n // per)
        for block in range(blocks):
            shift = block % len(series)  # each series takes each position in turn
            for name, fn, before in series[shift:] + series[:shift]:
                if before is not None:  # tracing switched off or on, outside the timing
                    before()
                watch.series = name
                t0, c0 = clock(), cpu()
                for _ in range(per):
                    fn()
                cpus[name].append((cpu() - c0) / per)
                walls[name].append((clock() - t0) / per)
        watch.close()
        if on is not None:
            on()  # tracing left on for the cases after this one
        _flush()
        calls = blocks * per
        out[case] = {
            "median_ns": {k: statistics.median(v) for k, v in walls.items()},
            "cpu_ns": {k: statistics.median(v) for k, v in cpus.items()},
            "mean_ns": {k: statistics.fmean(v) for k, v in walls.items()},
            "gc": {
                k: {
                    "per_1000": [c * 1000 / calls for c in watch.counts[k]],
                    "ns": watch.ns[k] / calls,
                }
                for k in watch.counts
            },
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
    parser.add_argument(
        "--transport",
        choices=("mock", "loopback"),
        default="mock",
        help="the recorded bodies in process (default), or real HTTP to tracekit's fake "
        "provider server on 127.0.0.1, where each call waits on a socket",
    )
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, spec = args.child
        children = {
            "profile": child_profile,
            "inproc": child_inproc,
            "latency": child_latency,
        }
        children[kind](json.loads(spec))
        return 0
    bodies = peers.load_cassettes()
    if bodies is None:
        print(f"no cassettes at {peers.CASSETTES}")
        return 1
    cases = [c for c in CASES if args.only in c]
    sizes = {
        c: (max(4, int(n * args.scale)), max(2, int(w * args.scale))) for c, (n, w) in SIZES.items()
    }
    base = {"transport": "mock", "bodies": bodies, "cases": cases, "sizes": sizes}
    if args.transport == "loopback":
        from peerbench.plan import fake_server

        server = fake_server()
        atexit.register(server.stop)
        base = {**base, "transport": "loopback", "base_url": server.base_url, "bodies": None}
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
        order = rotated(order, index)
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
    trace_cpu = None
    for case in cases:
        pairs = [(r["bare"]["cases"][case], r["tracekit"]["cases"][case]) for r in rounds]
        controls = [
            r["control"]["cases"][case]["median_ns"] / r["bare"]["cases"][case]["median_ns"]
            for r in rounds
        ]
        cpu_controls = [
            r["control"]["cases"][case]["cpu_ns"] / r["bare"]["cases"][case]["cpu_ns"]
            for r in rounds
        ]
        per = peers.BATCH if case == "openai_async" else 1
        ratios = [t["median_ns"] / b["median_ns"] for b, t in pairs]
        added = statistics.median(t["median_ns"] - b["median_ns"] for b, t in pairs) / per
        cpu_added = statistics.median(t["cpu_ns"] - b["cpu_ns"] for b, t in pairs) / per
        cpu_ratio = statistics.median(t["cpu_ns"] / b["cpu_ns"] for b, t in pairs)
        bare = statistics.median(b["median_ns"] for b, _ in pairs)
        print(
            f"| {CASES[case][1]} | {_us(bare)}{' /batch' if per > 1 else ''} "
            f"| {added / US:+.1f} µs{'/call' if per > 1 else ''} "
            f"| {statistics.median(ratios):.3f} ({min(ratios):.3f}–{max(ratios):.3f}) "
            f"| {cpu_added / US:+.1f} µs | {cpu_ratio:.3f} | {_control(controls)} "
            f"| {_control(cpu_controls)} |"
        )
        if case == "trace_decorator":
            trace_cpu = cpu_added
    if trace_cpu is not None:
        _trace_target(trace_cpu)
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
    trace_cpu = None
    for case in base["cases"]:
        rs = [r[case] for r in results]
        controls = [r["median_ns"]["control"] / r["median_ns"]["bare"] for r in rs]
        cpu_controls = [r["cpu_ns"]["control"] / r["cpu_ns"]["bare"] for r in rs]
        per = peers.BATCH if case == "openai_async" else 1
        ratios = [r["median_ns"]["traced"] / r["median_ns"]["bare"] for r in rs]
        added = statistics.median(r["median_ns"]["traced"] - r["median_ns"]["bare"] for r in rs)
        cpu_added = statistics.median(r["cpu_ns"]["traced"] - r["cpu_ns"]["bare"] for r in rs)
        cpu_ratio = statistics.median(r["cpu_ns"]["traced"] / r["cpu_ns"]["bare"] for r in rs)
        bare = statistics.median(r["median_ns"]["bare"] for r in rs)
        print(
            f"| {CASES[case][1]} | {_us(bare)}{' /batch' if per > 1 else ''} "
            f"| {added / US / per:+.1f} µs{'/call' if per > 1 else ''} "
            f"| {statistics.median(ratios):.3f} ({min(ratios):.3f}–{max(ratios):.3f}) "
            f"| {cpu_added / US / per:+.1f} µs | {cpu_ratio:.3f} | {_control(controls)} "
            f"| {_control(cpu_controls)} |"
        )
        if case == "trace_decorator":
            trace_cpu = cpu_added
    if trace_cpu is not None:
        _trace_target(trace_cpu)
    print(
        "\nThe garbage collector on the calling thread (medians above leave out the blocks "
        "a full pass fell in; the mean does not): passes per 1,000 calls by generation, "
        "time per call, and the mean latency added\n"
    )
    print(
        "| case | bare: gen 0/1/2 | traced: gen 0/1/2 | GC per call, bare → traced "
        "| mean added |\n|---|---|---|---|---|"
    )
    for case in base["cases"]:
        rs = [r[case] for r in results]

        def gens(series: str, rs: list[Any] = rs) -> str:
            per = [statistics.median(r["gc"][series]["per_1000"][g] for r in rs) for g in range(3)]
            return " / ".join(f"{x:.1f}" for x in per)

        gc_ns = {k: statistics.median(r["gc"][k]["ns"] for r in rs) for k in ("bare", "traced")}
        mean = statistics.median(r["mean_ns"]["traced"] - r["mean_ns"]["bare"] for r in rs)
        per = peers.BATCH if case == "openai_async" else 1
        print(
            f"| {CASES[case][1]} | {gens('bare')} | {gens('traced')} "
            f"| {gc_ns['bare'] / US / per:.1f} → {gc_ns['traced'] / US / per:.1f} µs "
            f"| {mean / US / per:+.1f} µs |"
        )
    return 0


HEADER = (
    "| case | bare | tracekit added | ratio (range) | caller CPU added | CPU ratio "
    "| control: bare/bare (range) | control CPU: bare/bare (range) |\n"
    "|---|---|---|---|---|---|---|---|"
)


def _trace_target(cpu_added_ns: float) -> None:
    """The `@trace` case has a target of its own (its ratio to a bare `x + 1` means
    nothing): the caller CPU it adds."""
    verdict = "PASS" if cpu_added_ns / US <= TARGET_TRACE_US else "MISS"
    print(
        f"\n@trace on a trivial function: {cpu_added_ns / US:+.1f} µs caller CPU "
        f"(target ≤ {TARGET_TRACE_US:.0f} µs): {verdict}"
    )


if __name__ == "__main__":
    sys.exit(main())
