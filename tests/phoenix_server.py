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

import contextlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.server_process import ServerProcess, ServerStartError, free_port
from tests.venvs import VenvUnavailable, clean_env, pinned_python

PHOENIX_REQUIREMENT = "arize-phoenix==20.26.1"
VENV_ENV_VAR = "TRACEKIT_TEST_PHOENIX_VENV"


class PhoenixUnavailable(VenvUnavailable):
    """The Phoenix virtualenv could not be found or created."""


class PhoenixServerError(ServerStartError):
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


class PhoenixServer(ServerProcess):
    """``phoenix serve`` on 127.0.0.1 in its own process group, SQLite in its working dir."""

    name = "phoenix"
    health_path = "/healthz"
    start_error = PhoenixServerError

    def __init__(self, python: Path, workdir: Path | None = None) -> None:
        super().__init__(python, workdir, startup_timeout=120.0)

    @property
    def otlp_endpoint(self) -> str:
        """The OTLP/HTTP traces endpoint."""
        return f"{self.url}/v1/traces"

    def command(self) -> list[str]:
        return [str(self.python.parent / "phoenix"), "serve"]

    def environment(self) -> dict[str, str]:
        return _env(
            PHOENIX_HOST="127.0.0.1",
            PHOENIX_PORT=str(self.port),
            PHOENIX_GRPC_PORT=str(free_port()),
            PHOENIX_WORKING_DIR=str(self.workdir),
            PHOENIX_TELEMETRY_ENABLED="false",
        )

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
