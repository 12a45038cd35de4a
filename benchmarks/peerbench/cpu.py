"""Whole-process CPU: N OpenAI chat calls, the variant's own flush, a normal exit.

The parent reads the child's user + system time with `wait4`; the ratio is to the bare
child of the same round. The control (bare again) shows the noise of that ratio.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

from _common import emit, rotated, status
from peerbench.environment import count_traces, mlflow_server, start_mlflow_server
from peerbench.plan import TARGET_CPU, Context
from peerbench.summary import Summary
from peerbench.variants import CONTROL, VARIANTS, setup, tracekit_stats

ORDER = [*VARIANTS, CONTROL]


def child_cpu(spec: dict[str, Any]) -> None:
    """N calls, the variant's flush, then a normal exit: the parent reads the CPU (wait4)."""
    variant, clients = setup(spec, {"openai"})
    for _ in range(spec["n"]):
        clients.call("openai_chat")
    variant.flush()
    emit({"done": True, "errors": variant.errors, "stats": tracekit_stats()})


def measure(ctx: Context) -> dict[str, Any]:
    """To the file store; then, when the plan says so, to a real `mlflow server`."""
    n = ctx.calls(ctx.plan["cpu_calls"], 10)
    out: dict[str, Any] = {
        "n": n,
        "file": _rounds(ctx, "file", "file store", ctx.plan["cpu_rounds"], n),
    }
    if not ctx.plan["server"]:
        return out
    try:
        server, python = start_mlflow_server()
    except Exception as exc:
        out["server"] = {"error": str(exc)[:120]}
        return out
    try:
        rounds = ctx.plan["server_rounds"]
        out["server"] = _rounds(ctx, server.url, "MLflow tracking server", rounds, n, server)
        out["server"]["python"] = str(python)
    finally:
        server.stop()
    return out


def _rounds(
    ctx: Context, destination: str, label: str, rounds: int, n: int, server: Any = None
) -> dict[str, Any]:
    per_round: list[dict[str, Any]] = []
    for index in range(rounds):
        print(f"cpu ({label}) round {index + 1}/{rounds} ...", flush=True)
        results: dict[str, Any] = {}
        for variant in rotated(ORDER, index):
            env: dict[str, str] = {}
            experiment = None
            if server is not None and variant not in ("bare", CONTROL):
                experiment = mlflow_server().create_experiment(
                    server.url, f"{variant}-{index}-{time.time()}"
                )
                env = {
                    "MLFLOW_EXPERIMENT_ID": experiment,
                    "TRACEKIT_EXPERIMENT_ID": experiment,
                    "OTEL_EXPORTER_OTLP_TRACES_HEADERS": f"x-mlflow-experiment-id={experiment}",
                }
            spec = ctx.spec(variant, n=n, destination=destination, label=label)
            r = ctx.child("cpu", spec, ctx.budget(ctx.plan["child_budget_s"]), env)
            if experiment is not None and not r.get("failed"):
                r["server_traces"] = count_traces(server, experiment)
            results[variant] = r
        per_round.append(results)
    return {"label": label, "rounds": per_round}


def summarize(raw: dict[str, Any], summary: Summary) -> None:
    n = raw["n"]
    _figure(raw["file"], n, summary, plot=True)
    server = raw.get("server")
    if server is None:
        summary.notes.append(
            "Whole-process CPU against a tracking server: not measured in this run "
            "(the full run does it; `--server` adds it to `--quick`)."
        )
    elif "error" in server:
        figure = f"whole-process CPU, {n:,} OpenAI chat calls + export, MLflow server"
        summary.other[figure] = dict.fromkeys(ORDER, "–")
        summary.other[figure]["tracekit"] = f"**not measured: {server['error']}**"
    else:
        _figure(server, n, summary, plot=False)
        summary.notes.append(
            f"MLflow tracking server: `mlflow server` ({server['python']}), SQLite store, one "
            "worker, on 127.0.0.1, started with tests/mlflow_server.py; each child sends to "
            "its own experiment (tracekit and MLflow: `MLFLOW_EXPERIMENT_ID`; the OTel "
            "variants: OTLP/HTTP to its `/v1/traces` with the `x-mlflow-experiment-id` header) "
            "and waits for its export with the variant's flush before exiting; the cell's "
            "traces are counted in the server's database afterwards. The server's own CPU "
            "is not in the figure."
        )


def _figure(raw: dict[str, Any], n: int, summary: Summary, plot: bool) -> None:
    figure = f"whole-process CPU, {n:,} OpenAI chat calls + export, {raw['label']}"
    per: dict[str, list[tuple[float, float]]] = {v: [] for v in ORDER}
    failed: dict[str, str] = {}
    counted: dict[str, list[str]] = {v: [] for v in ORDER}
    for results in raw["rounds"]:
        bare = results.get("bare") or {}
        for variant in ORDER:
            r = results.get(variant) or {"failed": "not run"}
            error: str = (r.get("errors") or {}).get("openai") or ""
            if r.get("failed") or error:
                failed[variant] = r.get("failed") or f"setup failed: {error[:70]}"
                continue
            if not bare.get("failed"):
                per[variant].append((r["cpu_s"], r["cpu_s"] / bare["cpu_s"]))
            if "server_traces" in r:
                got = r["server_traces"]
                counted[variant].append(f"{got:,}/{n:,}" if got is not None else "?")
            drops = {
                k: v
                for k, v in (r.get("stats") or {}).items()
                if v and k not in ("traces_in_flight", "traces_queued", "spooled")
            }
            if drops:
                counted[variant].append("dropped " + json.dumps(drops))
    cells = {}
    for variant in ORDER:
        if not per[variant]:
            cells[variant] = f"**not measured: {failed.get(variant, 'the bare child failed')}**"
            continue
        cpu = statistics.median(c for c, _ in per[variant])
        ratios = [r for _, r in per[variant]]
        ratio = statistics.median(ratios)
        cells[variant] = f"{cpu:.2f} s"
        if variant == CONTROL:
            cells[variant] += f" ({ratio:.2f}×; {min(ratios):.2f}–{max(ratios):.2f})"
        elif variant != "bare":
            cells[variant] += f" ({ratio:.2f}×)"
        if counted[variant]:
            cells[variant] += "; traces on the server: " + ", ".join(sorted(set(counted[variant])))
        if variant in failed:
            cells[variant] += f"; a round failed: {failed[variant]}"
        if plot:
            summary.plot.setdefault("cpu_ratio", {})[variant] = ratio
        if variant == "tracekit":
            summary.other_target[figure] = f"≤ 1.10× bare: {status(ratio - 1 <= TARGET_CPU)}"
    summary.other[figure] = cells
