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

import json
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

try:
    from tests.server_process import ServerProcess, ServerStartError
    from tests.server_process import free_port as free_port  # re-exported for the tests
    from tests.venvs import VenvUnavailable, pinned_python
except ImportError:  # loaded by its path from a venv whose `tests` is another package (benchmarks)
    import importlib.util
    import sys

    def _sibling(name: str) -> Any:
        spec = importlib.util.spec_from_file_location(
            f"tracekit_tests_{name}", Path(__file__).with_name(f"{name}.py")
        )
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module

    _servers, _venvs = _sibling("server_process"), _sibling("venvs")
    ServerProcess, ServerStartError, free_port = (
        _servers.ServerProcess, _servers.ServerStartError, _servers.free_port,
    )  # fmt: skip
    VenvUnavailable, pinned_python = _venvs.VenvUnavailable, _venvs.pinned_python

MLFLOW_REQUIREMENT = "mlflow==3.17.2"
VENV_ENV_VAR = "TRACEKIT_TEST_MLFLOW_VENV"
READER = Path(__file__).resolve().parent / "mlflow_read.py"

_READ_TIMEOUT_S = 120.0


class MlflowUnavailable(VenvUnavailable):
    """The MLflow virtualenv could not be found or created."""


class MlflowServerError(ServerStartError):
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


class MlflowServer(ServerProcess):
    """``mlflow server`` on 127.0.0.1 in its own process group, with a SQLite store."""

    name = "mlflow"
    health_path = "/health"
    start_error = MlflowServerError

    def __init__(
        self,
        python: Path,
        workdir: Path | None = None,
        *,
        startup_timeout: float = 60.0,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(python, workdir, startup_timeout=startup_timeout)
        self.env = dict(env or {})  # server settings, e.g. MLFLOW_USE_BATCH_SPAN_PROCESSOR

    def command(self) -> list[str]:
        return [
            str(self.python.parent / "mlflow"), "server",
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{self.workdir / 'mlflow.db'}",
            "--default-artifact-root", str(self.workdir / "artifacts"),
        ]  # fmt: skip

    def environment(self) -> dict[str, str]:
        # MLFLOW_MODEL_CATALOG_URI="": no download of a model price list (offline it stalls
        # the first span of every provider for about 7 s).
        return _clean_env(
            MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_MODEL_CATALOG_URI="", **self.env
        )


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
