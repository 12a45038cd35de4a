"""RSS over many cheap calls (a minimal chat body), to the file store and to a
destination that never answers: bounded or growing."""

from __future__ import annotations

import gc
import os
import threading
import time
from typing import Any

from _common import emit, rss_mb, run_parallel, status
from peerbench.plan import PARALLEL, TARGET_RSS_GROWTH_MB, Context, tracekit_default
from peerbench.summary import Summary
from peerbench.variants import VARIANTS, setup, tracekit_stats

PEERS = {"mlflow", "openinference", "otel-openai-v2"}


def child_memory(spec: dict[str, Any]) -> None:
    """RSS while making up to N calls within a time budget (a watchdog reports a block)."""
    progress: dict[str, Any] = {"calls": 0, "phase": "setup", "rss": [], "rss_start": rss_mb()}
    started = time.monotonic()

    def watchdog() -> None:
        time.sleep(spec["budget_s"] + 30)
        progress["timed_out"] = True
        progress["rss_end"] = rss_mb()
        emit(progress)
        os._exit(0)

    threading.Thread(target=watchdog, daemon=True).start()
    variant, clients = setup({**spec, "minimal": True}, {"openai"})
    progress["phase"] = "calls"
    gc.collect()
    progress["rss_start"] = rss_mb()
    # RSS every tenth of the calls, at most every 1,000 (a slow variant that runs out of
    # budget still has points), and when the budget runs out
    step = max(1, min(spec["n"] // 10, 1_000))
    deadline = time.monotonic() + spec["budget_s"]
    call = clients.call
    clock = time.monotonic
    for i in range(1, spec["n"] + 1):
        call("openai_chat")
        out_of_time = clock() > deadline
        if i % step == 0 or out_of_time:
            progress["calls"] = i
            gc.collect()
            progress["rss"].append([i, rss_mb()])
            if out_of_time:
                break
    progress["calls_s"] = time.monotonic() - started
    progress["phase"] = "done"
    progress["rss_end"] = rss_mb()
    progress["errors"] = variant.errors
    progress["stats"] = tracekit_stats()
    emit(progress)
    os._exit(0)  # the exit is measured elsewhere; do not wait for a stalled export here


def measure(ctx: Context, stalled_url: str) -> dict[str, Any]:
    n = ctx.calls(ctx.plan["memory_calls"], 100)
    budgets = {v: ctx.budget(ctx.plan["memory_budget_peers_s"]) for v in VARIANTS}
    budgets["tracekit"] = ctx.budget(ctx.plan["memory_budget_s"])
    # bare is the baseline: a tenth of the calls is enough to show a flat line
    sizes = dict.fromkeys(VARIANTS, n) | {"bare": max(100, n // 10)}
    destinations = {"file store": "file", "destination stalled": stalled_url}
    skipped = PEERS if ctx.quick else set()
    jobs, keys = [], []
    for label, destination in destinations.items():
        for variant in VARIANTS:
            if (destination != "file" and variant == "bare") or variant in skipped:
                continue
            budget = budgets[variant]
            spec = ctx.spec(
                variant, n=sizes[variant], budget_s=budget, destination=destination, label=label
            )
            jobs.append((spec, budget + 90))
            keys.append([label, variant])
    # the longest first, two at a time: RSS does not depend on sharing the cores
    order = sorted(range(len(jobs)), key=lambda i: keys[i][1] != "tracekit")
    print(f"memory: {len(jobs)} children, {PARALLEL} at a time ...", flush=True)
    results = run_parallel(lambda i: ctx.child("memory", *jobs[i]), order, PARALLEL)
    return {
        "n": n,
        "sizes": sizes,
        "budgets": budgets,
        "labels": list(destinations),
        "quick_skipped": sorted(skipped),
        "queue_bound": tracekit_default("max_queued_spans"),
        "results": [[*keys[i], r] for i, r in zip(order, results, strict=True)],
    }


def summarize(raw: dict[str, Any], summary: Summary) -> None:
    n, sizes, budgets = raw["n"], raw["sizes"], raw["budgets"]
    results = {(label, variant): r for label, variant, r in raw["results"]}
    for label in raw["labels"]:
        figure = f"RSS after {n:,} OpenAI chat calls (minimal body), {label}"
        cells = {}
        for variant in VARIANTS:
            r = results.get((label, variant))
            if r is None:
                cells[variant] = "–" if variant == "bare" else "not measured: --quick"
                continue
            cells[variant], ok = _cell(r, sizes[variant], budgets[variant])
            if variant == "tracekit":
                reached = (r.get("rss") or [[0]])[-1][0] >= n
                verdict = status(ok) if reached or r.get("failed") else "not measured (budget)"
                bound = raw["queue_bound"]
                if label != "file store" and n // 2 < bound and not ok:
                    # its queue is still filling: the plateau needs more calls
                    verdict = f"not shown: {n // 2:,} calls do not fill its {bound:,}-span queue"
                summary.other_target[figure] = (
                    f"bounded: ≤ {TARGET_RSS_GROWTH_MB:.0f} MiB from {n // 2:,} to {n:,} "
                    f"calls: {verdict}"
                )
        summary.other[figure] = cells


def _cell(r: dict[str, Any], n: int, budget: float) -> tuple[str, bool]:
    if r.get("failed"):
        return f"**not measured: {r['failed']}**", False
    error = (r.get("errors") or {}).get("openai")
    if error:
        return f"**not measured: setup failed: {error[:70]}**", False
    if r.get("phase") == "setup":
        return f"**blocked in setup: 0 calls in {r['wall_s']:.0f} s**", False
    points = r.get("rss") or []
    calls = points[-1][0] if points else 0
    if len(points) < 2:
        return f"**not measured: time budget ({calls:,} calls in {budget:.0f} s)**", False
    half = next(p for p in points if p[0] >= calls // 2)
    growth = points[-1][1] - half[1]
    bounded = growth <= TARGET_RSS_GROWTH_MB
    cell = (
        f"{points[-1][1]:,.0f} MiB (+{points[-1][1] - r['rss_start']:,.1f} over the calls); "
        f"{growth:+,.1f} MiB from {half[0]:,} to {calls:,}: "
        + ("bounded" if bounded else "**growing**")
    )
    if r.get("timed_out"):
        cell += f"; **blocked after {calls:,} calls**"
    elif calls < n:
        cell += f"; {calls:,} of {n:,} calls in the {budget:.0f} s budget"
    return cell, calls >= n and bounded
