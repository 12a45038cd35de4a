"""Running a snippet of Python in a fresh interpreter, as a user's program would run."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def run_python(
    code: str,
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60,
    returncode: int | None = 0,
) -> subprocess.CompletedProcess[str]:
    """`python -c code *args`, its output captured as UTF-8 text; it must exit with
    `returncode` (None: any), else the assertion shows its stderr's end."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
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
