"""tracekit remote-export benchmarks: throughput to a real MLflow server, and the
traced call's latency while the destination is stalled or down.

Run them all (about three minutes on two cores, more the first time, when the
MLflow virtualenv is built):

    .venv/bin/python benchmarks/export.py

Every measurement runs in a fresh interpreter (tracing is process-wide state)
whose working directory is a new temporary directory. The parent runs a real
`mlflow server` (from `tests/mlflow_server.py`, mlflow in its own virtualenv)
and the fault-injecting proxies (`tests/fault_proxy.py`) the children send to.
The figures are printed as a Markdown table at the end; see
benchmarks/README.md for what each one means. The exit status is 1 only when
a correctness check fails (traces missing on the server, in the store or in
the spool, or unaccounted for), not when a target is missed.

Options: `--quick` (fewer traces, shorter windows: a smoke run), `--only
SUBSTRING` (run the measurements whose name contains it: `mlflow`, `proxy`,
`file`, `latency`), `--verbose` (show the children's stderr), `--profile`
(cProfile of the export worker while it sends to the MLflow server).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import child_env, emit, print_report, run_header, status, worker_cpu_s
from _common import run_child as run_child_results

REPO_ROOT = Path(__file__).resolve().parent.parent
US = 1_000.0  # ns per µs

# Targets (see README.md).
TARGET_MLFLOW_TRACES_PER_S = 200.0  # 1,000 spans/s in traces of 5
TARGET_FILE_TRACES_PER_S = 6_000.0  # core.py's 30,000 spans/s, in traces of 5
TARGET_ADDED_US = 3.0  # a stalled or refused destination adds at most
TARGET_ADDED_PCT = 3.0  # ... max(3 µs, 3 %) to the traced call's median
SHUTDOWN_TIMEOUT_S = 2.0
EXPORT_TIMEOUT_S = 2.0
EXIT_SLACK_S = 0.5  # the interpreter's own teardown on top of the shutdown timeout
PROXY_TRACES = 500  # traces sent through the proxy (at most)
SPOOL_WAIT_S = 30.0  # how long a latency child waits for the breaker to open and spool

SPANS_PER_TRACE = 5  # CHAIN root, 3 TOOL children, 1 CHAT_MODEL child
USAGE = {"input_tokens": 12, "output_tokens": 5, "total_tokens": 17}
EXPECTED_TYPES = {"CHAIN": 1, "TOOL": 3, "CHAT_MODEL": 1}
DROP_REASONS = (
    "queue_full",
    "not_exported_at_exit",
    "spool_full",
    "export_failed",
    "spans_per_trace",
    "in_flight_traces",
)


# ---------------------------------------------------------------------------
# helpers used in the children
# ---------------------------------------------------------------------------


def instrument_http() -> dict[str, list[float]] | None:
    """Count and time every request the remote exporter makes, by path.

    Wraps `HttpClient.request` (a private class: if it moved, no figures).
    Returns {path: [requests, seconds, bytes sent, non-2xx or raised]}.
    """
    try:
        from tracekit.exporters import _http
    except ImportError:
        return None
    seen: dict[str, list[float]] = {}
    original = _http.HttpClient.request

    def request(
        self: Any, method: str, path: str, body: bytes | None = None, *a: Any, **k: Any
    ) -> Any:
        t0 = time.perf_counter()
        failed = 1
        try:
            response = original(self, method, path, body, *a, **k)
            failed = 0 if 200 <= response.status < 300 else 1
            return response
        finally:
            entry = seen.setdefault(f"{method} {path.split('?')[0]}", [0, 0.0, 0, 0])
            entry[0] += 1
            entry[1] += time.perf_counter() - t0
            entry[2] += len(body or b"")
            entry[3] += failed

    _http.HttpClient.request = request  # type: ignore[method-assign]
    return seen


def _workload() -> Callable[[int], str]:
    """One trace of 5 spans per call: a CHAIN root, 3 TOOL children and a chat span."""
    import tracekit

    @tracekit.trace(span_type="TOOL")
    def lookup(i: int, query: str) -> dict[str, Any]:
        return {"i": i, "answer": query.upper()}

    @tracekit.trace(span_type="CHAIN")
    def handle(i: int) -> str:
        for j in range(3):
            lookup(j, f"question {i}")
        messages = [{"role": "user", "content": f"question {i}"}]
        with tracekit.start_span(
            "chat fake-mini",
            span_type="CHAT_MODEL",
            inputs={"model": "fake-mini", "messages": messages},
            attributes={"gen_ai.request.model": "fake-mini", "gen_ai.provider.name": "fake"},
        ) as span:
            span.set_outputs({"role": "assistant", "content": "an answer"})
            span.set_token_usage(USAGE)
        return "done"

    return handle


def child_throughput(spec: dict[str, Any]) -> None:
    """N traces created as fast as possible, then flush(): traces/s end to end."""
    import tracekit

    http = instrument_http() if spec["remote"] else None
    traces = spec["traces"]
    options: dict[str, Any] = {"max_queued_spans": traces * SPANS_PER_TRACE + 1}
    if spec["remote"]:
        options.update(
            tracking_uri=spec["uri"], experiment_id=spec["experiment_id"], spool_dir="spool"
        )
    tracekit.configure(**options)  # the file store: the default destination, ./.tracekit

    profile = None
    if spec.get("profile"):
        import cProfile

        from tracekit import _pipeline

        # Wall clock: where the worker's time goes, waits for the server included.
        profile = cProfile.Profile(time.perf_counter)
        original_export = _pipeline.ExportPipeline._export

        def profiled_export(self: Any, batch: Any) -> None:
            profile.enable()  # type: ignore[union-attr]
            try:
                original_export(self, batch)
            finally:
                profile.disable()  # type: ignore[union-attr]

        _pipeline.ExportPipeline._export = profiled_export  # type: ignore[method-assign]

    handle = _workload()
    t0 = time.perf_counter()
    handle(0)  # the first finished trace builds the exporter, on this thread
    t_first = time.perf_counter()
    for i in range(1, traces):
        handle(i)
    t1 = time.perf_counter()
    ok = tracekit.flush(spec["flush_timeout"])
    t2 = time.perf_counter()
    result: dict[str, Any] = {
        "traces": traces,
        "create_s": t1 - t0,
        "first_trace_ms": (t_first - t0) * 1000.0,
        "flush_s": t2 - t1,
        "seconds": t2 - t0,
        "traces_per_s": traces / (t2 - t0),
        "worker_cpu_s": worker_cpu_s(),
        "flushed": ok,
        "http": http,
        "stats": tracekit.get_stats(),
        "tracekit_file": tracekit.__file__,
    }
    if profile is not None:
        import io
        import pstats

        texts = {}
        for key in ("cumulative", "tottime"):
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats(key).print_stats(22)
            texts[key] = out.getvalue()
        result["profile"] = texts
    emit(result)


def _summary(samples: Any) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ns": float(statistics.median(ordered)),
        "mean_ns": float(statistics.fmean(ordered)),
        "p99_ns": float(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]),
        "calls": len(ordered),
    }


def child_latency(spec: dict[str, Any]) -> None:
    """Per-call latency of traced functions, then a normal interpreter exit."""
    import atexit
    from array import array

    import tracekit

    # atexit runs the last registered first. Registered before tracekit's own
    # hook (configure() registers it), this runs after tracekit's exit flush.
    marks: dict[str, float] = {}

    def after_tracekit_exit() -> None:
        done = time.monotonic()
        emit(
            {
                "exit": True,
                "tracekit_exit_s": done - marks.get("exit_started", done),
                "stats": tracekit.get_stats(),
                "threads": [t.name for t in threading.enumerate()],
            }
        )

    atexit.register(after_tracekit_exit)
    options: dict[str, Any] = {"spool_dir": "spool"}
    if spec["uri"]:
        options["tracking_uri"] = spec["uri"]
        options["experiment_id"] = "0"
    tracekit.configure(**options)
    atexit.register(lambda: marks.setdefault("exit_started", time.monotonic()))

    def bare(x: Any) -> Any:
        return x

    @tracekit.trace
    def noop(x: Any) -> Any:
        return x

    @tracekit.trace
    def sleepy(x: Any) -> Any:
        time.sleep(0.001)
        return x

    clock = time.perf_counter_ns
    counts = {"created": 0}

    def run_for(fn: Callable[[Any], Any], seconds: float, traced: bool) -> None:
        stop_at = clock() + int(seconds * 1e9)
        n = 0
        while clock() < stop_at:
            fn(1)
            n += 1
        if traced:
            counts["created"] += n

    def measure(fn: Callable[[Any], Any], seconds: float, traced: bool) -> dict[str, float]:
        run_for(fn, spec["warmup_s"], traced)
        samples = array("q")
        append = samples.append
        c0 = time.thread_time_ns()
        end = clock() + int(seconds * 1e9)
        while True:
            start = clock()
            fn(1)
            stop = clock()
            append(stop - start)
            if stop >= end:
                break
        cpu = time.thread_time_ns() - c0
        summary = _summary(samples)
        summary["cpu_per_call_ns"] = cpu / len(samples)
        if traced:
            counts["created"] += len(samples)
        return summary

    window = spec["window_s"]
    results: dict[str, Any] = {"bare": measure(bare, spec["bare_s"], False)}
    phases: list[dict[str, Any]] = []
    t_start = time.monotonic()
    for phase in (1, 2):
        waited = 0.0
        if phase == 2 and spec["uri"]:
            # Phase 2 starts once the worker has given up on the destination
            # and spools: the breaker is open. Keep the traffic going meanwhile.
            t0 = time.monotonic()
            while (
                not tracekit.get_stats().get("spooled")
                and time.monotonic() - t0 < spec["spool_wait_s"]
            ):
                run_for(noop, 0.05, True)
            waited = time.monotonic() - t0
        started_at = time.monotonic() - t_start
        results[f"noop/{phase}"] = measure(noop, window, True)
        results[f"sleep/{phase}"] = measure(sleepy, window, True)
        phases.append(
            {
                "started_at_s": started_at,
                "waited_s": waited,
                "stats": tracekit.get_stats(),
            }
        )
    emit(
        {
            "results": results,
            "phases": phases,
            "created_traces": counts["created"],
            "stats": tracekit.get_stats(),
            "worker_cpu_s": worker_cpu_s(),
            "tracekit_file": tracekit.__file__,
            "main_done": time.monotonic(),
        }
    )


# ---------------------------------------------------------------------------
# the parent: fresh interpreters, the MLflow server and proxies, the table
# ---------------------------------------------------------------------------


def run_child(
    kind: str,
    spec: dict[str, Any],
    cwd: str,
    env_extra: dict[str, str],
    verbose: bool,
    timeout: float = 900.0,
) -> tuple[list[dict[str, Any]], float]:
    """Run one child; return its RESULT objects and the monotonic time it was gone."""
    results = run_child_results(
        __file__,
        [kind, json.dumps(spec)],
        env=child_env(env_extra),
        cwd=cwd,
        verbose=verbose,
        timeout=timeout,
    )
    return results, time.monotonic()


def fmt_stats(stats: dict[str, int]) -> str:
    shown = {k: v for k, v in stats.items() if v and not k.startswith("traces_")}
    return ", ".join(f"{k}={v:,}" for k, v in shown.items()) or "no drops"


def fmt_drops(stats: dict[str, int]) -> str:
    shown = {k: stats[k] for k in DROP_REASONS if stats.get(k)}
    return ", ".join(f"{k}={v:,}" for k, v in shown.items()) or "none"


def fmt_us(ns: float) -> str:
    return f"{ns / US:,.2f} µs" if ns < 100_000 else f"{ns / 1e6:,.3f} ms"


def fmt_http(http: dict[str, list[float]] | None, flush_s: float) -> str:
    if not http:
        return "requests not instrumented"
    parts = []
    for path, (n, seconds, sent, failed) in sorted(http.items()):
        parts.append(
            f"{int(n):,} × `{path}` ({seconds:.2f} s, {seconds / n * 1000:.1f} ms each, "
            f"{sent / n / 1024:.1f} KiB each" + (f", {int(failed)} failed" if failed else "") + ")"
        )
    waited = sum(v[1] for v in http.values())
    return (
        "worker's requests: "
        + "; ".join(parts)
        + f"; {waited:.2f} s waiting on the server in all"
        + (f" ({waited / flush_s:.0%} of the time from the end of creation to flush's return)")
    )


def root_input(spans: list[dict[str, Any]]) -> Any:
    root = next((s for s in spans if s.get("parent_id") is None), None)
    inputs = (root or {}).get("inputs")
    return inputs.get("i") if isinstance(inputs, dict) else None


def check_traces(traces: list[dict[str, Any]], n: int, type_key: str) -> list[str]:
    """Problems with what a destination holds: every trace 0..n-1 once, complete."""
    problems = []
    if len(traces) != n:
        problems.append(f"{len(traces):,} traces stored, {n:,} created")
    wrong_size = sum(1 for t in traces if len(t["spans"]) != SPANS_PER_TRACE)
    if wrong_size:
        problems.append(f"{wrong_size:,} traces without exactly {SPANS_PER_TRACE} spans")
    ids = Counter(root_input(t["spans"]) for t in traces)
    missing = n - len(set(ids) & set(range(n)))
    if missing:
        problems.append(f"{missing:,} of the created traces missing")
    duplicated = sum(c - 1 for c in ids.values() if c > 1)
    if duplicated:
        problems.append(f"{duplicated:,} traces stored twice")
    wrong_types = sum(
        1 for t in traces if dict(Counter(s.get(type_key) for s in t["spans"])) != EXPECTED_TYPES
    )
    if wrong_types:
        problems.append(f"{wrong_types:,} traces with other span types than {EXPECTED_TYPES}")
    return problems


def file_store_traces(directory: Path) -> list[dict[str, Any]]:
    traces = []
    for path in sorted(directory.glob("*.jsonl")):
        with path.open("rb") as f:
            traces.extend(json.loads(line) for line in f if line.strip())
    return traces


def spool_contents(directory: Path) -> tuple[int, int]:
    """(trace lines, files) held in a spool root, claimed files included."""
    lines = files = 0
    if not directory.exists():
        return 0, 0
    for path in directory.rglob("*"):
        name = path.name
        if not path.is_file() or name.startswith(".") or name == "destination.json":
            continue
        if name.endswith(".jsonl") or ".jsonl.claimed-" in name:
            files += 1
            with path.open("rb") as f:
                lines += sum(1 for line in f if line.strip())
    return lines, files


def processes_in_session(sid: int) -> list[str]:
    """Processes (pid and command) whose session id is `sid` (the server's, after stop)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[3]) != sid:  # field 6 of stat: session
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                command = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, ValueError, IndexError):
            continue
        found.append(f"{entry} {command[:80]}")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--only", default="", help="run measurements whose name contains this")
    parser.add_argument("--verbose", action="store_true", help="show the children's stderr")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the export worker (MLflow run)"
    )
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        kind, spec = args.child[0], json.loads(args.child[1])
        if kind == "throughput":
            child_throughput(spec)
        elif kind == "latency":
            child_latency(spec)
        else:
            raise SystemExit(f"unknown child {kind!r}")
        return 0

    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so the server and
    # proxies are stopped by the `finally` below rather than left running.
    def terminate(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    sys.path.insert(0, str(REPO_ROOT))
    from tests.fault_proxy import FaultProxy
    from tests.mlflow_server import (
        MLFLOW_REQUIREMENT,
        MlflowServer,
        MlflowUnavailable,
        create_experiment,
        mlflow_python,
        read_traces,
    )

    quick = args.quick
    traces = 300 if quick else 2_000
    rounds = 1 if quick else 3
    window_s = 1.0 if quick else 2.0
    warmup_s = 0.2
    bare_s = 0.3 if quick else 0.5

    rows: list[tuple[str, str, str, str]] = []
    notes: list[str] = []
    failures: list[str] = []
    orphans: list[str] = []

    def wanted(name: str) -> bool:
        return args.only in name

    def progress(name: str) -> None:
        print(f"running {name} ...", flush=True)

    started = time.perf_counter()
    load = os.getloadavg()  # other work on the machine skews every figure

    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tracekit-export-")))

        def new_dir(name: str) -> str:
            path = work / name
            path.mkdir()
            return str(path)

        server = None
        server_sid = 0
        python = None
        needs_server = wanted("throughput mlflow") or wanted("throughput mlflow proxy")
        if needs_server:
            progress("mlflow server")
            try:
                python = mlflow_python()
                server = MlflowServer(python, work / "mlflow").start()
                stack.callback(server.stop)
                proc = getattr(server, "_proc", None)
                server_sid = proc.pid if proc is not None else 0
            except (MlflowUnavailable, RuntimeError) as e:
                notes.append(f"MLflow measurements skipped: {e}")
                server = None

        def throughput_child(name: str, spec: dict[str, Any]) -> dict[str, Any]:
            progress(name)
            (r,), _ = run_child(
                "throughput", spec, new_dir(name.replace(" ", "-")), {}, args.verbose
            )
            return r

        # 1. throughput to the MLflow server -----------------------------------
        measured_from: set[str] = set()
        direct_http: dict[str, list[float]] = {}
        if server is not None and python is not None:
            # A fresh server's first span naming a model and provider costs it
            # seconds (MLflow looks up the provider's prices, a remote fetch
            # where there is no network): a few traces first, not measured.
            spec = {
                "remote": True,
                "uri": server.url,
                "experiment_id": create_experiment(server.url, f"bench-warmup-{time.time_ns()}"),
                "traces": 3,
                "flush_timeout": 120.0,
            }
            r = throughput_child("mlflow warm-up", spec)
            notes.append(
                f"Server warm-up (not measured): 3 traces took {r['seconds']:.2f} s to a fresh "
                "server; " + fmt_http(r["http"], r["flush_s"]).replace("worker's requests: ", "")
            )
            for via_proxy in (False, True):
                name = "throughput mlflow proxy" if via_proxy else "throughput mlflow"
                if not wanted(name):
                    continue
                proxy = None
                uri = server.url
                # The proxy adds tens of ms per request: fewer traces, for the counts.
                n = min(traces, PROXY_TRACES) if via_proxy else traces
                if via_proxy:
                    proxy = FaultProxy(server.url, mode="pass").start()
                    stack.callback(proxy.stop)
                    uri = proxy.url
                experiment = create_experiment(server.url, f"bench-{name}-{time.time_ns()}")
                spec = {
                    "remote": True,
                    "uri": uri,
                    "experiment_id": experiment,
                    "traces": n,
                    "flush_timeout": 600.0,
                    "profile": args.profile and not via_proxy,
                }
                r = throughput_child(name, spec)
                measured_from.add(r["tracekit_file"])
                if not via_proxy:
                    direct_http = r["http"] or {}
                t_read = time.perf_counter()
                stored = read_traces(python, server.url, experiment)
                read_s = time.perf_counter() - t_read
                problems = check_traces(stored, n, "span_type")
                usage_missing = sum(1 for t in stored if t.get("token_usage") != USAGE)
                if usage_missing:
                    problems.append(f"{usage_missing:,} traces without the token usage {USAGE}")
                if not r["flushed"]:
                    problems.append("flush() timed out")
                complete = not problems
                label = (
                    "export to the MLflow server through FaultProxy (pass)"
                    if via_proxy
                    else "export throughput to the MLflow server, end to end"
                )
                if not complete:
                    failures.append(f"{label}: " + "; ".join(problems))
                wire = ""
                if proxy is not None:
                    by_path = Counter(f"{m} {p}" for m, p, _ in proxy.requests)
                    wire = (
                        "the proxy saw "
                        + ", ".join(f"{n:,} × `{p}`" for p, n in sorted(by_path.items()))
                        + f" ({n / max(1, sum(by_path.values())):.2f} traces per request)"
                    )
                    added = [
                        (v[1] / v[0] - direct_http[k][1] / direct_http[k][0]) * 1000.0
                        for k, v in (r["http"] or {}).items()
                        if k in direct_http and v[0] and direct_http[k][0]
                    ]
                    if added:
                        wire += (
                            f", and adds {statistics.median(added):.0f} ms per request over the "
                            "direct run (it forwards each request on a new upstream connection)"
                        )
                    wire += "; "
                    proxy.stop()
                tps = r["traces_per_s"]
                detail = (
                    f"{n:,} traces of {SPANS_PER_TRACE} spans created in "
                    f"{r['create_s']:.2f} s (the first took {r['first_trace_ms']:.1f} ms: it "
                    f"starts the export worker, which builds the exporter), flush() returned "
                    f"{r['flush_s']:.2f} s later; {wire}{fmt_http(r['http'], r['flush_s'])}; "
                    f"export worker CPU {r['worker_cpu_s']:.2f} s "
                    f"({r['worker_cpu_s'] / n * 1000:.2f} ms/trace); read back with the "
                    f"MLflow client in {read_s:.1f} s: {len(stored):,}/{n:,} traces, "
                    + (
                        "all complete (5 spans, span types, token usage)"
                        if complete
                        else "; ".join(problems)
                    )
                    + f"; {fmt_stats(r['stats'])}"
                )
                target = (
                    "(diagnostic)"
                    if via_proxy
                    else f"≥ {TARGET_MLFLOW_TRACES_PER_S:,.0f} traces/s "
                    f"{status(tps >= TARGET_MLFLOW_TRACES_PER_S)}"
                )
                rows.append(
                    (
                        label,
                        f"{tps:,.0f} traces/s ({tps * SPANS_PER_TRACE:,.0f} spans/s)",
                        target + ("" if complete else " DATA LOST"),
                        detail,
                    )
                )
                if r.get("profile"):
                    notes.append(
                        "### cProfile of the export worker, wall clock (by cumulative time)\n\n"
                        "```\n" + r["profile"]["cumulative"].strip() + "\n```\n\n"
                        "### … by self time\n\n```\n" + r["profile"]["tottime"].strip() + "\n```"
                    )

        # 2. throughput to the file store ---------------------------------------
        if wanted("throughput file"):
            cwd_name = "throughput-file"
            spec = {"remote": False, "traces": traces, "flush_timeout": 600.0}
            progress("throughput file")
            (r,), _ = run_child("throughput", spec, new_dir(cwd_name), {}, args.verbose)
            measured_from.add(r["tracekit_file"])
            stored = file_store_traces(work / cwd_name / ".tracekit")
            problems = check_traces(stored, traces, "span_type")
            if not r["flushed"]:
                problems.append("flush() timed out")
            complete = not problems
            if not complete:
                failures.append("export throughput to the file store: " + "; ".join(problems))
            tps = r["traces_per_s"]
            rows.append(
                (
                    "export throughput to the file store, end to end",
                    f"{tps:,.0f} traces/s ({tps * SPANS_PER_TRACE:,.0f} spans/s)",
                    f"≥ {TARGET_FILE_TRACES_PER_S:,.0f} traces/s "
                    f"{status(tps >= TARGET_FILE_TRACES_PER_S)}"
                    + ("" if complete else " DATA LOST"),
                    f"the same {traces:,} traces, default destination (`./.tracekit` in a temp "
                    f"dir): created in {r['create_s']:.2f} s (first {r['first_trace_ms']:.1f} ms), "
                    f"flush() returned {r['flush_s']:.2f} s later; worker CPU "
                    f"{r['worker_cpu_s']:.2f} s; the store holds {len(stored):,}/{traces:,} "
                    + ("traces, all complete" if complete else "; ".join(problems))
                    + f"; {fmt_stats(r['stats'])}",
                )
            )

        # 3. latency with the destination stalled or refusing -------------------
        if wanted("latency"):
            upstream = server.url if server is not None else "http://127.0.0.1:9"
            stall = FaultProxy(upstream, mode="stall").start()
            stack.callback(stall.stop)
            refuse = FaultProxy(upstream, mode="refuse").start()
            stack.callback(refuse.stop)
            variants = {
                "file": ("", None),
                "stall": (stall.url, stall),
                "refuse": (refuse.url, refuse),
            }
            env = {
                "TRACEKIT_SHUTDOWN_TIMEOUT": f"{SHUTDOWN_TIMEOUT_S:g}",
                # configure() has no export_timeout argument: the variable it is.
                "TRACEKIT_EXPORT_TIMEOUT": f"{EXPORT_TIMEOUT_S:g}",
            }
            runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
            for round_no in range(rounds):
                for variant, (uri, proxy) in variants.items():  # interleaved: drift hits all
                    progress(f"latency {variant} (round {round_no + 1}/{rounds})")
                    cwd = new_dir(f"latency-{variant}-{round_no}")
                    seen_before = proxy.count() if proxy is not None else 0
                    spec = {
                        "uri": uri,
                        "window_s": window_s,
                        "warmup_s": warmup_s,
                        "bare_s": bare_s,
                        "spool_wait_s": SPOOL_WAIT_S,
                    }
                    results, gone = run_child("latency", spec, cwd, env, args.verbose)
                    main_result = next(x for x in results if not x.get("exit"))
                    measured_from.add(main_result["tracekit_file"])
                    exit_result = next((x for x in results if x.get("exit")), None)
                    on_disk, files = spool_contents(Path(cwd) / "spool")
                    main_result.update(
                        exit=exit_result,
                        exit_s=gone - main_result["main_done"],
                        spool_traces=on_disk,
                        spool_files=files,
                        requests=(proxy.count() - seen_before) if proxy is not None else 0,
                    )
                    runs[variant].append(main_result)
            latency_rows(runs, rows, failures, notes)
            stall.stop()
            refuse.stop()

    expected = str(REPO_ROOT / "src" / "tracekit" / "__init__.py")
    elsewhere = sorted(measured_from - {expected})
    if elsewhere:
        notes.append(f"The children imported tracekit from {', '.join(elsewhere)}, not {expected}.")

    # every process started here is gone (the server's session included)
    if server_sid:
        orphans = processes_in_session(server_sid)
        if orphans:
            failures.append("processes of the mlflow server still running: " + "; ".join(orphans))
        else:
            notes.append(
                f"After the run no process of the mlflow server's session ({server_sid}) is left."
            )

    # the table ----------------------------------------------------------------
    server = f"{MLFLOW_REQUIREMENT} server, " if server_sid else ""
    title = run_header("tracekit export benchmarks", quick, started, load[0], server)
    return print_report(title, rows, notes, failures)


def _median_of(runs: list[dict[str, Any]], fn: str, key: str = "median_ns") -> float:
    return float(statistics.median(r["results"][fn][key] for r in runs))


LATENCY_LABELS = {
    "file": "(a) file store",
    "stall": "(b) destination stalled",
    "refuse": "(c) destination refusing connections",
}
PHASES = {1: "phase 1 (first export attempts)", 2: "phase 2 (breaker open, spooling)"}


def latency_rows(
    runs: dict[str, list[dict[str, Any]]],
    rows: list[tuple[str, str, str, str]],
    failures: list[str],
    notes: list[str],
) -> None:
    functions = {
        "noop": "`@trace def f(x): return x`",
        "sleep": "`@trace` on `f(x)` sleeping 1 ms",
    }
    base_runs = runs["file"]
    for fn, fn_label in functions.items():
        for variant, variant_runs in runs.items():
            cells: list[str] = []
            details: list[str] = []
            ok = True
            for phase, phase_label in PHASES.items():
                key = f"{fn}/{phase}"
                med = _median_of(variant_runs, key)
                per_round = ", ".join(fmt_us(r["results"][key]["median_ns"]) for r in variant_runs)
                started = ", ".join(
                    f"{r['phases'][phase - 1]['started_at_s']:.1f}" for r in variant_runs
                )
                detail = (
                    f"{phase_label if variant != 'file' else f'window {phase}'}, starting "
                    f"{started} s in: median {fmt_us(med)} (per child: {per_round}), "
                    f"{statistics.median(r['results'][key]['calls'] for r in variant_runs):,.0f} "
                    f"calls, mean {fmt_us(_median_of(variant_runs, key, 'mean_ns'))}, p99 "
                    f"{fmt_us(_median_of(variant_runs, key, 'p99_ns'))}, caller CPU "
                    f"{fmt_us(_median_of(variant_runs, key, 'cpu_per_call_ns'))}/call"
                )
                if variant == "file":
                    cells.append(fmt_us(med))
                    details.append(detail)
                    continue
                base = _median_of(base_runs, key)
                # paired by round: the same round's file-store child is the baseline
                added = float(
                    statistics.median(
                        r["results"][key]["median_ns"] - b["results"][key]["median_ns"]
                        for r, b in zip(variant_runs, base_runs, strict=True)
                    )
                )
                limit = max(TARGET_ADDED_US * US, base * TARGET_ADDED_PCT / 100.0)
                ok = ok and added <= limit
                cells.append(f"{fmt_us(med)} ({added / US:+.2f} µs, {added / base:+.1%})")
                spooled = ", ".join(
                    f"{r['phases'][phase - 1]['stats'].get('spooled', 0):,}" for r in variant_runs
                )
                detail += (
                    f", added vs (a) {added / US:+.2f} µs; traces spooled by its end {spooled}"
                )
                details.append(detail)
            bare = _median_of(variant_runs, "bare")
            extra = f"bare call {fmt_us(bare)}"
            if variant != "file":
                waited = ", ".join(f"{r['phases'][1]['waited_s']:.1f}" for r in variant_runs)
                seen = ", ".join(str(r["requests"]) for r in variant_runs)
                extra += (
                    f"; phase 2 began after waiting {waited} s for the first spooled batch; "
                    f"requests that reached the proxy per child: {seen}"
                )
            rows.append(
                (
                    f"traced call, {fn_label}, {LATENCY_LABELS[variant]}",
                    " / ".join(cells),
                    "(baseline)"
                    if variant == "file"
                    else f"≤ +{TARGET_ADDED_US:g} µs or +{TARGET_ADDED_PCT:g} % {status(ok)}",
                    f"{len(variant_runs)} fresh interpreter(s); "
                    + "; ".join(details)
                    + f"; {extra}",
                )
            )

    limit_s = SHUTDOWN_TIMEOUT_S + EXIT_SLACK_S
    for variant in ("stall", "refuse", "file"):
        variant_runs = runs[variant]
        exits = [r["exit_s"] for r in variant_runs]
        in_tracekit = [(r["exit"] or {}).get("tracekit_exit_s", float("nan")) for r in variant_runs]
        worst = max(exits)
        threads = "; ".join(
            ",".join(sorted(set((r["exit"] or {}).get("threads", [])) - {"MainThread"})) or "none"
            for r in variant_runs
        )
        rows.append(
            (
                f"process exit, {LATENCY_LABELS[variant]}, TRACEKIT_SHUTDOWN_TIMEOUT=2",
                f"{worst:.2f} s (worst of {len(exits)})",
                f"≤ {limit_s:g} s {status(worst <= limit_s)}"
                if variant != "file"
                else "(reference)",
                "from the end of the script to the process being gone (interpreter start "
                f"not included): {', '.join(f'{x:.2f}' for x in exits)} s, of which "
                f"tracekit's exit hook {', '.join(f'{x:.2f}' for x in in_tracekit)} s; "
                f"threads left when the hook returned: {threads}",
            )
        )

    for variant in ("stall", "refuse"):
        variant_runs = runs[variant]
        cells = []
        problems = []
        spooled_total = dropped_total = created_total = 0
        for r in variant_runs:
            final = (r["exit"] or {}).get("stats") or r["stats"]
            created = r["created_traces"]
            dropped = sum(final.get(k, 0) for k in DROP_REASONS)
            spooled = final.get("spooled", 0)
            on_disk = r["spool_traces"]
            unaccounted = created - on_disk - dropped  # nothing reaches a stalled destination
            created_total += created
            spooled_total += on_disk
            dropped_total += dropped
            cells.append(
                f"{created:,} created: {on_disk:,} in the spool ({r['spool_files']} files; "
                f"get_stats spooled={spooled:,}), {dropped:,} dropped ({fmt_drops(final)})"
                + (f", unaccounted {unaccounted:+,}" if unaccounted else "")
            )
            if on_disk < spooled:
                problems.append(
                    f"get_stats() says {spooled:,} spooled, the spool holds {on_disk:,}"
                )
            if unaccounted > 0:
                problems.append(f"{unaccounted:,} traces neither spooled nor counted")
            elif unaccounted < 0:
                notes.append(
                    f"{LATENCY_LABELS[variant]}: {-unaccounted:,} traces were both spooled and "
                    "counted as dropped (get_stats() over-counts drops)"
                )
        ok = not problems
        if not ok:
            failures.append(f"traces at exit, {LATENCY_LABELS[variant]}: " + "; ".join(problems))
        rows.append(
            (
                f"traces at exit, {LATENCY_LABELS[variant]}",
                f"{spooled_total:,} spooled, {dropped_total:,} dropped of {created_total:,}",
                "all accounted for: required " + ("PASS" if ok else "FAIL"),
                "per child, from get_stats() after tracekit's exit hook and the spool files "
                "left on disk: " + " / ".join(cells),
            )
        )


if __name__ == "__main__":
    sys.exit(main())
