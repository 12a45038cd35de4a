"""Added median latency per case and variant; import + autolog() and the first call.

Every round runs every variant and the control (bare again) once, each in a fresh
interpreter, in an order rotated per round; a cell is the median over rounds of the
differences and ratios to the round's bare child.
"""

from __future__ import annotations

import gc
import os
import statistics
import threading
import time
from typing import Any

from _common import emit, rotated, status
from peerbench.plan import TARGET_IMPORT_MS, TRANSPORTS, Context, fake_server
from peerbench.summary import Summary
from peerbench.variants import CONTROL, TITLES, VARIANTS, Variant
from peerbench.workload import CASES, CASSETTES, Clients, import_sdks, samples

# the columns of a latency table after bare: the traced variants, then the control
COMPARED = [*VARIANTS[1:], CONTROL]


def child_latency(spec: dict[str, Any]) -> None:
    """Import + autolog() and the first call (OpenAI), then every case, timed per call."""
    import_sdks()
    clock = time.perf_counter_ns
    t0 = clock()
    variant = Variant(spec["variant"], os.getcwd(), "file", {"openai"})
    setup_ns = clock() - t0
    clients = Clients(spec)
    t0 = clock()
    clients.call("openai_chat")
    first_ns = clock() - t0
    t0 = clock()
    clients.call("openai_chat")
    second_ns = clock() - t0
    variant.instrument({"anthropic", "gemini"})
    out: dict[str, Any] = {
        "setup_ns": setup_ns,
        "first_ns": first_ns,
        "second_ns": second_ns,
        "cases": {},
        "undrained": [],
    }
    for case in spec["cases"]:
        n, warm = spec["sizes"][case]
        samples(clients, case, warm)
        # the variant's flush, waited on for a bounded time (MLflow's SQLite queue drains
        # slowly), so each case starts with its exporter about idle
        flusher = threading.Thread(target=variant.flush, daemon=True)
        flusher.start()
        flusher.join(spec["flush_wait_s"])
        if flusher.is_alive():
            out["undrained"].append(case)
        gc.collect()
        times = samples(clients, case, n)
        out["cases"][case] = {"median_ns": statistics.median(times), "n": n}
    out["errors"] = variant.errors
    emit(out)
    os._exit(0)  # the export at exit is measured by the cpu and exit children


def measure(ctx: Context) -> dict[str, Any]:
    """Per transport: every round's child results, in the order they ran."""
    plan = ctx.plan
    out: dict[str, Any] = {}
    for transport in plan["transports"]:
        if transport == "mock" and ctx.bodies is None:
            ctx.notes.append(f"mock transport skipped: no cassettes at {CASSETTES}")
            continue
        rounds = plan["latency_rounds"]
        div = 2 if transport == "loopback" else 1
        sizes = {
            c: (ctx.calls(n // div, 4), ctx.calls(w // div, 1))
            for c, (n, w) in plan["latency_sizes"].items()
        }
        share = plan["mlflow_share"]
        mlflow_sizes = {c: (max(4, round(n * share)), w) for c, (n, w) in sizes.items()}
        server = fake_server() if transport == "loopback" else None
        per_round: list[dict[str, Any]] = []
        orders: list[list[str]] = []
        try:
            for index in range(rounds):
                print(f"latency {transport} round {index + 1}/{rounds} ...", flush=True)
                order = rotated([*VARIANTS, CONTROL], index)
                results = {}
                for variant in order:
                    spec = {
                        "variant": variant,
                        "transport": transport,
                        "base_url": server.base_url if server else "",
                        "bodies": ctx.bodies if transport == "mock" else None,
                        "cases": list(CASES),
                        "sizes": mlflow_sizes if variant == "mlflow" else sizes,
                        "flush_wait_s": plan["flush_wait_s"],
                    }
                    results[variant] = ctx.child("latency", spec, plan["child_budget_s"])
                per_round.append(results)
                orders.append(order)
        finally:
            if server is not None:
                server.stop()
        out[transport] = {
            "rounds": per_round,
            "orders": orders,
            "sizes": sizes,
            "mlflow_share": share,
            "flush_wait_s": plan["flush_wait_s"],
        }
    return out


def summarize(raw: dict[str, Any], summary: Summary) -> None:
    """The latency tables, the import and first-call rows, notes on undrained exports."""
    for index, transport in enumerate(t for t in TRANSPORTS if t in raw):
        data = raw[transport]
        per_round = data["rounds"]
        summary.latency[transport] = _table(per_round, data["sizes"], summary)
        if index == 0:
            _startup_rows(per_round, transport, summary)
        for variant in VARIANTS:
            cases = sorted({c for r in per_round for c in r[variant].get("undrained", [])})
            if cases:
                summary.notes.append(
                    f"{TITLES[variant]}, {transport}: its export had not drained "
                    f"{data['flush_wait_s']:g} s after the warm-up of "
                    + ", ".join(CASES[c][1] for c in cases)
                    + ", so those cases were timed while it was still exporting."
                )


def _table(
    per_round: list[dict[str, Any]], sizes: dict[str, Any], summary: Summary
) -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    ok_rounds = [r for r in per_round if "cases" in r["bare"]]
    for case, (provider, _) in CASES.items():
        row: dict[str, Any] = {}
        bare = [r["bare"]["cases"][case]["median_ns"] for r in ok_rounds]
        row["bare"] = statistics.median(bare) if bare else None
        for variant in COMPARED:
            results = [r[variant] for r in per_round if variant in r]
            failed = [r["failed"] for r in results if r.get("failed")]
            errs = [r.get("errors", {}).get(provider) for r in results]
            if not results:
                row[variant] = {"na": "not run"}
            elif failed:
                row[variant] = {"na": f"not measured: {failed[0]}"}
            elif any(errs):
                row[variant] = {"na": next(e for e in errs if e)}
                summary.errors.setdefault(variant, {})[provider] = next(e for e in errs if e)
            elif not ok_rounds:
                row[variant] = {"na": "the bare child failed"}
            else:
                pairs = [
                    (r[variant]["cases"][case]["median_ns"], r["bare"]["cases"][case]["median_ns"])
                    for r in ok_rounds
                ]
                ratios = [v / b for v, b in pairs]
                row[variant] = {
                    "ratio": statistics.median(ratios),
                    "added_ns": statistics.median(v - b for v, b in pairs),
                    "range": (min(ratios), max(ratios)),
                }
        row["n"] = sizes[case][0]
        row["rounds"] = len(per_round)
        table[case] = row
    return table


def _startup_rows(per_round: list[dict[str, Any]], transport: str, summary: Summary) -> None:
    imp_fig = "import + autolog() (OpenAI)"
    first_fig = f"first traced call (OpenAI chat, {transport}), added to bare"
    imp: dict[str, str] = {}
    first: dict[str, str] = {}
    for variant in VARIANTS:
        pairs = [
            (r[variant], r["bare"])
            for r in per_round
            if "setup_ns" in r[variant] and "setup_ns" in r["bare"]
        ]
        error = next(
            (e for r in per_round if (e := r[variant].get("errors", {}).get("openai"))), None
        )
        if not pairs or error:
            failed = next((r[variant].get("failed") for r in per_round), None) or "?"
            why = f"setup failed: {error[:70]}" if error else "child failed: " + failed
            imp[variant] = first[variant] = why
            continue
        setup = statistics.median(v["setup_ns"] for v, _ in pairs) / 1e6
        first_ms = statistics.median(v["first_ns"] for v, _ in pairs) / 1e6
        added = statistics.median(v["first_ns"] - b["first_ns"] for v, b in pairs) / 1e6
        second = statistics.median(v["second_ns"] for v, _ in pairs) / 1e6
        imp[variant] = "– (no instrumentation)" if variant == "bare" else f"{setup:,.1f} ms"
        first[variant] = f"{first_ms:,.1f} ms" + (
            f" (second call {second:,.2f} ms)"
            if variant == "bare"
            else f" ({added:+,.1f} ms; second call {second:,.2f} ms)"
        )
        if variant != "bare":
            summary.plot.setdefault("import_ms", {})[variant] = setup
        if variant == "tracekit":
            ok = setup <= TARGET_IMPORT_MS
            summary.other_target[imp_fig] = f"< {TARGET_IMPORT_MS:.0f} ms: {status(ok)}"
    summary.other[imp_fig] = imp
    summary.other[first_fig] = first
    summary.other_target[first_fig] = "none"
