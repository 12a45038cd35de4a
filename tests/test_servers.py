"""Real application servers with several workers: gunicorn (forked workers, with and
without --preload) and uvicorn (spawned workers), traced from the environment
(`TRACEKIT_AUTOLOG=openai`) plus the one-line middleware. Every worker exports its
own traces, and a graceful stop (SIGTERM to the server) delivers them all.

The app calls the OpenAI SDK against tracekit's fake provider server (the OpenAI
wire format on 127.0.0.1) and answers with its pid, the trace id and the usage the
SDK returned, so the test can match every response with a stored trace.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tracekit import _store
from tracekit._fake_server import FakeProviderServer

pytestmark = pytest.mark.timeout(300)

BIN = Path(sys.executable).parent

WSGI_APP = """
import json, os, time
import openai, tracekit, tracekit.wsgi

client = openai.OpenAI(api_key="test", base_url=os.environ["FAKE_URL"], max_retries=0)

def app(environ, start_response):
    reply = client.chat.completions.create(
        model="fake-mini", messages=[{"role": "user", "content": environ["PATH_INFO"]}]
    )
    time.sleep(0.3)  # a busy worker: concurrent requests reach the other one
    span = tracekit.get_current_span()
    body = json.dumps(
        {"pid": os.getpid(), "trace_id": span.trace_id, "total": reply.usage.total_tokens}
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]

application = tracekit.wsgi.TracekitMiddleware(app)
"""

ASGI_APP = """
import json, os, time
import openai, tracekit, tracekit.asgi

client = openai.AsyncOpenAI(api_key="test", base_url=os.environ["FAKE_URL"], max_retries=0)

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    reply = await client.chat.completions.create(
        model="fake-mini", messages=[{"role": "user", "content": scope["path"]}]
    )
    time.sleep(0.3)  # blocks this worker's loop: concurrent requests reach the other one
    span = tracekit.get_current_span()
    body = json.dumps(
        {"pid": os.getpid(), "trace_id": span.trace_id, "total": reply.usage.total_tokens}
    ).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})

application = tracekit.asgi.TracekitMiddleware(app)
"""


# The same app with tracing turned on in code (no TRACEKIT_AUTOLOG, so no start-up
# hook) and taking part in the lifespan protocol, as Starlette and FastAPI apps do.
ASGI_APP_IN_CODE = ASGI_APP.replace(
    "import openai, tracekit, tracekit.asgi\n",
    "import openai, tracekit, tracekit.asgi\ntracekit.openai.autolog()\n",
).replace(
    """    if scope["type"] != "http":
        return
""",
    """    if scope["type"] == "lifespan":
        while True:
            kind = (await receive())["type"].rpartition(".")[2]
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
""",
)


@pytest.fixture
def fake() -> Iterator[FakeProviderServer]:
    with FakeProviderServer() as server:
        yield server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(store: Path, fake: FakeProviderServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACEKIT_", "MLFLOW_"))}
    env.update(
        TRACEKIT_TESTING="1",
        TRACEKIT_AUTOLOG="openai",
        TRACEKIT_TRACKING_URI=str(store),
        TRACEKIT_EXPORT_INTERVAL="3600",  # only the graceful stop delivers
        FAKE_URL=fake.base_url + "/v1",
    )
    return env


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - 127.0.0.1
        return dict(json.loads(response.read()))


def _wait_until_up(url: str, server: subprocess.Popen[str], deadline: float) -> None:
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the server exited early: {server.communicate()[1][-2000:]}")
        try:
            with socket.create_connection(re.findall(r"//([^/]+)", url)[0].split(":"), 0.2):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail("the server did not start")


def _serve(command: list[str], env: dict[str, str], cwd: Path, port: int) -> list[dict[str, Any]]:
    """Start the server, send requests until both workers answered, stop it with
    SIGTERM; the answers."""
    server = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_until_up(f"http://127.0.0.1:{port}/", server, time.monotonic() + 60)
        answers: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        # Rounds of 4 concurrent requests until both workers have answered (workers
        # come up one by one; the first one up takes whatever arrives meanwhile).
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            while len({a["pid"] for a in answers}) < 2 and time.monotonic() < deadline:
                urls = [f"http://127.0.0.1:{port}/question-{len(answers) + i}" for i in range(4)]
                answers += pool.map(_get, urls)
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=60)
        assert server.returncode == 0, stderr[-2000:]
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    return answers


def _check(store: Path, answers: list[dict[str, Any]], program: str) -> None:
    assert len({a["pid"] for a in answers}) == 2, "both workers should have served"
    traces = {t["trace_id"]: t for t in _store.load(store)}
    assert set(traces) == {a["trace_id"] for a in answers}  # every worker exported its own
    for answer in answers:
        trace = traces[answer["trace_id"]]
        request, chat = sorted(trace["spans"], key=lambda s: s["start_time_ns"])
        assert request["name"].startswith("GET /question-")
        assert chat["parent_id"] == request["span_id"]
        assert chat["name"] == "chat fake-mini"
        assert chat["token_usage"]["total_tokens"] == answer["total"]
        assert trace["resource"]["service.name"] == program  # the default: the program's name


@pytest.mark.parametrize("preload", [False, True], ids=["fork-per-worker", "preload"])
def test_gunicorn_workers_each_export(tmp_path: Path, fake: FakeProviderServer, preload: bool):
    if not (BIN / "gunicorn").exists():
        pytest.skip("gunicorn is not installed in this environment")
    (tmp_path / "wsgi_app.py").write_text(WSGI_APP)
    store, port = tmp_path / "store", _free_port()
    command = [str(BIN / "gunicorn"), "--workers", "2", "--bind", f"127.0.0.1:{port}"]
    command += ["--graceful-timeout", "20", *(["--preload"] if preload else [])]
    answers = _serve([*command, "wsgi_app:application"], _env(store, fake), tmp_path, port)
    _check(store, answers, "gunicorn")


def test_uvicorn_workers_each_export(tmp_path: Path, fake: FakeProviderServer):
    pytest.importorskip("uvicorn", reason="uvicorn is not installed")
    (tmp_path / "asgi_app.py").write_text(ASGI_APP)
    store, port = tmp_path / "store", _free_port()
    command = [sys.executable, "-m", "uvicorn", "--workers", "2", "--port", str(port)]
    command += ["--host", "127.0.0.1", "--log-level", "warning", "asgi_app:application"]
    answers = _serve(command, _env(store, fake), tmp_path, port)
    _check(store, answers, "uvicorn")


def test_uvicorn_lifespan_shutdown_delivers_without_the_hook(
    tmp_path: Path, fake: FakeProviderServer
):
    """uvicorn ends a SIGTERM-stopped worker by re-raising the signal, skipping atexit:
    the ASGI middleware delivers at lifespan shutdown instead."""
    pytest.importorskip("uvicorn", reason="uvicorn is not installed")
    assert "tracekit.openai.autolog()" in ASGI_APP_IN_CODE
    assert '"lifespan"' in ASGI_APP_IN_CODE
    (tmp_path / "asgi_app.py").write_text(ASGI_APP_IN_CODE)
    store, port = tmp_path / "store", _free_port()
    env = _env(store, fake)
    del env["TRACEKIT_AUTOLOG"]
    command = [sys.executable, "-m", "uvicorn", "--workers", "2", "--port", str(port)]
    command += ["--host", "127.0.0.1", "--log-level", "warning", "--lifespan", "on"]
    answers = _serve([*command, "asgi_app:application"], env, tmp_path, port)
    _check(store, answers, "uvicorn")
