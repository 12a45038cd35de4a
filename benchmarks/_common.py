"""What the benchmark scripts share (they run as `python benchmarks/NAME.py`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


def revision() -> str:
    """The commit measured, marked `+dirty` when src/ has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],  # noqa: S607
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown revision"
    return head + ("+dirty" if dirty else "")


def status(ok: bool) -> str:
    """PASS or MISS, for a target column."""
    return "PASS" if ok else "MISS"


# -- children: every figure is measured in a fresh interpreter --------------------------

RESULT_PREFIX = "RESULT "
# Variables that would configure tracekit, MLflow or OpenTelemetry in a child behind our back.
CONFIG_PREFIXES = ("TRACEKIT_", "MLFLOW_", "OTEL_")


class ChildError(RuntimeError):
    """A benchmark child failed, printed no result or ran out of time."""


def emit(result: dict[str, Any]) -> None:
    """A child's result: one line on stdout that the parent picks out."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def rss_mb() -> float:
    """Resident set size of this process (VmRSS), in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without tracekit/MLflow/OTel settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(CONFIG_PREFIXES)}
    env.update(extra or {})
    return env


def run_child(
    script: str,
    args: list[str],
    *,
    env: dict[str, str],
    cwd: str,
    verbose: bool = False,
    timeout: float | None = None,
    echo: bool = False,
) -> list[dict[str, Any]]:
    """Run `python SCRIPT --child ARGS...` and return the results it emitted, in order.

    Raises ChildError when it exits non-zero, emits nothing or outlives `timeout`
    (it is killed then). With `verbose`, its stderr is echoed, indented; with `echo`,
    its stdout (a profile, say).
    """
    try:
        done = subprocess.run(
            [sys.executable, os.path.abspath(script), "--child", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:  # run() has killed it
        raise ChildError(f"benchmark child {args[:1]} timed out after {timeout:.0f} s") from e
    if verbose and done.stderr.strip():
        print("    | " + done.stderr.strip().replace("\n", "\n    | "))
    if echo:
        print(done.stdout)
    results = [
        json.loads(line[len(RESULT_PREFIX) :])
        for line in done.stdout.splitlines()
        if line.startswith(RESULT_PREFIX)
    ]
    if done.returncode != 0 or not results:
        raise ChildError(
            f"benchmark child {args[:1]} failed (exit {done.returncode}):\n{done.stderr[-3000:]}"
        )
    return results


def run_child_in_tmp(
    script: str,
    args: list[str],
    *,
    env_extra: dict[str, str] | None = None,
    store: bool = True,
    verbose: bool = False,
    timeout: float | None = None,
) -> dict[str, Any]:
    """`run_child` in a fresh temporary directory (its cwd), the file store inside it
    unless `store=False`; the child's last result."""
    with tempfile.TemporaryDirectory(prefix="tracekit-bench-") as tmp:
        extra = {"TRACEKIT_TRACKING_URI": os.path.join(tmp, "store")} if store else {}
        extra.update(env_extra or {})
        results = run_child(
            script, args, env=child_env(extra), cwd=tmp, verbose=verbose, timeout=timeout
        )
    return results[-1]
