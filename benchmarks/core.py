"""tracekit core benchmarks: span overhead, export throughput, memory, import cost.

Run them all (about two minutes on two cores):

    .venv/bin/python benchmarks/core.py

Every measurement runs in a fresh interpreter (tracing is process-wide state)
whose `TRACEKIT_TRACKING_URI` points at a temporary directory. The figures are
printed as a Markdown table at the end; see benchmarks/README.md for what each
one means. Only the standard library and tracekit are needed.

Options: `--quick` (fewer, shorter rounds: a smoke run), `--only SUBSTRING`
(run the measurements whose name contains it), `--verbose` (show the
children's stderr, e.g. tracekit's own warnings).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import (
    emit,
    print_report,
    rss_mb,
    run_child_in_tmp,
    run_header,
    status,
    worker_cpu_s,
)

US = 1_000.0  # ns per µs

# Targets (see README.md).
TARGET_SPAN_US = 15.0
TARGET_OFF_US = 1.0
TARGET_SPANS_PER_S = 30_000.0
TARGET_IMPORT_MS = 50.0
TARGET_PLATEAU_MB = 5.0

SDK_MODULES = ("openai", "anthropic", "google.genai", "langchain_core")
HTTP_MODULES = ("httpx", "requests", "urllib3", "aiohttp")


# ---------------------------------------------------------------------------
# helpers used in the children
# ---------------------------------------------------------------------------


def store_contents(directory: str) -> tuple[int, int, int]:
    """(trace lines, spans, bytes) in every *.jsonl file under `directory`."""
    lines = spans = size = 0
    for path in Path(directory).glob("*.jsonl"):
        size += path.stat().st_size
        with path.open("rb") as f:
            for raw in f:
                lines += 1
                spans += len(json.loads(raw)["spans"])
    return lines, spans, size


# ---------------------------------------------------------------------------
# 1. per-span overhead
# ---------------------------------------------------------------------------


def _workloads(mode: str) -> tuple[Callable[[int], None], Callable[[int], None], int]:
    """(bare loop, traced loop, spans per iteration) for a mode."""
    import tracekit

    def bare_leaf(x: Any) -> Any:
        return x

    def bare_outer(x: Any) -> Any:
        return bare_leaf(x)

    if mode == "trace":

        @tracekit.trace
        def leaf(x: Any) -> Any:
            return x

        def bare(n: int) -> None:
            f = bare_leaf
            for _ in range(n):
                f(1)

        def traced(n: int) -> None:
            f = leaf
            for _ in range(n):
                f(1)

        return bare, traced, 1

    if mode == "nested":

        @tracekit.trace
        def inner(x: Any) -> Any:
            return x

        @tracekit.trace
        def outer(x: Any) -> Any:
            return inner(x)

        def bare(n: int) -> None:
            f = bare_outer
            for _ in range(n):
                f(1)

        def traced(n: int) -> None:
            f = outer
            for _ in range(n):
                f(1)

        return bare, traced, 2

    if mode == "start_span":
        start_span = tracekit.start_span

        def bare(n: int) -> None:
            f = bare_leaf
            for _ in range(n):
                f(1)

        def traced(n: int) -> None:
            f = bare_leaf
            for _ in range(n):
                with start_span("f"):
                    f(1)

        return bare, traced, 1

    raise SystemExit(f"unknown mode {mode!r}")


def child_overhead(mode: str, calls: int, rounds: int, worker: str) -> None:
    """Median ns per span added by tracing, over `rounds` rounds of `calls` calls."""
    import tracekit

    if worker == "idle":
        # Diagnostic: the worker never wakes during a round, so the figure is
        # the caller's hot path alone (the full queue drops the oldest traces).
        tracekit.configure(export_interval=3600.0, export_batch_spans=10**9)
    bare, traced, spans_per_call = _workloads(mode)
    traced(2_000)  # warm up: load the config, start the worker
    tracekit.flush(60)

    per_span: list[float] = []
    cpu_per_span: list[float] = []
    worker_share: list[float] = []
    bare_ns: list[float] = []
    for _ in range(rounds):
        if worker != "idle":
            tracekit.flush(60)  # each round starts with an empty queue
        gc.collect()
        t0 = time.perf_counter_ns()
        bare(calls)
        t1 = time.perf_counter_ns()
        c1, w1 = time.thread_time_ns(), worker_cpu_s()
        t2 = time.perf_counter_ns()
        traced(calls)
        t3 = time.perf_counter_ns()
        c2, w2 = time.thread_time_ns(), worker_cpu_s()
        spans = calls * spans_per_call
        bare_ns.append((t1 - t0) / calls)
        per_span.append(((t3 - t2) - (t1 - t0)) / spans)
        # CPU of the calling thread (the hot path itself, GIL waits excluded),
        # less the bare loop's time.
        cpu_per_span.append(((c2 - c1) - (t1 - t0)) / spans)
        worker_share.append((w2 - w1) * 1e9 / max(1, t3 - t2))
    ok = tracekit.flush(120)
    emit(
        {
            "per_span_ns": statistics.median(per_span),
            "min_ns": min(per_span),
            "max_ns": max(per_span),
            "cpu_per_span_ns": statistics.median(cpu_per_span),
            "worker_busy": statistics.median(worker_share),
            "bare_ns": statistics.median(bare_ns),
            "rounds": rounds,
            "calls": calls,
            "spans_per_call": spans_per_call,
            "flushed": ok,
            "stats": tracekit.get_stats(),
        }
    )


# ---------------------------------------------------------------------------
# 2. export throughput to the file store
# ---------------------------------------------------------------------------


def _trace_tree(spans_per_trace: int) -> Callable[[int], Any]:
    import tracekit

    @tracekit.trace(span_type="TOOL")
    def step(i: int, query: str) -> dict[str, Any]:
        return {"i": i, "answer": query.upper()}

    @tracekit.trace(span_type="CHAIN")
    def handle(i: int) -> str:
        for j in range(spans_per_trace - 1):
            step(j, f"question {i}")
        return "done"

    return handle


def child_throughput(spans_total: int, spans_per_trace: int, worker: str) -> None:
    """Spans/s serialized and written to the file store."""
    import tracekit
    from tracekit.exporters.file import FileExporter

    class GatedFileExporter(FileExporter):
        """The file store, whose first export() waits until the gate opens."""

        def __init__(self, directory: str) -> None:
            super().__init__(directory)
            self.gate = threading.Event()
            self.first_batch_spans: int | None = None

        def export(self, records: Any) -> Any:
            if self.first_batch_spans is None:
                self.first_batch_spans = sum(len(r["spans"]) for r in records)
                self.gate.wait()
            return super().export(records)

    store = os.environ["TRACEKIT_TRACKING_URI"]
    traces = spans_total // spans_per_trace
    created = traces * spans_per_trace
    # A queue long enough that nothing is dropped: we measure throughput.
    gated = GatedFileExporter(store)
    if worker == "concurrent":
        tracekit.configure(max_queued_spans=created + 1)
    else:
        # The worker serializes its first batch, then waits in export() while
        # the rest are created; once the gate opens it drains the queue alone.
        tracekit.configure(tracking_uri=[], exporter=gated, max_queued_spans=created + 1)
    handle = _trace_tree(spans_per_trace)
    t0 = time.perf_counter()
    for i in range(traces):
        handle(i)
    t1 = time.perf_counter()
    cpu1 = worker_cpu_s()
    written_before_flush = store_contents(store)[1]
    gated.gate.set()
    ok = tracekit.flush(300)
    t2 = time.perf_counter()
    cpu2 = worker_cpu_s()
    lines, spans, size = store_contents(store)
    if worker == "concurrent":
        seconds, measured, cpu = t2 - t0, created, cpu2
    else:
        seconds, cpu = t2 - t1, cpu2 - cpu1
        measured = created - (gated.first_batch_spans or 0)
    emit(
        {
            "created_spans": created,
            "created_traces": traces,
            "create_s": t1 - t0,
            "flush_s": t2 - t1,
            "measured_spans": measured,
            "seconds": seconds,
            "spans_per_s": measured / seconds,
            "worker_cpu_s": cpu,
            "spans_per_worker_cpu_s": measured / cpu if cpu else None,
            "written_before_flush": written_before_flush,
            "lines": lines,
            "spans": spans,
            "bytes": size,
            "flushed": ok,
            "stats": tracekit.get_stats(),
        }
    )


# ---------------------------------------------------------------------------
# 3. memory while the exporter is stalled
# ---------------------------------------------------------------------------


def child_memory(traces: int, spans_per_trace: int, checkpoints: list[int]) -> None:
    import tracekit
    from tracekit.exporters import SUCCESS, BaseExporter

    class StalledExporter(BaseExporter):
        """export() blocks until released: a destination that hangs."""

        def __init__(self) -> None:
            self.release = threading.Event()
            self.entered = threading.Event()
            self.traces = 0
            self.spans = 0

        def export(self, records: Any) -> Any:
            self.entered.set()
            self.release.wait()
            self.traces += len(records)
            self.spans += sum(len(r["spans"]) for r in records)
            return SUCCESS

    exporter = StalledExporter()
    tracekit.configure(exporter=exporter)
    handle = _trace_tree(spans_per_trace)
    handle(-1)  # warm up: the worker starts, takes this trace and blocks
    tracekit.flush(0)  # wake the worker now rather than after the interval
    exporter.entered.wait(10)
    gc.collect()
    before = rss_mb()
    points: list[tuple[int, float, int]] = []
    for i in range(traces):
        handle(i)
        done = (i + 1) * spans_per_trace
        if done in checkpoints:
            points.append((done, rss_mb(), tracekit.get_stats().get("queue_full", 0)))
    stats = tracekit.get_stats()
    exporter.release.set()
    ok = tracekit.flush(120)
    created = (traces + 1) * spans_per_trace
    dropped = tracekit.get_stats().get("queue_full", 0)
    emit(
        {
            "before_mb": before,
            "points": points,
            "after_mb": rss_mb(),
            "stats_stalled": stats,
            "created_traces": traces + 1,
            "created_spans": created,
            "exported_traces": exporter.traces,
            "exported_spans": exporter.spans,
            "dropped_traces": dropped,
            "flushed": ok,
        }
    )


# ---------------------------------------------------------------------------
# 4. import cost and import-time side effects
# ---------------------------------------------------------------------------


def child_import_checks() -> None:
    """Run in a fresh interpreter whose cwd and store are empty temp dirs."""
    before = set(os.listdir("."))
    import tracekit  # noqa: F401

    store = os.environ["TRACEKIT_TRACKING_URI"]

    def loaded(name: str) -> bool:
        return name in sys.modules

    emit(
        {
            "sdks": [m for m in SDK_MODULES if loaded(m)],
            "http": [m for m in HTTP_MODULES if loaded(m)],
            "threads": threading.active_count(),
            "store_created": os.path.exists(store),
            "new_files_in_cwd": sorted(set(os.listdir(".")) - before),
            "wrapt_loaded": loaded("wrapt"),
            "modules_added": len([m for m in sys.modules if m.startswith("tracekit")]),
        }
    )


def measure_import(runs: int, cwd: str, env: dict[str, str]) -> dict[str, Any]:
    """Median wall time of `python -c "import tracekit"` and of `python -c pass`."""

    def wall(code: str, *flags: str) -> tuple[float, str]:
        t0 = time.perf_counter()
        done = subprocess.run(
            [sys.executable, *flags, "-c", code],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return (time.perf_counter() - t0) * 1000.0, done.stderr

    # Warm the OS caches and write the bytecode caches once (into a private
    # prefix: the source tree is left alone), as an installed package has them.
    wall("pass")
    wall("import tracekit")
    bare: list[float] = []
    imported: list[float] = []
    for _ in range(runs):  # interleaved, so drift hits both alike
        bare.append(wall("pass")[0])
        imported.append(wall("import tracekit")[0])
    cumulative: list[float] = []
    self_times: dict[str, list[int]] = {}
    for _ in range(max(3, runs // 4)):
        stderr = wall("import tracekit", "-X", "importtime")[1]
        in_tracekit = False
        rows = []
        for line in stderr.splitlines():
            if not line.startswith("import time:") or "|" not in line:
                continue
            parts = line[len("import time:") :].split("|")
            try:
                own, cum = int(parts[0]), int(parts[1])
            except ValueError:
                continue  # the header line
            rows.append((parts[2][1:].rstrip(), own, cum))  # keep the nesting indent
        # The rows from the last top-level import before "tracekit" up to it
        # are what `import tracekit` pulled in (importtime lists children first).
        start = 0
        for index, (name, _own, cum) in enumerate(rows):
            if name.strip() == "tracekit" and not name.startswith(" "):
                cumulative.append(cum / 1000.0)
                for child, own, _ in rows[start : index + 1]:
                    self_times.setdefault(child, []).append(own)
                in_tracekit = True
                break
            if not name.startswith(" "):
                start = index + 1
        if not in_tracekit:
            cumulative.append(float("nan"))
    heaviest = sorted(
        ((statistics.median(v) / 1000.0, k) for k, v in self_times.items()), reverse=True
    )[:8]
    return {
        "bare_ms": statistics.median(bare),
        "import_ms": statistics.median(imported),
        "delta_ms": statistics.median(imported) - statistics.median(bare),
        "importtime_ms": statistics.median(cumulative),
        "heaviest": heaviest,
        "runs": runs,
    }


# ---------------------------------------------------------------------------
# the parent: run each child in a fresh interpreter, print the table
# ---------------------------------------------------------------------------


def fmt_stats(stats: dict[str, int]) -> str:
    shown = {k: v for k, v in stats.items() if v}
    return ", ".join(f"{k}={v:,}" for k, v in shown.items()) or "no drops"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--only", default="", help="run measurements whose name contains this")
    parser.add_argument("--verbose", action="store_true", help="show the children's stderr")
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        kind, *rest = args.child
        if kind == "overhead":
            child_overhead(rest[0], int(rest[1]), int(rest[2]), rest[3])
        elif kind == "throughput":
            child_throughput(int(rest[0]), int(rest[1]), rest[2])
        elif kind == "memory":
            child_memory(int(rest[0]), int(rest[1]), [int(x) for x in rest[2].split(",")])
        elif kind == "import_checks":
            child_import_checks()
        else:
            raise SystemExit(f"unknown child {kind!r}")
        return 0

    quick = args.quick
    calls = 20_000 if quick else 200_000
    rounds = 3 if quick else 5
    spans_total = 20_000 if quick else 100_000
    mem_traces = 10_000  # fast, and it must pass the queue bound to show a plateau
    import_runs = 5 if quick else 20

    rows: list[tuple[str, str, str, str]] = []
    notes: list[str] = []
    failures: list[str] = []

    def wanted(name: str) -> bool:
        return args.only in name

    def progress(name: str) -> None:
        print(f"running {name} ...", flush=True)

    started = time.perf_counter()
    load = os.getloadavg()  # other work on the machine skews every figure

    # 1. overhead ------------------------------------------------------------
    labels = {
        "trace": "`@trace` on `f(x)`",
        "nested": "`@trace` calling `@trace`",
        "start_span": "`with start_span()`",
    }
    settings = [
        ("on", {}, "worker"),
        ("worker idle", {}, "idle"),
        ("TRACEKIT_ENABLED=false", {"TRACEKIT_ENABLED": "false"}, "worker"),
        ("TRACEKIT_SAMPLING_RATIO=0", {"TRACEKIT_SAMPLING_RATIO": "0"}, "worker"),
    ]
    for setting, env, worker in settings:
        for mode in ("trace", "nested", "start_span"):
            if worker == "idle" and mode != "trace":
                continue
            name = f"overhead {mode} {setting}"
            if not wanted(name):
                continue
            progress(name)
            # Nested iterations make two spans: half the calls, same span count.
            n = calls // 2 if mode == "nested" else calls
            off = setting != "on" and worker != "idle"
            r = run_child_in_tmp(
                __file__,
                ["overhead", mode, str(n), str(rounds), worker],
                env_extra=env,
                verbose=args.verbose,
            )
            us = r["per_span_ns"] / US
            target = TARGET_OFF_US if off else TARGET_SPAN_US
            detail = (
                f"median of {r['rounds']} rounds × {r['calls'] * r['spans_per_call']:,} spans "
                f"(range {r['min_ns'] / US:.2f}–{r['max_ns'] / US:.2f} µs); caller CPU "
                f"{r['cpu_per_span_ns'] / US:.2f} µs/span, export worker busy "
                f"{r['worker_busy']:.0%} of the time; bare call {r['bare_ns']:.0f} ns; "
                f"{fmt_stats(r['stats'])}"
            )
            goal = "(diagnostic)" if worker == "idle" else f"≤ {target:g} µs {status(us <= target)}"
            rows.append((f"{labels[mode]}, {setting}", f"{us:.2f} µs/span", goal, detail))

    # 2. throughput ------------------------------------------------------------
    for worker, label in (
        ("concurrent", "export throughput, end to end"),
        ("worker-only", "export throughput, worker only"),
    ):
        name = f"throughput {worker}"
        if not wanted(name):
            continue
        progress(name)
        r = run_child_in_tmp(
            __file__, ["throughput", str(spans_total), "10", worker], verbose=args.verbose
        )
        lost = r["created_spans"] - r["spans"]
        complete = lost == 0 and r["lines"] == r["created_traces"] and r["flushed"]
        if not complete:
            failures.append(
                f"{label}: created {r['created_spans']:,} spans in {r['created_traces']:,} "
                f"traces, the files hold {r['spans']:,} spans in {r['lines']:,} lines"
            )
        cpu = r["spans_per_worker_cpu_s"] or 0.0
        if worker == "concurrent":
            how = (
                f"{r['created_spans']:,} spans in traces of 10 created in {r['create_s']:.2f} s "
                f"({r['written_before_flush']:,} written meanwhile), flush() returned "
                f"{r['flush_s']:.2f} s later"
            )
        else:
            how = (
                f"{r['created_spans']:,} spans queued while the exporter was held, then "
                f"{r['measured_spans']:,} serialized and all written by the worker alone "
                f"in {r['flush_s']:.2f} s"
            )
        detail = (
            f"{how}; worker CPU {r['worker_cpu_s']:.2f} s "
            f"(= {cpu:,.0f} spans per CPU-second); "
            f"{r['bytes'] / r['created_spans']:.0f} bytes/span on disk; "
            f"files hold {r['spans']:,}/{r['created_spans']:,} spans: "
            f"{'complete' if complete else 'MISMATCH'}; {fmt_stats(r['stats'])}"
        )
        sps = r["spans_per_s"]
        rows.append(
            (
                label,
                f"{sps:,.0f} spans/s",
                f"≥ {TARGET_SPANS_PER_S:,.0f} spans/s {status(sps >= TARGET_SPANS_PER_S)}"
                + ("" if complete else " DATA LOST"),
                detail,
            )
        )

    # 3. memory ----------------------------------------------------------------
    if wanted("memory stalled"):
        progress("memory stalled")
        total = mem_traces * 10
        checkpoints = sorted({total // 10, total // 5, total // 2, total * 3 // 4, total})
        r = run_child_in_tmp(
            __file__,
            ["memory", str(mem_traces), "10", ",".join(map(str, checkpoints))],
            verbose=args.verbose,
        )
        before = r["before_mb"]
        points = {n: mb for n, mb, _ in r["points"]}
        half, full = points[total // 2], points[total]
        plateau = full - half
        accounted = r["exported_traces"] + r["dropped_traces"] == r["created_traces"]
        if not accounted:
            failures.append(
                f"memory: {r['created_traces']:,} traces created, {r['exported_traces']:,} "
                f"exported + {r['dropped_traces']:,} counted as dropped"
            )
        progression = ", ".join(f"{n // 1000}k: +{mb - before:.1f}" for n, mb in points.items())
        detail = (
            f"RSS {before:.1f} MB before; growth in MB after N spans: {progression}; "
            f"get_stats() while stalled: {fmt_stats(r['stats_stalled'])}; after release: "
            f"{r['exported_traces']:,} traces exported + {r['dropped_traces']:,} dropped "
            f"(counted) of {r['created_traces']:,}: "
            f"{'all accounted for' if accounted else 'UNACCOUNTED LOSS'}"
        )
        rows.append(
            (
                f"RSS, exporter stalled, {total // 1000}k spans",
                f"+{full - before:.1f} MB ({half - before:+.1f} MB at {total // 2000}k)",
                f"bounded: +≤ {TARGET_PLATEAU_MB:g} MB from {total // 2000}k to "
                f"{total // 1000}k {status(plateau <= TARGET_PLATEAU_MB)}",
                detail,
            )
        )

    # 4. import ------------------------------------------------------------------
    if wanted("import"):
        progress("import")
        with tempfile.TemporaryDirectory(prefix="tracekit-bench-") as tmp:
            env = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("TRACEKIT_", "MLFLOW_", "OTEL_"))
                and k != "PYTHONDONTWRITEBYTECODE"
            }
            env["TRACEKIT_TRACKING_URI"] = os.path.join(tmp, "store")
            env["PYTHONPYCACHEPREFIX"] = os.path.join(tmp, "pycache")
            r = measure_import(import_runs, tmp, env)
        heaviest = ", ".join(f"{name.strip()} {ms:.1f}" for ms, name in r["heaviest"][:5])
        rows.append(
            (
                "`import tracekit`",
                f"{r['delta_ms']:.1f} ms",
                f"≤ {TARGET_IMPORT_MS:g} ms {status(r['delta_ms'] <= TARGET_IMPORT_MS)}",
                f"median of {r['runs']} runs: {r['import_ms']:.1f} ms vs {r['bare_ms']:.1f} ms "
                f"for `-c pass`; -X importtime cumulative {r['importtime_ms']:.1f} ms "
                f"(largest self times, ms: {heaviest})",
            )
        )
        c = run_child_in_tmp(__file__, ["import_checks"], verbose=args.verbose)
        checks = [
            (
                "no SDK imported",
                not c["sdks"],
                ", ".join(c["sdks"]) or "none of " + "/".join(SDK_MODULES),
            ),
            (
                "no HTTP library imported",
                not c["http"],
                ", ".join(c["http"]) or "none of " + "/".join(HTTP_MODULES),
            ),
            ("no thread started", c["threads"] == 1, f"threading.active_count() == {c['threads']}"),
            (
                "no file created",
                not c["store_created"] and not c["new_files_in_cwd"],
                f"store dir exists: {c['store_created']}; "
                f"new in cwd: {c['new_files_in_cwd'] or 'nothing'}",
            ),
        ]
        for label, ok, detail in checks:
            rows.append(
                (
                    f"after `import tracekit`: {label}",
                    "yes" if ok else "NO",
                    "required " + ("PASS" if ok else "FAIL"),
                    detail,
                )
            )
            if not ok:
                failures.append(f"import check failed: {label} ({detail})")
        notes.append(
            f"wrapt loaded at import: {c['wrapt_loaded']} (it is needed at the first span)"
        )

    # the table ----------------------------------------------------------------
    title = run_header("tracekit core benchmarks", quick, started, load[0])
    return print_report(title, rows, notes, failures)


if __name__ == "__main__":
    sys.exit(main())
