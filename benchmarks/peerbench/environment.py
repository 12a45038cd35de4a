"""The peers' environment: `.bench-venv/`, their versions, the MLflow server, the
destinations that stall or refuse."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent  # benchmarks/
REPO = HERE.parent
VENV = REPO / ".bench-venv"
REQUIREMENTS = HERE / "peers-requirements.txt"
INSTALL_NOTES = VENV / ".install-notes"
# the distributions whose versions the report names
PACKAGES = [
    "tracekit",
    "openai",
    "anthropic",
    "google-genai",
    "httpx2",
    "mlflow",
    "openinference-instrumentation-openai",
    "openinference-instrumentation-anthropic",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation-openai-v2",
    "opentelemetry-util-genai",
]


def venv_python() -> Path:
    return VENV / "bin" / "python"


def in_venv() -> bool:
    """Whether this interpreter is .bench-venv/'s."""
    return Path(sys.prefix).resolve() == VENV.resolve()


def install_notes() -> list[str]:
    """What could not be installed into .bench-venv/ when it was built."""
    if not INSTALL_NOTES.exists():
        return []
    return [n for n in INSTALL_NOTES.read_text().splitlines() if n]


def ensure_venv() -> list[str]:
    """Build .bench-venv/ when the requirements changed; return notes on what failed."""
    stamp = VENV / ".requirements-sha256"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == wanted and venv_python().exists():
        return install_notes()
    print(f"building {VENV} (a few minutes, once) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(venv_python()), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "-U", "pip"], check=False)
    editable = f"{REPO}[openai,anthropic,gemini]"
    notes: list[str] = []
    done = subprocess.run([*pip, "-r", str(REQUIREMENTS), "-e", editable], check=False)
    if done.returncode != 0:
        # one requirement at a time, so that one peer that fails leaves the others
        subprocess.run([*pip, "-e", editable], check=True)
        for line in REQUIREMENTS.read_text().splitlines():
            requirement = line.split("#")[0].strip()
            if requirement and subprocess.run([*pip, requirement], check=False).returncode:
                notes.append(f"could not install {requirement}")
    INSTALL_NOTES.write_text("\n".join(notes))
    stamp.write_text(wanted)
    return notes


def versions() -> str:
    """The installed version of every package the report names."""
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for name in PACKAGES:
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    return ", ".join(parts)


# -- the MLflow tracking server ----------------------------------------------------------


def mlflow_server() -> Any:
    """tests/mlflow_server.py, imported from its path (the repository's tests/ is no
    package, and a `tests` package installed in the venv must not shadow it)."""
    if "peers_mlflow_server" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "peers_mlflow_server", REPO / "tests" / "mlflow_server.py"
        )
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["peers_mlflow_server"] = module
        spec.loader.exec_module(module)
    return sys.modules["peers_mlflow_server"]


def start_mlflow_server() -> tuple[Any, Path]:
    """A running `mlflow server` (SQLite store, one worker) and the Python it runs on."""
    from importlib.metadata import version

    ms = mlflow_server()
    print("starting mlflow server ...", flush=True)
    # this venv's mlflow is the same pin as the tests' MLflow venv: no second install
    python = Path(sys.executable)
    if f"mlflow=={version('mlflow')}" != ms.MLFLOW_REQUIREMENT:
        python = ms.mlflow_python()
    # its own temporary directory (SQLite store), removed when it stops
    server = ms.MlflowServer(python, startup_timeout=120)
    server.start()
    return server, python


def count_traces(server: Any, experiment_id: str) -> int | None:
    """Traces of an experiment in the MLflow server's SQLite store (None: unreadable)."""
    try:
        with contextlib.closing(sqlite3.connect(server.workdir / "mlflow.db", timeout=30)) as db:
            row = db.execute(
                "SELECT COUNT(*) FROM trace_info WHERE experiment_id = ?", (int(experiment_id),)
            ).fetchone()
    except sqlite3.Error:
        return None
    return int(row[0])


# -- destinations that never answer ------------------------------------------------------


class StalledServer:
    """Accepts connections and reads requests on 127.0.0.1, never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    @staticmethod
    def _drain(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while conn.recv(65536):
                pass

    def close(self) -> None:
        self.sock.close()
        for conn in self.connections:
            with contextlib.suppress(OSError):
                conn.close()


def refusing_url() -> str:
    """A loopback port nothing listens on: connections to it are refused."""
    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{refused.getsockname()[1]}"
    refused.close()
    return url
