"""A real ``mlflow server`` for tests, run from a separate virtualenv.

MLflow is not a dependency of tracekit's test environment. :func:`mlflow_python` finds (or
creates, once, under a file lock) a virtualenv holding :data:`MLFLOW_REQUIREMENT`;
:class:`MlflowServer` runs the tracking server from it on a free loopback port with a SQLite
store, and :func:`read_traces` / :func:`read_trace` read what it stored by running
``tests/mlflow_read.py`` with that virtualenv's python::

    python = mlflow_python()  # raises MlflowUnavailable if it cannot be set up
    with MlflowServer(python, tmp_path) as server:
        experiment_id = create_experiment(server.url, "exp")
        ...
        traces = read_traces(python, server.url, experiment_id)

The virtualenv is ``$TRACEKIT_TEST_MLFLOW_VENV`` if set, else ``mlflow-<pin>`` in the suite's
cache directory outside the checkout (``tests/venvs.py`` says where and how to clear it).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

try:
    from tests.venvs import VenvUnavailable, pinned_python
except ImportError:  # loaded by its path from a venv whose `tests` is another package (benchmarks)
    import importlib.util
    import sys

    _spec = importlib.util.spec_from_file_location(
        "tracekit_test_venvs", Path(__file__).with_name("venvs.py")
    )
    assert _spec is not None
    assert _spec.loader is not None
    _venvs = importlib.util.module_from_spec(_spec)
    sys.modules[_spec.name] = _venvs
    _spec.loader.exec_module(_venvs)
    VenvUnavailable, pinned_python = _venvs.VenvUnavailable, _venvs.pinned_python

MLFLOW_REQUIREMENT = "mlflow==3.17.2"
VENV_ENV_VAR = "TRACEKIT_TEST_MLFLOW_VENV"
READER = Path(__file__).resolve().parent / "mlflow_read.py"

_READ_TIMEOUT_S = 120.0


class MlflowUnavailable(VenvUnavailable):
    """The MLflow virtualenv could not be found or created."""


class MlflowServerError(RuntimeError):
    """The MLflow server did not start (the message ends with its log tail)."""


class MlflowReadError(RuntimeError):
    """The reader script failed; ``error_code`` is MLflow's, e.g. ``RESOURCE_DOES_NOT_EXIST``."""

    def __init__(self, message: str, error_code: str | None = None) -> None:
        super().__init__(message)
        self.error_code = error_code


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _clean_env(**extra: str) -> dict[str, str]:
    """The current environment without MLFLOW_* variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(extra)
    return env


def mlflow_python() -> Path:
    """The python of the MLflow virtualenv, creating it if needed (see ``tests/venvs.py``).

    ``$TRACEKIT_TEST_MLFLOW_VENV`` names a virtualenv to use as is if it imports mlflow;
    otherwise the cache's ``mlflow-<pin>`` folder must hold exactly :data:`MLFLOW_REQUIREMENT`
    (it is built on first use). Raises :class:`MlflowUnavailable` if it cannot be set up.
    """
    distribution, version = MLFLOW_REQUIREMENT.split("==")
    try:
        return pinned_python(
            distribution, version, "mlflow", override_var=VENV_ENV_VAR, env=_clean_env()
        )
    except VenvUnavailable as e:
        raise MlflowUnavailable(str(e)) from e


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MlflowServer:
    """``mlflow server`` on 127.0.0.1 in its own process group, with a SQLite store."""

    def __init__(
        self,
        python: Path,
        workdir: Path | None = None,
        *,
        startup_timeout: float = 60.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.python = python
        self.env = dict(env or {})  # server settings, e.g. MLFLOW_USE_BATCH_SPAN_PROCESSOR
        self._own_workdir = workdir is None
        self.workdir = (
            Path(tempfile.mkdtemp(prefix="tracekit-mlflow-")) if workdir is None else workdir
        )
        self.log_path = self.workdir / "server.log"
        self.startup_timeout = startup_timeout
        self.port = 0
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> MlflowServer:
        """Start the server and wait until ``GET /health`` answers 200."""
        if self._proc is not None:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        attempt = 0
        while True:  # the free port may be taken before the server binds it
            attempt += 1
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            try:
                self._launch()
                return self
            except MlflowServerError:
                if attempt >= 3 or "address already in use" not in self.log_tail().lower():
                    raise

    def _launch(self) -> None:
        args = [
            str(self.python.parent / "mlflow"), "server",
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{self.workdir / 'mlflow.db'}",
            "--default-artifact-root", str(self.workdir / "artifacts"),
        ]  # fmt: skip
        # MLFLOW_MODEL_CATALOG_URI="": no download of a model price list (offline it stalls
        # the first span of every provider for about 7 s).
        env = _clean_env(
            MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_MODEL_CATALOG_URI="", **self.env
        )
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, cwd=self.workdir, start_new_session=True,
            )  # fmt: skip
        atexit.register(self.stop)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self.stop()
                raise MlflowServerError(f"mlflow server exited ({code}):\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:  # noqa: S310
                    if resp.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        self.stop()
        raise MlflowServerError(
            f"mlflow server not healthy after {self.startup_timeout:.0f} s:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log."""
        try:
            return _tail(self.log_path.read_text(errors="replace"), lines)
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the whole process group: SIGTERM, up to 10 s, then SIGKILL. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        atexit.unregister(self.stop)
        pgid = proc.pid  # start_new_session: the server leads its own group
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        while time.monotonic() < deadline and _signal_group(pgid, 0):
            time.sleep(0.05)  # children (the uvicorn worker) may outlive the leader briefly
        if _signal_group(pgid, signal.SIGKILL):
            time.sleep(0.1)
        if proc.poll() is None:
            proc.wait()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> MlflowServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False if no process is left in it."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # only zombies left, or the id was reused: nothing of ours
        return False
    return True


def create_experiment(url: str, name: str) -> str:
    """Create an experiment over the REST API and return its id."""
    req = urllib.request.Request(  # noqa: S310 - an http:// URL
        f"{url}/api/2.0/mlflow/experiments/create",
        data=json.dumps({"name": name}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
        return str(json.loads(resp.read())["experiment_id"])


def _read(python: Path, *args: str) -> Any:
    env = _clean_env(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="30")
    try:
        done = subprocess.run(
            [str(python), str(READER), *args],
            capture_output=True, text=True, timeout=_READ_TIMEOUT_S, env=env,
        )  # fmt: skip
    except subprocess.TimeoutExpired as e:
        raise MlflowReadError(f"mlflow_read.py {' '.join(args)} timed out") from e
    try:
        out = json.loads(done.stdout)
    except json.JSONDecodeError:
        out = None
    if done.returncode != 0 or out is None:
        error = out if isinstance(out, dict) else {}
        raise MlflowReadError(
            f"mlflow_read.py {' '.join(args)} failed (exit {done.returncode}): "
            f"{error.get('error') or _tail(done.stderr or done.stdout)}",
            error.get("error_code"),
        )
    return out


def read_traces(python: Path, tracking_uri: str, experiment_id: str) -> list[dict[str, Any]]:
    """All traces of an experiment, oldest first, as dicts (see ``mlflow_read.py``)."""
    traces: list[dict[str, Any]] = _read(python, tracking_uri, "search", experiment_id)
    return traces


def read_trace(python: Path, tracking_uri: str, trace_id: str) -> dict[str, Any]:
    """One trace (``tr-<32 hex>``) as a dict; :class:`MlflowReadError` if it is missing."""
    trace: dict[str, Any] = _read(python, tracking_uri, "trace", trace_id)
    return trace
