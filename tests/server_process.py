"""A real server for tests: its own process group on a free loopback port, stopped whole.

:class:`ServerProcess` is what ``tests/mlflow_server.py`` and ``tests/phoenix_server.py`` share:
pick a free port, launch the command (retrying when the port was taken in between), wait until a
health URL answers 200, keep the log in the working directory, and stop the whole process
group (SIGTERM, then SIGKILL) so no worker outlives the test session. A subclass says what to
run (:meth:`command`, :meth:`environment`) and where its health check is.
"""

from __future__ import annotations

import atexit
import contextlib
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
from typing import TypeVar

_S = TypeVar("_S", bound="ServerProcess")


class ServerStartError(RuntimeError):
    """The server did not start (the message ends with its log tail)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False if no process is left in it."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # only zombies left, or the id was reused: nothing of ours
        return False
    return True


class ServerProcess:
    """A server command on 127.0.0.1 in its own process group, with its own working directory."""

    name = "server"
    health_path = "/health"
    start_error: type[ServerStartError] = ServerStartError

    def __init__(
        self, python: Path, workdir: Path | None = None, *, startup_timeout: float = 60.0
    ) -> None:
        self.python = python
        self._own_workdir = workdir is None
        self.workdir = (
            Path(tempfile.mkdtemp(prefix=f"tracekit-{self.name}-")) if workdir is None else workdir
        )
        self.log_path = self.workdir / "server.log"
        self.startup_timeout = startup_timeout
        self.port = 0
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None

    # -- what a subclass says -----------------------------------------------------------

    def command(self) -> list[str]:
        """The command line, serving on ``self.port``."""
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        """The server's environment."""
        return dict(os.environ)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self: _S) -> _S:
        """Start the server and wait until its health URL answers 200."""
        if self._proc is not None:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):  # the free port may be taken before the server binds it
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            try:
                self._launch()
                return self
            except ServerStartError:
                if attempt == 2 or "address already in use" not in self.log_tail().lower():
                    raise
        return self

    def _launch(self) -> None:
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self.environment(), cwd=self.workdir, start_new_session=True,
            )  # fmt: skip
        atexit.register(self.stop)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._stop_group()
                raise self.start_error(f"{self.name} exited ({code}):\n{self.log_tail()}")
            try:
                url = f"{self.url}{self.health_path}"
                with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback
                    if resp.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        self._stop_group()
        raise self.start_error(
            f"{self.name} not healthy after {self.startup_timeout:.0f} s:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def _stop_group(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        atexit.unregister(self.stop)
        pgid = proc.pid  # start_new_session: the server leads its own group
        signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        while time.monotonic() < deadline and signal_group(pgid, 0):
            time.sleep(0.05)  # children (a uvicorn worker) may outlive the leader briefly
        if signal_group(pgid, signal.SIGKILL):
            time.sleep(0.1)
        if proc.poll() is None:
            proc.wait()

    def stop(self) -> None:
        """Stop the whole process group: SIGTERM, up to 10 s, then SIGKILL. Idempotent."""
        self._stop_group()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
