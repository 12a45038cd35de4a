"""Interpreter start-up with tracekit's zero-code hook (`tracekit-autostart.pth`).

    .venv/bin/python benchmarks/startup.py           # about 20 seconds
    .venv/bin/python benchmarks/startup.py --runs 50

Figures (medians over interleaved runs of fresh interpreters of this environment):

- the hook itself with `TRACEKIT_AUTOLOG` unset: `site.addpackage()` of the
  `.pth` file, timed in-process over many repetitions (what every interpreter
  of the environment pays; target ≤ 5 ms);
- `python -c pass` with the variable unset and set to `all` (only the
  standard-library guard runs until an SDK is imported);
- `python -c "import openai"` unset, and set (the SDK import turns tracing on).
"""

from __future__ import annotations

import argparse
import os
import site
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from _common import revision, status

PTH = "tracekit-autostart.pth"


def hook_cost_us(repeat: int = 2000) -> float:
    """Microseconds for site to process the .pth line with the variable unset."""
    sitedir = sysconfig.get_paths()["purelib"]
    if not (Path(sitedir) / PTH).is_file():
        sys.exit(f"{PTH} is not in {sitedir}: install tracekit with pip first")
    saved = os.environ.pop("TRACEKIT_AUTOLOG", None)
    try:
        samples = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(repeat):
                site.addpackage(sitedir, PTH, set(sys.path))
            samples.append((time.perf_counter() - start) / repeat * 1e6)
    finally:
        if saved is not None:
            os.environ["TRACEKIT_AUTOLOG"] = saved
    return statistics.median(samples)


def start_ms(code: str, autolog: str | None) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEKIT_")}
    if autolog is not None:
        env["TRACEKIT_AUTOLOG"] = autolog
    env["TRACEKIT_TRACKING_URI"] = os.devnull + ".tracekit-bench"  # never written: no call
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    return (time.perf_counter() - start) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    cases = {
        "python -c pass, TRACEKIT_AUTOLOG unset": ("pass", None),
        "python -c pass, TRACEKIT_AUTOLOG=all": ("pass", "all"),
        "import openai, TRACEKIT_AUTOLOG unset": ("import openai", None),
        "import openai, TRACEKIT_AUTOLOG=openai": ("import openai", "openai"),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.runs):  # interleaved, so drift in machine load hits every case
        for name, (code, autolog) in cases.items():
            times[name].append(start_ms(code, autolog))
    hook = hook_cost_us()
    print(f"# interpreter start-up, {revision()}, {args.runs} runs, load {os.getloadavg()[0]:.2f}")
    print()
    print("| measurement | median | target |")
    print("|---|---|---|")
    print(f"| the hook, TRACEKIT_AUTOLOG unset | {hook:.1f} µs | ≤ 5 ms: {status(hook < 5000)} |")
    for name, samples in times.items():
        print(f"| {name} | {statistics.median(samples):.1f} ms | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
