"""Pinned virtualenvs for the real servers the suite runs (MLflow, Phoenix), outside the checkout.

The servers are not dependencies of tracekit's test environment: each runs from a virtualenv
of its own, built once on first use (a few minutes each: MLflow ~0.9 GB, Phoenix ~1 GB) under
a file lock, so concurrent pytest processes share one build. They live in a cache directory,
not in the checkout:

    $TRACEKIT_TEST_CACHE, else $XDG_CACHE_HOME/tracekit-tests, else ~/.cache/tracekit-tests

one folder per pin (``mlflow-3.17.2``, ``arize-phoenix-20.26.1``). ``rm -rf`` that directory to
clear them; a folder that no longer imports its package at the pinned version is rebuilt.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

_PIP_TIMEOUT_S = 1_200.0
_checked: dict[Path, Path] = {}


class VenvUnavailable(RuntimeError):  # noqa: N818 - the name says what it means
    """A pinned virtualenv could not be found or created."""


def cache_dir() -> Path:
    """Where the suite keeps its server virtualenvs."""
    configured = os.environ.get("TRACEKIT_TEST_CACHE")
    if configured:
        return Path(configured).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return (base / "tracekit-tests").resolve()


def python_or_skip(find: Callable[[], Path], what: str) -> Path:
    """The python `find()` returns (e.g. ``mlflow_python``); the test that needs it is
    skipped when its virtualenv cannot be set up, except under CI, where it fails."""
    import pytest

    try:
        return find()
    except VenvUnavailable as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{what} is unavailable under CI: {e}")
        pytest.skip(f"{what} is unavailable (set CI=true to fail instead): {e}")


def clean_env(prefixes: tuple[str, ...] = (), **extra: str) -> dict[str, str]:
    """The current environment without variables starting with ``prefixes``, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not (prefixes and k.startswith(prefixes))}
    env.update(extra)
    return env


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _version(python: Path, module: str, env: dict[str, str]) -> str | None:
    """``module.__version__`` as ``python`` imports it, or None."""
    if not python.exists():
        return None
    try:
        done = subprocess.run(
            [str(python), "-c", f"import {module}; print({module}.__version__)"],
            capture_output=True, text=True, timeout=180, env=env,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    words = done.stdout.split()
    return words[-1] if done.returncode == 0 and words else None


def _run_or_raise(args: list[str], what: str) -> None:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise VenvUnavailable(f"{what} failed: {e}") from e
    if done.returncode != 0:
        raise VenvUnavailable(
            f"{what} failed (exit {done.returncode}):\n{_tail(done.stderr or done.stdout)}"
        )


def pinned_python(
    distribution: str,
    version: str,
    module: str,
    *,
    override_var: str | None = None,
    env: dict[str, str] | None = None,
) -> Path:
    """The python of a virtualenv holding ``distribution==version``, creating it if needed.

    ``module`` is what must import (its ``__version__`` must equal ``version``). A virtualenv
    named by ``$override_var`` is used as is if ``module`` imports there (any version).
    Raises :class:`VenvUnavailable` if it cannot be set up.
    """
    configured = os.environ.get(override_var) if override_var else None
    venv = (
        Path(configured).expanduser().resolve()
        if configured
        else cache_dir() / f"{distribution}-{version}"
    )
    if venv in _checked:
        return _checked[venv]
    python = venv / "bin" / "python"
    env = env if env is not None else clean_env()

    def usable() -> bool:
        found = _version(python, module, env)
        return found is not None and (bool(configured) or found == version)

    if not usable():
        if configured:
            raise VenvUnavailable(f"${override_var}={configured} does not import {module}")
        try:
            venv.parent.mkdir(parents=True, exist_ok=True)
            lock = open(f"{venv}.lock", "w")  # noqa: SIM115 - held across the install
        except OSError as e:
            raise VenvUnavailable(f"cannot create {venv}: {e}") from e
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another pytest process may be installing
            if not usable():
                if not python.exists():
                    _run_or_raise([sys.executable, "-m", "venv", str(venv)], "creating the venv")
                requirement = f"{distribution}=={version}"
                _run_or_raise(
                    [str(python), "-m", "pip", "install", "-q", requirement],
                    f"pip install {requirement} into {venv}",
                )
                if not usable():
                    raise VenvUnavailable(f"{python} still cannot import {module}=={version}")
    _checked[venv] = python
    return python
