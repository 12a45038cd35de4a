"""A real Arize Phoenix server for tests, run from a separate virtualenv.

Phoenix is not a dependency of tracekit's test environment: :func:`phoenix_python` finds (or
builds once, see ``tests/venvs.py``) a virtualenv holding :data:`PHOENIX_REQUIREMENT`, and
:class:`PhoenixServer` runs ``phoenix serve`` from it on free loopback ports (HTTP and gRPC),
with its SQLite database in a temporary working directory::

    with PhoenixServer(phoenix_python()) as phoenix:
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = phoenix.url   # OTLP/HTTP at /v1/traces
        ...
        spans = phoenix.spans("default")   # Phoenix's REST API, what its UI reads

Phoenix accepts OTLP over protobuf only (JSON gets ``415 Unsupported content type``).
``$TRACEKIT_TEST_PHOENIX_VENV`` names a virtualenv to use instead.
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
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.venvs import VenvUnavailable, clean_env, pinned_python

PHOENIX_REQUIREMENT = "arize-phoenix==20.26.1"
VENV_ENV_VAR = "TRACEKIT_TEST_PHOENIX_VENV"


class PhoenixUnavailable(VenvUnavailable):
    """The Phoenix virtualenv could not be found or created."""


class PhoenixServerError(RuntimeError):
    """The Phoenix server did not start (the message ends with its log tail)."""


def _env(**extra: str) -> dict[str, str]:
    """The environment without PHOENIX_/OTEL_ variables (they would configure the server)."""
    return clean_env(("PHOENIX_", "OTEL_"), **extra)


def phoenix_python() -> Path:
    """The python of the Phoenix virtualenv, building it on first use."""
    distribution, version = PHOENIX_REQUIREMENT.split("==")
    try:
        return pinned_python(
            distribution, version, "phoenix", override_var=VENV_ENV_VAR, env=_env()
        )
    except VenvUnavailable as e:
        raise PhoenixUnavailable(str(e)) from e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PhoenixServer:
    """``phoenix serve`` on 127.0.0.1 in its own process group, SQLite in a temporary dir."""

    def __init__(self, python: Path, *, startup_timeout: float = 120.0) -> None:
        self.python = python
        self.workdir = Path(tempfile.mkdtemp(prefix="tracekit-phoenix-"))
        self.log_path = self.workdir / "server.log"
        self.startup_timeout = startup_timeout
        self.port = 0
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def otlp_endpoint(self) -> str:
        """The OTLP/HTTP traces endpoint."""
        return f"{self.url}/v1/traces"

    def start(self) -> PhoenixServer:
        """Start the server and wait until ``GET /healthz`` answers 200."""
        if self._proc is not None:
            return self
        for attempt in range(3):  # a free port may be taken before the server binds it
            self.port = _free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            try:
                self._launch()
                return self
            except PhoenixServerError:
                if attempt == 2 or "address already in use" not in self.log_tail().lower():
                    raise
        return self

    def _launch(self) -> None:
        env = _env(
            PHOENIX_HOST="127.0.0.1",
            PHOENIX_PORT=str(self.port),
            PHOENIX_GRPC_PORT=str(_free_port()),
            PHOENIX_WORKING_DIR=str(self.workdir),
            PHOENIX_TELEMETRY_ENABLED="false",
        )
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                [str(self.python.parent / "phoenix"), "serve"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, cwd=self.workdir, start_new_session=True,
            )  # fmt: skip
        atexit.register(self.stop)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self.stop(remove=False)
                raise PhoenixServerError(f"phoenix serve exited ({code}):\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as resp:  # noqa: S310
                    if resp.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.2)
        self.stop(remove=False)
        raise PhoenixServerError(
            f"phoenix not healthy after {self.startup_timeout:.0f} s:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def get(self, path: str, **params: Any) -> Any:
        """GET a JSON document from Phoenix's REST API."""
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        url = f"{self.url}{path}" + (f"?{query}" if query else "")
        with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 - loopback
            return json.loads(resp.read())

    def spans(self, project: str = "default") -> list[dict[str, Any]]:
        """Every span of a project as Phoenix's REST API returns it (all pages)."""
        out: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = self.get(
                f"/v1/projects/{urllib.parse.quote(project)}/spans", cursor=cursor, limit=1000
            )
            out.extend(page.get("data") or [])
            cursor = page.get("next_cursor")
            if not cursor:
                return out

    def wait_for_spans(
        self, count: int, project: str = "default", timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """Poll until the project holds ``count`` spans (Phoenix ingests in the background)."""
        deadline = time.monotonic() + timeout
        spans: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            with contextlib.suppress(urllib.error.HTTPError):  # 404 until the project exists
                spans = self.spans(project)
                if len(spans) >= count:
                    return spans
            time.sleep(0.2)
        raise AssertionError(f"Phoenix has {len(spans)} of {count} spans after {timeout} s")

    def stop(self, remove: bool = True) -> None:
        """Stop the whole process group (SIGTERM, then SIGKILL after 10 s). Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            atexit.unregister(self.stop)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if remove:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> PhoenixServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
