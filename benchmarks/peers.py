"""tracekit against the tracers users would pick instead, side by side, in one run.

Run it (a full run takes about 30 minutes on two quiet cores; the first also builds
.bench-venv/):

    python3 benchmarks/peers.py            # full run: docs/benchmarks.md, .png and .json
    python3 benchmarks/peers.py --quick    # smoke run
    python3 benchmarks/peers.py --report docs/benchmarks.json   # the docs again, no run

The script creates its own virtualenv, `.bench-venv/` at the repository root, from
benchmarks/peers-requirements.txt plus tracekit installed editable, and re-runs
itself there, so the peers never enter tracekit's dependencies. Variants, each in
its own fresh interpreter (instrumentation is process-wide state):

- `bare`: the SDKs alone, and `control`: bare again (the noise floor);
- `tracekit`: `tracekit.{openai,anthropic,gemini}.autolog()`, default file store;
- `mlflow`: `mlflow.{openai,anthropic,gemini}.autolog()`, a SQLite store;
- `openinference`: OpenInference's OpenAI and Anthropic instrumentors;
- `otel-openai-v2`: opentelemetry-instrumentation-openai-v2 (OpenAI only);

the two OpenTelemetry variants with an SDK `TracerProvider`, a `BatchSpanProcessor`
and a `ConsoleSpanExporter` writing one JSON line per span to a file. The variants'
order rotates round by round, medians are taken over rounds, and ratios to `bare`
within a round. The figures live in benchmarks/peerbench/ (one module each); the run
saves its results to a JSON file, from which peerbench/report.py writes the page and
the chart. See benchmarks/README.md for what each figure is.

Options: `--quick`, `--only SUBSTRING` (figure groups: latency, check, cpu, memory,
exit; results and report then go to benchmarks/results/), `--rounds N` (latency and
CPU rounds), `--scale FACTOR` (call counts and time budgets multiplied: `--scale 0.1`
runs the full run's shape in a fraction of its time), `--server`/`--no-server`
(whole-process CPU against a real `mlflow server`; default: in the full run only),
`--verbose` (children's stderr), `--no-venv` (run with the current interpreter),
`--profile` (pyinstrument of a tracekit child on the mock transport), `--report FILE`
(write the docs from a saved results file, nothing run). The sizes of both runs are
in peerbench/plan.py.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import machine, revision  # noqa: E402
from peerbench import check, cpu, environment, latency, memory, process_exit, profiling, report  # noqa: E402  # noqa: E402
from peerbench.plan import GROUPS, PLANS, Context  # noqa: E402
from peerbench.workload import load_cassettes  # noqa: E402

CHILDREN = {
    "latency": latency.child_latency,
    "check": check.child_check,
    "cpu": cpu.child_cpu,
    "memory": memory.child_memory,
    "exit": process_exit.child_exit,
    "profile": profiling.child_profile,
}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run")
    parser.add_argument(
        "--only",
        default="",
        help="figure groups whose name contains this: latency (also import + autolog and the "
        "first call), check, cpu, memory, exit; the report goes to benchmarks/results/",
    )
    parser.add_argument("--rounds", type=int, help="latency and CPU rounds (full run: 8)")
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply call counts and time budgets (e.g. 0.1: the full run's shape, shrunk)",
    )
    parser.add_argument(
        "--server",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="whole-process CPU against a real mlflow server too (default: full run only)",
    )
    parser.add_argument("--verbose", action="store_true", help="show the children's stderr")
    parser.add_argument("--no-venv", action="store_true", help="use the current interpreter")
    parser.add_argument("--profile", action="store_true", help="pyinstrument a tracekit child")
    parser.add_argument(
        "--report", type=Path, metavar="RESULTS", help="write the docs from a saved results file"
    )
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def measure(args: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    """Run the figure groups `--only` selects; their raw results by group."""
    stalled = environment.StalledServer()
    urls = {"stalled": stalled.url, "refusing": environment.refusing_url()}
    groups = {
        "latency": lambda: latency.measure(ctx),
        "check": lambda: check.measure(ctx),
        "cpu": lambda: cpu.measure(ctx),
        "memory": lambda: memory.measure(ctx, stalled.url),
        "exit": lambda: process_exit.measure(ctx, urls),
    }
    results: dict[str, Any] = {"group_s": {}}
    try:
        for group in GROUPS:
            if args.only in group:
                t0 = time.perf_counter()
                results[group] = groups[group]()
                results["group_s"][group] = time.perf_counter() - t0
    finally:
        stalled.close()
        ctx.close()
    return results


def main() -> int:
    args = parse()
    if args.child:
        kind, spec = args.child
        CHILDREN[kind](json.loads(spec))
        return 0
    if not args.no_venv and not environment.in_venv():
        environment.ensure_venv()
        argv = [str(environment.venv_python()), str(Path(__file__).resolve()), *sys.argv[1:]]
        os.execv(argv[0], argv)  # noqa: S606 - re-run in .bench-venv/
    if args.report:  # in .bench-venv/ too, which has matplotlib for the chart
        return report.main([str(args.report)])
    plan = dict(PLANS["quick" if args.quick else "full"])
    if args.server is not None:
        plan["server"] = args.server
    if args.rounds:
        plan["latency_rounds"] = plan["cpu_rounds"] = args.rounds
    ctx = Context(
        plan, scale=args.scale, quick=args.quick, verbose=args.verbose, bodies=load_cassettes()
    )
    if args.profile:
        return profiling.run(ctx)

    started = time.perf_counter()
    load = os.getloadavg()[0]
    measured = measure(args, ctx)
    results = {
        "meta": {
            "quick": args.quick,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": revision(),
            "elapsed_s": time.perf_counter() - started,
            "load": [load, os.getloadavg()[0]],
            "machine": machine(),
            "versions": environment.versions(),
            "scale": args.scale,
            "only": args.only,
            "plan": plan,
            "group_s": measured.pop("group_s"),
            "notes": ctx.notes,
            "install_notes": environment.install_notes() if not args.no_venv else [],
        },
        **measured,
    }
    if args.only:
        out = HERE / "results"
        out.mkdir(exist_ok=True)
        saved, doc, chart = out / "peers.json", out / "peers.md", None
    else:
        saved, doc, chart = report.RESULTS, report.DOC, report.CHART
    saved.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    page = report.write(results, doc, chart)
    print()
    print(page, end="")
    print(
        f"\n(results saved to {os.path.relpath(saved)}"
        + (", docs/ left alone)" if args.only else ")")
    )
    _, checks = report.summarize(results)
    if any(checks.problem(v, c) for v in checks.checks for c in checks.checks[v]):
        print("\n!! some variants did not record every call; see the correctness table")
    return 0


if __name__ == "__main__":
    sys.exit(main())
