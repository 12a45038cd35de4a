"""Correctness: what each variant recorded (LLM spans per call, token usage).

A variant that records less looks cheaper than it is: its shortfall is marked beside its
latency and hatched in the chart.
"""

from __future__ import annotations

import os
import time
from typing import Any

from _common import emit, md_row, run_parallel, status
from peerbench.plan import PARALLEL, Context
from peerbench.summary import Summary
from peerbench.variants import COVERS, TITLES, VARIANTS, setup
from peerbench.workload import BATCH, CASES, samples


def child_check(spec: dict[str, Any]) -> None:
    """K calls of each case (one gather of 50), the variant's flush, what it recorded."""
    variant, clients = setup(spec)
    checks: dict[str, Any] = {}
    k = spec["check"]

    def count(case: str, spans: list[tuple[bool, bool]], error: str | None) -> None:
        checks[case] = {
            "calls": k if case != "openai_async" else BATCH,
            "llm_spans": sum(llm for llm, _ in spans),
            "with_usage": sum(llm and usage for llm, usage in spans),
            "error": error or variant.errors.get(CASES[case][0]),
        }

    # MLflow's flush and search take seconds each: one of each at the end, its spans
    # assigned to the cases by when they started; the others are read after each case
    by_time = variant.name == "mlflow"
    windows: dict[str, tuple[int, int, str | None]] = {}
    for case in CASES:
        error = None
        started = time.time_ns()
        try:
            samples(clients, case, k if case != "openai_async" else 1)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:200]
        if by_time:
            windows[case] = (started, time.time_ns(), error)
        else:
            count(case, variant.new_spans(), error)
    if by_time:
        variant.flush()
        recorded = variant.mlflow_spans()
        for case, (started, ended, error) in windows.items():
            count(
                case,
                [(llm, usage) for _, t, llm, usage in recorded if started <= t <= ended],
                error,
            )
    emit({"checks": checks, "errors": variant.errors})
    os._exit(0)


def measure(ctx: Context) -> dict[str, Any]:
    """One child per traced variant, two at a time: these are counts, not timings."""
    print("correctness ...", flush=True)
    k = ctx.calls(ctx.plan["check_calls"], 2)
    # MLflow's check is the longest (its flush and search take seconds): it goes first
    traced = sorted(VARIANTS[1:], key=lambda v: v != "mlflow")
    budget = ctx.plan["child_budget_s"]
    results = run_parallel(
        lambda v: ctx.child("check", ctx.spec(v, check=k), budget), traced, PARALLEL
    )
    return {"calls": k, "results": dict(zip(traced, results, strict=True))}


class Checks:
    """The check results of a run, and what they say about each variant and case."""

    def __init__(self, raw: dict[str, Any] | None) -> None:
        raw = raw or {}
        self.calls: int = raw.get("calls", 0)
        results: dict[str, Any] = raw.get("results", {})
        self.failed = {v: r["failed"] for v, r in results.items() if r.get("failed")}
        self.checks: dict[str, dict[str, Any]] = {
            v: r["checks"] for v, r in results.items() if not r.get("failed")
        }

    def __bool__(self) -> bool:
        return bool(self.checks or self.failed)

    def problem(self, variant: str, case: str) -> str | None:
        """Why this variant's recording of this case falls short (None: it does not)."""
        if variant in self.failed:
            return "check failed"
        c = (self.checks.get(variant) or {}).get(case)
        if c is None or CASES[case][0] not in COVERS.get(variant, set()):
            return None
        if not c["llm_spans"]:
            return "records nothing" + (f" ({c['error'][:60]})" if c["error"] else "")
        per_call = c["llm_spans"] / c["calls"]
        if per_call < 1:
            return f"{per_call:.2f} spans/call"
        if c["with_usage"] < c["llm_spans"]:
            return f"usage on {c['with_usage'] / c['llm_spans']:.0%}"
        return None

    def summarize(self, summary: Summary) -> None:
        """The correctness row of the process figures."""
        figure = "correctness: LLM spans per call, token usage (every case it covers)"
        cells = {"bare": "– (not traced)"}
        for variant in VARIANTS[1:]:
            if variant in self.failed:
                cells[variant] = f"**not measured: {self.failed[variant]}**"
                continue
            if variant not in self.checks:
                cells[variant] = "not run"
                continue
            covered = [c for c, (p, _) in CASES.items() if p in COVERS[variant]]
            problems = [
                f"{CASES[c][1]}: {why}" for c in covered if (why := self.problem(variant, c))
            ]
            spans = {
                self.checks[variant][c]["llm_spans"] / self.checks[variant][c]["calls"]
                for c in covered
            }
            per_call = "–".join(f"{s:g}" for s in sorted(spans))
            cell = (
                f"**{'; '.join(problems)}**"
                if problems
                else f"OK: {per_call} span{'s' if max(spans) > 1 else ''}/call, usage on all "
                f"({len(covered)} cases)"
            )
            missing = sorted({p for p, _ in CASES.values()} - COVERS[variant])
            if missing:
                cell += f"; {', '.join(missing)} not instrumented"
            cells[variant] = cell
            if variant == "tracekit":
                summary.other_target[figure] = f"1 span/call, usage on all: {status(not problems)}"
        summary.other[figure] = cells

    def table(self, summary: Summary) -> list[str]:
        """The correctness section: one row per case, one column per traced variant."""
        lines = [
            "## Correctness: what each variant recorded",
            "",
            f"{self.calls} calls per case (one gather of 50 for async), in a fresh "
            "process per variant, each case followed by the variant's own flush and a read "
            "of what it recorded; LLM spans per call, and how many of them carry input and "
            "output token counts. A shortfall is in bold here and beside the variant's "
            "latency (⚠), which would otherwise look cheaper than it is.",
            "",
            "| case | " + " | ".join(TITLES[v] for v in VARIANTS[1:]) + " |",
            "|---" * len(VARIANTS) + "|",
        ]
        for case, (provider, title) in CASES.items():
            row = [title]
            for variant in VARIANTS[1:]:
                c = (self.checks.get(variant) or {}).get(case)
                if variant in self.failed:
                    row.append(f"**not measured: {self.failed[variant][:80]}**")
                elif c is None:
                    row.append("not run")
                elif provider not in COVERS[variant]:
                    row.append("not instrumented")
                elif c["error"] and not c["llm_spans"]:
                    row.append(f"**{c['error'][:80]}**")
                else:
                    per_call = c["llm_spans"] / c["calls"]
                    usage = c["with_usage"] / max(1, c["llm_spans"])
                    cell = f"{per_call:.2f} spans/call, usage on {usage:.0%}"
                    if per_call < 1 or usage < 1:
                        cell = f"**{cell}**"
                        summary.failures.append(f"{TITLES[variant]}, {title}: {cell}")
                    row.append(cell)
            lines.append(md_row(row))
        lines.append("")
        return lines
