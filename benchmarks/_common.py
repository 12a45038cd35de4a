"""What the benchmark scripts share (they run as `python benchmarks/NAME.py`)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

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
# Variables that would configure tracekit, MLflow, OpenTelemetry or an SDK (its key, its
# base URL) in a child behind our back.
CONFIG_PREFIXES = ("TRACEKIT_", "MLFLOW_", "OTEL_", "OPENAI_", "ANTHROPIC_", "GOOGLE_")
US = 1_000.0  # ns per µs


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


def worker_cpu_s() -> float:
    """CPU seconds used so far by the tracekit export thread (0 if not started)."""
    for thread in threading.enumerate():
        if thread.name == "tracekit-export" and thread.native_id is not None:
            task = f"/proc/self/task/{thread.native_id}"
            try:
                with open(f"{task}/schedstat") as schedstat:  # ns on the CPU
                    return int(schedstat.read().split()[0]) / 1e9
            except (OSError, ValueError, IndexError):
                pass
            try:
                with open(f"{task}/stat") as stat:  # clock ticks: coarser
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                return 0.0
            ticks = int(fields[11]) + int(fields[12])  # utime + stime
            return ticks / os.sysconf("SC_CLK_TCK")
    return 0.0


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without tracekit/MLflow/OTel/SDK settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(CONFIG_PREFIXES)}
    env.update(extra or {})
    return env


@dataclass
class Finished:
    """A child process that has ended: what it printed, how long it took, its own CPU."""

    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    cpu_s: float  # user + system of this child alone (wait4 on its pid)
    ended: float  # time.time() when wait4 returned
    killed: bool  # it outlived its timeout

    def results(self) -> list[dict[str, Any]]:
        """What it emitted (`emit`), in order."""
        return [
            json.loads(line[len(RESULT_PREFIX) :])
            for line in self.stdout.splitlines()
            if line.startswith(RESULT_PREFIX)
        ]


def spawn(
    command: list[str], *, env: dict[str, str], cwd: str, timeout: float | None = None
) -> Finished:
    """Run a child to its end; kill it after `timeout` seconds.

    Its CPU is read with `wait4` on its pid, so that children may run in parallel and
    each still gets its own figure; stdout and stderr are read on threads so that a
    chatty child never blocks on a full pipe.
    """
    t0 = time.time()
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    streams: dict[str, str] = {}
    readers = [
        threading.Thread(target=lambda f=f, k=k: streams.__setitem__(k, f.read()), daemon=True)
        for k, f in (("out", proc.stdout), ("err", proc.stderr))
    ]
    for reader in readers:
        reader.start()
    killed = threading.Event()

    def kill() -> None:
        killed.set()
        with contextlib.suppress(OSError):
            proc.kill()

    timer = threading.Timer(timeout, kill) if timeout is not None else None
    if timer is not None:
        timer.start()
    _pid, wait_status, usage = os.wait4(proc.pid, 0)
    ended = time.time()
    if timer is not None:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(wait_status)
    for reader in readers:
        reader.join(5)
    return Finished(
        returncode=proc.returncode,
        stdout=streams.get("out", ""),
        stderr=streams.get("err", ""),
        wall_s=ended - t0,
        cpu_s=usage.ru_utime + usage.ru_stime,
        ended=ended,
        killed=killed.is_set(),
    )


def echo_stderr(stderr: str, limit: int = 4000) -> None:
    """A child's stderr, indented under the parent's progress lines."""
    if stderr.strip():
        print("    | " + stderr.strip()[-limit:].replace("\n", "\n    | "), flush=True)


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
    done = spawn(
        [sys.executable, os.path.abspath(script), "--child", *args],
        env=env,
        cwd=cwd,
        timeout=timeout,
    )
    if done.killed:
        raise ChildError(f"benchmark child {args[:1]} timed out after {timeout:.0f} s")
    if verbose:
        echo_stderr(done.stderr)
    if echo:
        print(done.stdout)
    results = done.results()
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


T = TypeVar("T")
R = TypeVar("R")


def run_parallel(fn: Callable[[T], R], jobs: Iterable[T], workers: int) -> list[R]:
    """fn(job) for each job, `workers` at a time; results in the jobs' order."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, jobs))


# -- rounds: interleaved variants and the bare-vs-bare control --------------------------


def rotated(order: Sequence[T], index: int) -> list[T]:
    """`order` started at its `index`-th element (mod its length): over rounds every
    variant takes every position in turn, so none always runs first (or last)."""
    shift = index % len(order)
    return [*order[shift:], *order[:shift]]


def spread(ratios: Sequence[float]) -> str:
    """Median and range of ratios over rounds, `1.004 (0.981-1.032)` with an en dash.

    Printed for the bare-vs-bare control: a variant's ratio inside that range is noise,
    not cost."""
    return f"{statistics.median(ratios):.3f} ({min(ratios):.3f}–{max(ratios):.3f})"


# -- formatting and the machine ------------------------------------------------------


def fmt_us(ns: float) -> str:
    """A duration given in ns: `12.3 ms`, `1,008 µs` or `2.05 µs`."""
    if ns >= 10e6:
        return f"{ns / 1e6:,.1f} ms"
    return f"{ns / US:,.0f} µs" if ns >= 10 * US else f"{ns / US:.2f} µs"


def machine() -> str:
    """CPU model, cores, RAM, kernel and Python of this machine, for a report's header."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, IndexError, ValueError):
        kb = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        mem = f", {kb / 1024 / 1024:.1f} GiB RAM"
    return (
        f"{model}, {os.cpu_count()} CPUs{mem}, Linux {platform.release()}, "
        f"CPython {platform.python_version()}"
    )


def md_row(cells: Iterable[str]) -> str:
    """A Markdown table row, pipes inside the cells escaped."""
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def run_header(what: str, quick: bool, started: float, load: float, extra: str = "") -> str:
    """A report's title line: the run, the commit, Python, the machine's load before and
    after (`started`: `time.perf_counter()` then; `extra`: more to say, ending in ", ")."""
    return (
        f"## {what} ({'quick' if quick else 'full'} run, {revision()}, "
        f"Python {sys.version.split()[0]}, {extra}{os.cpu_count()} CPUs, "
        f"{time.perf_counter() - started:.0f} s, "
        f"load average {load:.2f} before / {os.getloadavg()[0]:.2f} after)"
    )


def print_report(
    title: str, rows: Sequence[Sequence[str]], notes: list[str], failures: list[str]
) -> int:
    """The usual table (measurement, result, target, details), its notes and the
    correctness failures; the exit status (1 when a correctness check failed)."""
    print()
    print(title)
    print()
    print("| measurement | result | target | details |")
    print("|---|---|---|---|")
    for row in rows:
        print(md_row(row))
    for note in notes:
        print(f"\n{note}")
    if failures:
        print("\n**Correctness failures:**")
        for failure in failures:
            print(f"- {failure}")
        return 1
    return 0


def print_profile(prof: Any, sort: str, title: str, *restrictions: Any) -> None:
    """A cProfile's table, sorted by `sort` and cut by `restrictions` (as
    `pstats.Stats.print_stats` takes them), under a `### title` heading."""
    import io
    import pstats

    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats(sort).print_stats(*restrictions)
    print(f"\n### {title}\n", flush=True)
    print(text.getvalue(), flush=True)
