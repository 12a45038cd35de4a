"""The report writer: a saved results file -> docs/benchmarks.md and its chart.

    python3 benchmarks/peers.py --report docs/benchmarks.json
    python3 benchmarks/peerbench/report.py RESULTS.json [--doc PATH] [--chart PATH]

It reads nothing but the results file (no clock, no machine, no package versions), so
the same file always gives the same page; the chart needs matplotlib (.bench-venv/ has
it) and is left out, with a note, where it is missing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a script: benchmarks/ on the path, as peers.py has it
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import US, fmt_us, md_row, status
from peerbench import cpu, latency, memory, process_exit
from peerbench.check import Checks
from peerbench.plan import (
    GROUPS,
    PARALLEL_EXIT,
    TARGET_ADDED,
    TARGET_CPU,
    TARGET_IMPORT_MS,
    TARGET_RSS_GROWTH_MB,
)
from peerbench.summary import Summary
from peerbench.variants import CONTROL, TITLES, VARIANTS
from peerbench.workload import CASES

DOCS = Path(__file__).resolve().parent.parent.parent / "docs"
DOC = DOCS / "benchmarks.md"
CHART = DOCS / "benchmarks.png"
RESULTS = DOCS / "benchmarks.json"
# estimated from smoke runs' timing on 2 cores (see benchmarks/README.md#peers)
FULL_RUN_TIME = "about 30 minutes on 2 quiet cores (35-40 with other work on the machine)"


def summarize(results: dict[str, Any]) -> tuple[Summary, Checks]:
    """Every figure's rows, from the results of a run."""
    summary = Summary()
    checks = Checks(results.get("check"))
    for name, figure in (
        ("latency", latency),
        ("cpu", cpu),
        ("memory", memory),
        ("exit", process_exit),
    ):
        if name in results:
            figure.summarize(results[name], summary)
    if checks:
        checks.summarize(summary)
    return summary, checks


def render(results: dict[str, Any]) -> str:
    """docs/benchmarks.md for these results."""
    meta = results["meta"]
    summary, checks = summarize(results)
    load = meta["load"]
    lines = [
        "# tracekit against the peers",
        "",
        "The method is in [benchmarks/README.md](../benchmarks/README.md#peers); how to run "
        "it again is at the end of this page.",
        "",
        f"**{'Quick' if meta['quick'] else 'Full'} run, {meta['date']}**, commit "
        f"{meta['commit']}, {meta['elapsed_s']:.0f} s, load average {load[0]:.2f} before / "
        f"{load[1]:.2f} after.  ",
        f"Machine: {meta['machine']}.  ",
        f"Versions: {meta['versions']}.",
        "",
        "![added latency and CPU against the bare SDK](benchmarks.png)",
        "",
    ]
    for transport, table in summary.latency.items():
        lines += _latency_section(transport, table, results["latency"][transport], checks)
    if summary.other:
        columns = [*VARIANTS, CONTROL]
        lines += [
            "## Process figures",
            "",
            "| figure | " + " | ".join(TITLES[v] for v in columns) + " | tracekit target |",
            "|---" * (len(columns) + 2) + "|",
        ]
        for figure, cells in summary.other.items():
            row = [figure, *(cells.get(v, "–") for v in columns)]
            lines.append(md_row([*row, summary.other_target.get(figure, "–")]))
        lines.append("")
    if checks.checks:
        lines += checks.table(summary)
    lines += ["## Notes", ""] + [f"- {n}" for n in _notes(results, summary)]
    if summary.failures:
        lines += ["", "**Variants that did not record every call:**", ""]
        lines += [f"- {f}" for f in summary.failures]
    lines += ["", *reproduce(meta)]
    return "\n".join(lines) + "\n"


def _latency_section(
    transport: str, table: dict[str, Any], raw: dict[str, Any], checks: Checks
) -> list[str]:
    what = (
        "in-process `httpx2.MockTransport` serving recorded response bodies "
        "(pure instrumentation cost)"
        if transport == "mock"
        else "loopback HTTP to `FakeProviderServer` (a real round trip)"
    )
    lines = [
        f"## Added median latency, {transport}: {what}",
        "",
        "| case | bare | "
        + " | ".join(TITLES[v] for v in latency.COMPARED)
        + " | tracekit target |",
        "|---" * (len(latency.COMPARED) + 3) + "|",
    ]
    for case, row in table.items():
        cells = [CASES[case][1], fmt_us(row["bare"]) if row["bare"] else "failed"]
        target = "–"
        unit = "/batch" if case == "openai_async" else ""
        for variant in latency.COMPARED:
            v = row[variant]
            if "na" in v:
                bold = v["na"].startswith("not measured")
                cells.append(f"**{v['na']}**" if bold else f"n/a ({v['na'][:70]})")
                continue
            cell = f"{v['added_ns'] / US:+,.0f} µs{unit} ({v['ratio']:.3f}×"
            if variant == CONTROL:  # the noise floor: its range over the rounds
                cell += f"; {v['range'][0]:.3f}–{v['range'][1]:.3f}"
            cell += ")"
            problem = checks.problem(variant, case)
            if problem:  # a variant that records less looks cheaper than it is
                cell += f" **⚠ {problem}**"
            cells.append(cell)
            if variant == "tracekit":
                target = f"≤ 3%: {status(v['ratio'] - 1 <= TARGET_ADDED)}"
        cells.append(target)
        lines.append(md_row(cells))
    rounds = len(raw["rounds"])
    share = raw["mlflow_share"]
    lines += [
        "",
        f"Cells: median over {rounds} rounds of (variant − bare) median latency, and the "
        "median of the rounds' variant/bare ratios. Each round ran every variant and the "
        "control (the bare SDK again, in a process of its own) once, each in a fresh "
        "process, in an order rotated from round to round (none always runs first); the "
        "control's cell gives the range of its ratio over the rounds: a ratio inside it is "
        "noise on this machine, not cost. Samples per child: "
        + ", ".join(f"{CASES[c][1]} {r['n']:,}" for c, r in table.items())
        + (
            f"; MLflow autolog times {share:.0%} of them (its calls cost several times the "
            "others', and the run must stay within its time)."
            if share < 1
            else "."
        ),
        "",
    ]
    return lines


def _notes(results: dict[str, Any], summary: Summary) -> list[str]:
    meta = results["meta"]
    errors = [
        f"{TITLES[v]} on {p}: {e}"
        for v, per in summary.errors.items()
        for p, e in per.items()
        if e != "no instrumentation for this SDK"
    ]
    scale = meta["scale"]
    notes = [
        *meta.get("notes", []),
        *summary.notes,
        *meta.get("install_notes", []),
        *(f"setup failed: {e}" for e in errors),
        "Time per group of figures: "
        + ", ".join(f"{g} {meta['group_s'][g]:.0f} s" for g in GROUPS if g in meta["group_s"])
        + (f"; call counts and budgets scaled by {scale:g} (`--scale`)" if scale != 1 else "")
        + ".",
    ]
    if "latency" in results:
        notes.append(
            "Import + autolog() and the first call: timed at the start of every latency child "
            "of the first transport (SDKs already imported), median over its rounds; the "
            "first call's difference is to bare's first call in the same round. bare's first "
            "call includes the SDK's own lazy imports, which an instrumentation's setup may "
            "already have done: setup + first call is the comparable total."
        )
    notes.append(
        "Exporters: tracekit to its default file store (`./.tracekit/` in the child's "
        "temporary working directory); MLflow to `sqlite:///<tmp>/mlflow.db` through its "
        "default async trace logging queue, with `MLFLOW_MODEL_CATALOG_URI=` (no price-list "
        "download, which offline stalls each provider's first export); OpenInference "
        "and openai-v2 to an OTel SDK `TracerProvider` + `BatchSpanProcessor` (defaults) + "
        "`ConsoleSpanExporter` writing one JSON line per span to a file. Message contents "
        "are captured by every variant (`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
        "=true`)."
    )
    if "memory" in results or "exit" in results:
        notes.append(
            "Stalled destination: a socket on 127.0.0.1 in the parent that accepts "
            "connections and reads requests but never answers. tracekit: "
            "`TRACEKIT_TRACKING_URI` at it (MLflow REST protocol); MLflow: "
            "`MLFLOW_TRACKING_URI` at it; OTel variants: `OTLPSpanExporter` (HTTP/protobuf) "
            "at `<it>/v1/traces`, all with their default timeouts. Refusing: a loopback port "
            "nothing listens on."
        )
    if "exit" in results:
        ex = results["exit"]
        notes.append(
            "Exit time: from the last statement of the script (the child's clock) to the "
            f"process being gone (`wait4` returning in the parent), after {ex['n']} calls (at "
            f"most {process_exit.CALLS_S} s of them); a child still exiting {ex['wait_s']:.0f} "
            "s after its script ended is ended by its own watchdog and shown as more than "
            f"that. Exit children run {PARALLEL_EXIT} at a time: their time is spent waiting "
            "on the destination."
        )
    if "cpu" in results:
        notes.append(
            "Whole-process CPU: user + system time of the child alone (`wait4` on its pid): "
            "imports, the calls, the variant's flush (its whole export) and the exit; the "
            "ratio is to the bare child of the same round, median over rounds, the variants "
            "and the control (bare again) in an order rotated per round; the control's cell "
            "gives the range of its ratio."
        )
    if "memory" in results:
        mem = results["memory"]
        budgets = mem["budgets"]
        notes.append(
            f"Memory: a separate cheap path so that {mem['n']:,} calls fit: the mock "
            "transport answering every call with a minimal chat completion (`MINIMAL_CHAT`), "
            "VmRSS after `gc.collect()` every tenth of the calls (at most every 1,000) and "
            f"when the budget ran out; at most {budgets['tracekit']:.0f} s of calls for "
            f"tracekit and {budgets['mlflow']:.0f} s for the others per child (the cell says "
            "how many were reached); bounded means at most "
            f"{TARGET_RSS_GROWTH_MB:.0f} MiB of growth from half the calls to all of "
            "them. bare makes a tenth of the calls (the baseline). Memory children run two "
            "at a time (RSS does not depend on sharing the cores)"
            + (
                "; `--quick` measures tracekit and bare only, with too few calls to reach "
                f"tracekit's queue bound ({mem['queue_bound']:,} spans) with the destination "
                "stalled, so growth there is expected: the full run's 100,000 calls show the "
                "plateau."
                if mem["quick_skipped"]
                else "."
            )
        )
    if "check" in results:
        notes.append("Correctness children run two at a time (counts, not timings).")
    return notes


def reproduce(meta: dict[str, Any]) -> list[str]:
    """The page's last section: how to run it again, and how long that takes."""
    return [
        "## How to reproduce",
        "",
        "```",
        "python3 benchmarks/peers.py             # the full run; writes this page, "
        "benchmarks.png and benchmarks.json",
        "python3 benchmarks/peers.py --quick     # a smoke run (a few minutes)",
        "python3 benchmarks/peers.py --report docs/benchmarks.json   # this page and the "
        "chart again from the saved results, nothing re-run",
        "```",
        "",
        "The first run builds `.bench-venv/` at the repository root (the peers pinned in "
        "benchmarks/peers-requirements.txt, tracekit installed editable; a few minutes, "
        f"once). A full run takes {FULL_RUN_TIME}; this page's run took "
        f"{meta['elapsed_s'] / 60:.1f} minutes. Run it on a quiet machine: other work skews "
        "every figure, which the control column shows.",
        "",
        "tracekit's own overhead per call measured paired in one process, the start-up "
        "figures and where the microseconds go: [overhead.md](overhead.md).",
    ]


# -- the chart -------------------------------------------------------------------------

COLORS = {
    "tracekit": "#2b8a3e",
    "mlflow": "#1971c2",
    "openinference": "#e8590c",
    "otel-openai-v2": "#7048e8",
    CONTROL: "#adb5bd",
}


def plot(results: dict[str, Any], path: Path) -> None:
    """The chart: added latency per case and variant, import + autolog, whole-process CPU."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary, checks = summarize(results)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8), gridspec_kw={"width_ratios": [3, 1, 1]})
    tables = summary.latency
    which = "mock" if "mock" in tables else "loopback"
    data = tables.get(which, {})
    ax = axes[0]
    columns = latency.COMPARED
    width = 0.8 / len(columns)
    highest = 10.0
    for i, variant in enumerate(columns):
        xs, ys, hatches = [], [], []
        for j, (case, row) in enumerate(data.items()):
            ratio = row[variant].get("ratio")
            if ratio is not None:
                xs.append(j + (i - (len(columns) - 1) / 2) * width)
                ys.append((ratio - 1) * 100)
                hatches.append("//" if checks.problem(variant, case) else "")
        highest = max([highest, *ys])
        bars = ax.bar(xs, ys, width, label=TITLES[variant], color=COLORS[variant])
        for bar, hatch in zip(bars, hatches, strict=True):
            bar.set_hatch(hatch)
    ax.axhline(TARGET_ADDED * 100, color="black", linestyle="--", linewidth=1)
    ax.text(len(data) - 0.5, TARGET_ADDED * 100, " 3% target", va="bottom", ha="right")
    # symlog: MLflow's hundreds of percent and the few percent of the others both show
    ax.set_yscale("symlog", linthresh=10)
    ax.set_ylim(top=highest * 4)  # room for the legend above the bars
    ax.set_xticks(range(len(data)))
    ax.set_xticklabels([CASES[c][1].replace(" ", "\n") for c in data], fontsize=7)
    ax.set_ylabel("added median latency, % of bare (symlog)")
    ax.set_title(
        f"Added latency ({which}; no bar: not instrumented; hatched: records less)",
        fontsize=10,
    )
    ax.legend(fontsize=8, ncol=5, loc="upper left")
    for ax, key, title, unit, target in (
        (axes[1], "import_ms", "import + autolog() (OpenAI)", "ms", TARGET_IMPORT_MS),
        (axes[2], "cpu_ratio", "whole-process CPU", "× bare", 1 + TARGET_CPU),
    ):
        values = summary.plot.get(key) or {}
        names = [v for v in columns if v in values]
        ax.bar(range(len(names)), [values[v] for v in names], color=[COLORS[v] for v in names])
        ax.axhline(target, color="black", linestyle="--", linewidth=1)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([TITLES[v].replace(" ", "\n") for v in names], fontsize=7)
        ax.set_ylabel(unit)
        ax.set_title(title)
        if key == "import_ms":
            ax.set_yscale("log")
    meta = results["meta"]
    fig.suptitle(f"tracekit vs peers ({meta['date'][:10]}, {meta['machine']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def write(results: dict[str, Any], doc: Path, chart: Path | None) -> str:
    """Write the page (and the chart, if `chart` and matplotlib is there); the page."""
    page = render(results)
    doc.write_text(page, encoding="utf-8")
    print(f"written: {doc}")
    if chart is not None:
        try:
            plot(results, chart)
        except ImportError:
            print(f"no matplotlib here: {chart} left as it was")
        else:
            print(f"written: {chart}")
    return page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="docs/benchmarks.md from a results file")
    parser.add_argument("results", type=Path, nargs="?", default=RESULTS)
    parser.add_argument("--doc", type=Path, default=DOC)
    parser.add_argument("--chart", type=Path, default=CHART)
    parser.add_argument("--no-chart", action="store_true")
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text(encoding="utf-8"))
    write(results, args.doc, None if args.no_chart else args.chart)
    return 0


if __name__ == "__main__":
    sys.exit(main())
