"""Running a program, or a snippet of Python, in a fresh process as a user would."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path


def run_command(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60,
    returncode: int | None = 0,
) -> subprocess.CompletedProcess[str]:
    """`argv` run to its end, its output captured as UTF-8 text; it must exit with
    `returncode` (None: any), else the assertion shows its stderr's end."""
    done = subprocess.run(
        list(argv),
        env=None if env is None else dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        check=False,
    )
    if returncode is not None:
        assert done.returncode == returncode, done.stderr[-3000:]
    return done


def run_python(
    code: str,
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60,
    returncode: int | None = 0,
) -> subprocess.CompletedProcess[str]:
    """`python -c code *args` in a fresh interpreter (see `run_command`)."""
    argv = [sys.executable, "-c", code, *args]
    return run_command(argv, env=env, cwd=cwd, timeout=timeout, returncode=returncode)
