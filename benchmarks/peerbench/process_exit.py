"""Process exit with the destination stalled or refusing: how long the end of the
script takes to become the end of the process."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from _common import emit, run_parallel, status
from peerbench.plan import PARALLEL_EXIT, TARGET_EXIT_SLACK_S, Context, tracekit_default
from peerbench.summary import Summary
from peerbench.variants import VARIANTS, setup

CALLS_S = 10  # at most this long of calls, before the script ends


def child_exit(spec: dict[str, Any]) -> None:
    """Some calls, then the end of the script: the parent times how long the exit takes."""
    progress: dict[str, Any] = {"calls": 0}

    def watchdog(after: float, code: int, **extra: Any) -> None:
        time.sleep(after)
        if code == 3 and "script_end" in progress:
            return  # the calls ended; the exit has its own watchdog
        emit({**progress, **extra})
        os._exit(code)

    blocked = threading.Thread(
        target=watchdog, args=(spec["budget_s"] + 30, 3), kwargs={"blocked": True}, daemon=True
    )
    blocked.start()
    variant, clients = setup(spec, {"openai"})
    progress["errors"] = variant.errors
    deadline = time.monotonic() + spec["budget_s"]
    for i in range(1, spec["n"] + 1):
        clients.call("openai_chat")
        progress["calls"] = i
        if time.monotonic() > deadline:
            break
    progress["script_end"] = time.time()
    emit({**progress, "blocked": False})
    # still exiting after exit_wait_s: say so and end (daemon threads run during atexit)
    threading.Thread(
        target=watchdog, args=(spec["exit_wait_s"], 4), kwargs={"stuck": True}, daemon=True
    ).start()


def measure(ctx: Context, urls: dict[str, str]) -> dict[str, Any]:
    """`urls`: destination label (stalled, refusing) -> its URL."""
    n = ctx.calls(ctx.plan["exit_calls"], 10)
    wait = ctx.plan["exit_wait_s"]
    jobs, keys = [], []
    for label in ctx.plan["exit_destinations"]:
        for variant in VARIANTS[1:]:
            spec = ctx.spec(
                variant,
                n=n,
                budget_s=CALLS_S,
                exit_wait_s=wait,
                destination=urls[label],
                label=f"destination {label}",
            )
            jobs.append((spec, CALLS_S + wait + 60))
            keys.append([label, variant])
    print(f"exit: {len(jobs)} children, {PARALLEL_EXIT} at a time ...", flush=True)
    results = run_parallel(lambda job: ctx.child("exit", *job), jobs, PARALLEL_EXIT)
    return {
        "n": n,
        "wait_s": wait,
        "target_s": tracekit_default("shutdown_timeout") + TARGET_EXIT_SLACK_S,
        "labels": list(ctx.plan["exit_destinations"]),
        "results": [[*key, r] for key, r in zip(keys, results, strict=True)],
    }


def summarize(raw: dict[str, Any], summary: Summary) -> None:
    n, wait, target = raw["n"], raw["wait_s"], raw["target_s"]
    results = {(label, variant): r for label, variant, r in raw["results"]}
    for label in raw["labels"]:
        figure = f"process exit after {n} calls, destination {label}"
        cells = {"bare": "–"}
        for variant in VARIANTS[1:]:
            r = results[(label, variant)]
            ok = False
            error = (r.get("errors") or {}).get("openai")
            if r.get("failed"):
                cells[variant] = f"**not measured: {r['failed']}**"
            elif error:
                cells[variant] = f"**not measured: setup failed: {error[:70]}**"
            elif r.get("stuck"):
                cells[variant] = f"**> {wait:.0f} s** (still exiting; ended by its watchdog)"
            elif r.get("blocked"):
                cells[variant] = f"**blocked in the calls: {r['calls']} of {n} made**"
            else:
                exit_s = r["ended"] - r["script_end"]
                cells[variant] = f"{exit_s:,.2f} s"
                if r["calls"] < n:
                    cells[variant] += f"; only {r['calls']} calls in {CALLS_S} s"
                ok = exit_s <= target
            if variant == "tracekit":
                summary.other_target[figure] = f"≤ {target:g} s: {status(ok)}"
        summary.other[figure] = cells
