"""The Databricks destination against a real `mlflow server` behind a local workspace front.

`tests/workspace_front.py` plays the workspace: it enforces bearer authentication, serves the
OAuth token endpoint, throttles with 429 and records every request; the MLflow server behind
it stores the traces, which are read back with MLflow's own client (or, where only their
number matters, with one REST call). The first tests need no server: where the host and
credentials come from, the model-serving convention, the token cache, the pacing.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from tests.mlflow_server import MlflowServer, create_experiment, free_port, read_trace
from tests.test_delivery import jsonl_ids, wait_until
from tests.workspace_front import WorkspaceFront

import tracekit
from tracekit import _state, cli
from tracekit._config import from_env
from tracekit.exporters._http import AuthError, RateLimiter
from tracekit.exporters._workspace import DEFAULT_MAX_RPS, workspace_settings
from tracekit.exporters.databricks import OAuthToken

# The first use of `mlflow_server` may build the MLflow virtualenv.
pytestmark = pytest.mark.timeout(600)

PAT = "dapi-good-" + uuid.uuid4().hex
CLIENT_ID = "sp-" + uuid.uuid4().hex[:12]
SECRET = "dose-" + uuid.uuid4().hex
OAUTH = "DATABRICKS_CLIENT_ID/DATABRICKS_CLIENT_SECRET"


@pytest.fixture(autouse=True)
def _fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No ~/.databrickscfg of this machine; every test configures its own pipeline."""
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / "absent.databrickscfg"))
    _state.reset()
    yield
    _state.reset()


@pytest.fixture
def front(mlflow_server: MlflowServer) -> Iterator[WorkspaceFront]:
    with WorkspaceFront(mlflow_server.url, pats={PAT}, clients={CLIENT_ID: SECRET}) as f:
        try:
            yield f
        finally:
            _state.reset()  # before the front goes away


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def connect(
    monkeypatch: pytest.MonkeyPatch,
    spool: Path,
    uri: str = "databricks",
    experiment_id: str | None = None,
    experiment_name: str | None = None,
    **env: str,
) -> None:
    """Trace to `uri` with `env` set (DATABRICKS_HOST, credentials, ...)."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    _state.reset()
    tracekit.configure(
        tracking_uri=uri,
        experiment_id=experiment_id,
        experiment_name=experiment_name,
        spool_dir=str(spool),
        export_interval=0.05,
    )


def flush() -> None:
    assert tracekit.flush(60), "the pipeline did not flush in time"


def stored_ids(url: str, experiment_id: str) -> list[str]:
    """The trace ids in an experiment (one REST call per 500, no spans read)."""
    ids: list[str] = []
    token = ""
    while True:
        query = f"experiment_ids={experiment_id}&max_results=500" + (
            f"&page_token={token}" if token else ""
        )
        with urllib.request.urlopen(f"{url}/api/2.0/mlflow/traces?{query}", timeout=30) as r:  # noqa: S310
            page = json.loads(r.read())
        ids += [t["request_id"].removeprefix("tr-") for t in page.get("traces", [])]
        token = page.get("next_page_token") or ""
        if not token:
            return ids


def experiment_named(url: str, name: str) -> str:
    query = quote(name)
    with urllib.request.urlopen(  # noqa: S310
        f"{url}/api/2.0/mlflow/experiments/get-by-name?experiment_name={query}", timeout=30
    ) as r:
        return str(json.loads(r.read())["experiment"]["experiment_id"])


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "tracekit" and r.levelno >= logging.WARNING
    ]


def everything_written(root: Path) -> str:
    """Every file under `root` (spool batches, destination.json, stores) and their names."""
    paths = list(root.rglob("*"))
    texts = [p.read_text(errors="replace") for p in paths if p.is_file()]
    return "\n".join([*texts, *(str(p) for p in paths)])


@tracekit.trace(span_type="TOOL")
def lookup_order(order_id: str) -> dict[str, Any]:
    return {"order_id": order_id, "status": "shipped"}


@tracekit.trace(span_type="AGENT")
def agent(question: str) -> str:
    order = lookup_order("A-17")
    with tracekit.start_span(
        "chat databricks-claude-sonnet-4-5",
        span_type="CHAT_MODEL",
        inputs={"messages": [{"role": "user", "content": question}]},
        attributes={"gen_ai.provider.name": "databricks", "gen_ai.request.model": "m"},
    ) as span:
        answer = f"Your order {order['order_id']} has {order['status']}."
        span.set_outputs({"role": "assistant", "content": answer})
        span.set_token_usage({"input_tokens": 12, "output_tokens": 8, "total_tokens": 20})
    return answer


@tracekit.trace(span_type="CHAIN")
def step(i: int) -> int:
    return i


def steps(n: int, start: int = 0) -> list[str]:
    ids = []
    for i in range(start, start + n):
        step(i)
        ids.append(str(tracekit.get_last_trace_id()))
    return ids


# -- where the host and credentials come from (no server) -----------------------------------


def write_profiles(path: Path, host: str) -> Path:
    path.write_text(
        textwrap.dedent(
            f"""\
            [DEFAULT]
            host = {host}
            token = dapi-default

            [named]
            host = {host}/
            token = dapi-named

            [robot]
            host = {host}
            client_id = robot-id
            client_secret = robot-secret

            [elsewhere]
            host = https://other.cloud.databricks.com
            token = dapi-elsewhere
            """
        )
    )
    return path


TOKEN, SECRET_VAR, PROFILE = (
    "DATABRICKS_TOKEN",
    "DATABRICKS_CLIENT_SECRET",
    "DATABRICKS_CONFIG_PROFILE",
)


def test_host_and_credentials_precedence(tmp_path: Path) -> None:
    host = "https://dbc-1.cloud.databricks.com"
    cfg = {"DATABRICKS_CONFIG_FILE": str(write_profiles(tmp_path / "cfg", host))}

    def settings(
        uri: str = "databricks", env: dict[str, str] | None = None
    ) -> tuple[str, str | None, str | None, str]:
        s = workspace_settings(uri, 10.0, {**cfg, **(env or {})})
        return s.host, s.token, s.client_id, s.hint

    where = f"of {tmp_path / 'cfg'}"
    # [DEFAULT] when nothing else is named; the host as users write it.
    assert settings() == (host, "dapi-default", None, f"token in profile [DEFAULT] {where}")
    # The environment beats the profile when the URI names none...
    assert settings(env={TOKEN: "dapi-env"}) == (host, "dapi-env", None, TOKEN)
    assert settings(env={PROFILE: "named", TOKEN: "dapi-env"})[1] == "dapi-env"
    assert settings(env={PROFILE: "robot"}) == (
        host,
        None,
        "robot-id",
        f"client_id/client_secret in profile [robot] {where}",
    )
    # ...and a profile named in the URI beats the environment.
    named = settings("databricks://named", {TOKEN: "dapi-env", "DATABRICKS_HOST": "x.y"})
    assert named[:2] == (host, "dapi-named")
    # A token beats client credentials within one source.
    both = settings(env={TOKEN: "t", "DATABRICKS_CLIENT_ID": "i", SECRET_VAR: "s"})
    assert both[1:3] == ("t", None)
    # A profile's credentials never go to another host.
    with pytest.raises(ValueError, match=r"profile \[elsewhere\] are for https://other"):
        settings(env={PROFILE: "elsewhere", "DATABRICKS_HOST": host})
    # The environment alone: the file is not read at all.
    alone = {"DATABRICKS_CONFIG_FILE": str(tmp_path / "absent"), TOKEN: "t"}
    copied = workspace_settings(
        "databricks", 10.0, {**alone, "DATABRICKS_HOST": "dbc-2.cloud.databricks.com/?o=1"}
    )
    assert (copied.host, copied.token) == ("https://dbc-2.cloud.databricks.com", "t")
    kept = workspace_settings(
        "databricks", 10.0, {**alone, "DATABRICKS_HOST": "http://127.0.0.1:8/"}
    )
    assert kept.host == "http://127.0.0.1:8"  # an explicit http:// is kept (tests)
    assert "dapi" not in repr(workspace_settings("databricks", 10.0, cfg))  # nor in logs


def test_unusable_configuration_says_what_is_missing(tmp_path: Path) -> None:
    none = {"DATABRICKS_CONFIG_FILE": str(tmp_path / "absent")}
    cases = [
        ({}, "databricks", r"no workspace host: set DATABRICKS_HOST"),
        ({"DATABRICKS_HOST": "h"}, "databricks", f"no credentials for https://h: set {TOKEN}"),
        (
            {"DATABRICKS_HOST": "h", "DATABRICKS_CLIENT_ID": "i"},
            "databricks",
            r"DATABRICKS_CLIENT_ID is set but DATABRICKS_CLIENT_SECRET is not",
        ),
        ({"DATABRICKS_HOST": "h", TOKEN: "t"}, "databricks://p", r"profile \[p\] not found"),
        ({"DATABRICKS_CONFIG_PROFILE": "p"}, "databricks", r"profile \[p\] not found"),
        ({}, "databricks://scope:prefix", r"SCOPE:PREFIX secret references are not supported"),
        ({"DATABRICKS_HOST": "ftp://h", TOKEN: "t"}, "databricks", "not a workspace URL"),
    ]  # fmt: skip
    for env, uri, message in cases:
        with pytest.raises(ValueError, match=message):
            workspace_settings(uri, 10.0, {**none, **env})
    # A broken file is reported without quoting it: its lines may hold tokens.
    broken = tmp_path / "broken"
    broken.write_text("token = dapi-leaked-into-a-message\n")
    with pytest.raises(ValueError, match="cannot read") as caught:
        workspace_settings("databricks", 10.0, {"DATABRICKS_CONFIG_FILE": str(broken)})
    assert "dapi-leaked" not in str(caught.value)
    # A spool is delivered to the host it was meant for, and never to another one.
    recorded = workspace_settings(
        "databricks", 10.0, {**none, "DATABRICKS_TOKEN": "t"}, "https://a"
    )
    assert recorded.host == "https://a"
    with pytest.raises(ValueError, match="set DATABRICKS_HOST=https://a"):
        workspace_settings(
            "databricks", 10.0, {**none, "DATABRICKS_HOST": "b", "DATABRICKS_TOKEN": "t"}, "https://a"
        )  # fmt: skip


def test_max_rps_from_the_environment(caplog: pytest.LogCaptureFixture) -> None:
    base = {"DATABRICKS_HOST": "h", "DATABRICKS_TOKEN": "t", "DATABRICKS_CONFIG_FILE": "/absent"}
    assert workspace_settings("databricks", 1.0, base).max_rps == DEFAULT_MAX_RPS == 40
    env = {**base, "TRACEKIT_DATABRICKS_MAX_RPS": "12.5"}
    assert workspace_settings("databricks", 1.0, env).max_rps == 12.5
    for bad in ("0", "fast", "-3", "nan"):
        caplog.clear()
        env = {**base, "TRACEKIT_DATABRICKS_MAX_RPS": bad}
        assert workspace_settings("databricks", 1.0, env).max_rps == DEFAULT_MAX_RPS
        (message,) = warnings_of(caplog)
        assert "TRACEKIT_DATABRICKS_MAX_RPS" in message
        assert "40" in message


def test_model_serving_convention() -> None:
    serving = {
        "ENABLE_MLFLOW_TRACING": "true",
        "MLFLOW_EXPERIMENT_ID": "1234",
        "DATABRICKS_HOST": "https://dbc-1.cloud.databricks.com",
        "DATABRICKS_TOKEN": "t",
    }
    config = from_env(serving)
    assert config.tracking_uris == ("databricks",)
    assert config.experiment_id == "1234"
    oauth = {k: v for k, v in serving.items() if k != "DATABRICKS_TOKEN"}
    oauth.update({"DATABRICKS_CLIENT_ID": "i", SECRET_VAR: "s"})
    assert from_env(oauth).tracking_uris == ("databricks",)
    assert from_env({**serving, "ENABLE_MLFLOW_TRACING": "false"}).tracking_uris == ()
    for missing in ("ENABLE_MLFLOW_TRACING", "MLFLOW_EXPERIMENT_ID", "DATABRICKS_HOST"):
        assert from_env({k: v for k, v in serving.items() if k != missing}).tracking_uris == ()
    no_secret = {k: v for k, v in oauth.items() if k != "DATABRICKS_CLIENT_SECRET"}
    assert from_env(no_secret).tracking_uris == ()
    # A tracking URI, tracekit's or MLflow's, is what it says.
    assert from_env({**serving, "TRACEKIT_TRACKING_URI": "./t"}).tracking_uris == ("./t",)
    assert from_env({**serving, "MLFLOW_TRACKING_URI": "http://m:5000"}).tracking_uris == (
        "http://m:5000",
    )
    assert from_env({**serving, "MLFLOW_TRACKING_URI": "databricks://p"}).tracking_uris == (
        "databricks://p",
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_oauth_token_is_cached_refreshed_early_and_dropped_once_refused() -> None:
    with WorkspaceFront("http://127.0.0.1:9", clients={CLIENT_ID: SECRET}, expires_in=600) as f:
        clock = FakeClock()
        source = OAuthToken(f.url, CLIENT_ID, SECRET, clock=clock)
        first = source.headers()
        for _ in range(50):
            assert source.headers() == first
        assert len(f.token_requests) == 1
        (request,) = f.token_requests
        assert (request.grant_type, request.scope, request.basic) == (
            "client_credentials",
            "all-apis",
            True,
        )
        clock.now += 600 - 60 - 1  # still more than a minute left: cached
        assert source.headers() == first
        clock.now += 2  # within a minute of expiry: the next one, before it expires
        second = source.headers()
        assert second != first
        assert len(f.token_requests) == 2
        source.rejected(first)  # a 401 to a request with the old token: nothing to drop
        assert source.headers() == second
        source.rejected(second)  # refused: fetched again on the next request, once
        third = source.headers()
        assert third not in (first, second)
        assert source.headers() == third
        assert len(f.token_requests) == 3

        # The token endpoint failing: a clear message, never the secret.
        f.clients[CLIENT_ID] = "rotated"
        source.rejected(third)
        with pytest.raises(AuthError) as caught:
            source.headers()
        result = caught.value.result
        assert (result.ok, result.retryable, result.status) == (False, False, 401)
        assert f"OAuth token request to {f.url}/oidc/v1/token: HTTP 401" in result.message
        assert OAUTH in result.message
        assert SECRET not in result.message

        # A failed refresh keeps the token that is still valid.
        f.clients[CLIENT_ID] = SECRET
        fourth = source.headers()
        f.clients[CLIENT_ID] = "rotated"
        clock.now += 545
        assert source.headers() == fourth  # refresh failed; 55 s left
        tried = len(f.token_requests)
        assert source.headers() == fourth  # not tried again on every request...
        assert len(f.token_requests) == tried
        clock.now += 5
        assert source.headers() == fourth  # ...but 5 s later
        assert len(f.token_requests) == tried + 1
        clock.now += 60
        with pytest.raises(AuthError):  # expired: no token to use
            source.headers()
    # Nothing listens: retryable.
    gone = OAuthToken(f.url, CLIENT_ID, SECRET, timeout=2)
    with pytest.raises(AuthError) as caught:
        gone.headers()
    assert caught.value.result.retryable
    assert "connection refused" in caught.value.result.message


def test_rate_limiter_spaces_requests_and_stops_on_close() -> None:
    limiter = RateLimiter(20)
    stop = threading.Event()
    started = time.monotonic()
    times = []
    for _ in range(11):
        assert limiter.wait(stop)
        times.append(time.monotonic())
    assert times[-1] - started >= 10 * 1.05 / 20 - 0.001
    assert min(b - a for a, b in itertools.pairwise(times)) >= 1.05 / 20 - 0.001
    slow = RateLimiter(0.1)
    assert slow.wait(stop)
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    assert not slow.wait(stop)  # cut short, not 10 s
    assert time.monotonic() - started < 2


def test_missing_configuration_falls_back_to_the_file_store_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tracekit.configure(tracking_uri="databricks", experiment_name="/Shared/x")
    step(1)
    flush()
    (message,) = warnings_of(caplog)
    assert "'databricks'" in message
    assert "no workspace host: set DATABRICKS_HOST" in message
    assert "'.tracekit'" in message
    (line,) = (tmp_path / ".tracekit" / "traces.jsonl").read_text().splitlines()
    assert json.loads(line)["name"] == "step"


def test_no_experiment_falls_back_with_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("DATABRICKS_HOST", "https://dbc-1.cloud.databricks.com")
    monkeypatch.setenv("DATABRICKS_TOKEN", PAT)
    tracekit.configure(tracking_uri="databricks")
    step(1)
    flush()
    (message,) = warnings_of(caplog)
    assert "no experiment: set TRACEKIT_EXPERIMENT_ID or TRACEKIT_EXPERIMENT_NAME" in message
    assert PAT not in message
    assert (tmp_path / ".tracekit" / "traces.jsonl").exists()


# -- against the workspace front and a real MLflow server -----------------------------------


def test_personal_access_token_end_to_end(
    front: WorkspaceFront,
    mlflow_server: MlflowServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = unique("/Shared/pat")
    connect(
        monkeypatch, tmp_path / "spool", experiment_name=name,
        DATABRICKS_HOST=front.url, DATABRICKS_TOKEN=PAT,
    )  # fmt: skip
    assert agent("Where is my order?") == "Your order A-17 has shipped."
    trace_id = tracekit.get_last_trace_id()
    flush()
    assert warnings_of(caplog) == []
    assert jsonl_ids(tmp_path / "spool", "*.jsonl*") == []  # written ahead, then delivered
    assert [(r.method, r.path, r.status) for r in front.api_requests()] == [
        ("GET", "/api/2.0/mlflow/experiments/get-by-name", 404),
        ("POST", "/api/2.0/mlflow/experiments/create", 200),
        ("POST", "/v1/traces", 200),
    ]
    assert {r.authorization for r in front.api_requests()} == {"Bearer " + PAT}
    assert front.token_requests == []
    exporter = _state.pipeline().exporter
    assert exporter.destination == front.url  # type: ignore[attr-defined]

    trace = read_trace(mlflow_server.python, mlflow_server.url, f"tr-{trace_id}")
    assert trace["experiment_id"] == experiment_named(mlflow_server.url, name)
    assert trace["state"] == "OK"
    spans = {s["name"]: s for s in trace["spans"]}
    chat = spans["chat databricks-claude-sonnet-4-5"]
    assert {n: (s["span_type"], s["parent_id"]) for n, s in spans.items()} == {
        "agent": ("AGENT", None),
        "lookup_order": ("TOOL", spans["agent"]["span_id"]),
        chat["name"]: ("CHAT_MODEL", spans["agent"]["span_id"]),
    }
    assert spans["agent"]["inputs"] == {"question": "Where is my order?"}
    assert chat["outputs"] == {"role": "assistant", "content": "Your order A-17 has shipped."}
    usage = {"input_tokens": 12, "output_tokens": 8, "total_tokens": 20}
    assert chat["attributes"]["mlflow.chat.tokenUsage"] == usage
    assert trace["token_usage"] == usage
    assert PAT not in json.dumps(trace)


def test_oauth_one_token_request_for_many_traces(
    front: WorkspaceFront,
    mlflow_server: MlflowServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    experiment_id = create_experiment(mlflow_server.url, unique("oauth"))
    connect(
        monkeypatch, tmp_path / "spool", experiment_id=experiment_id,
        DATABRICKS_HOST=front.url, DATABRICKS_CLIENT_ID=CLIENT_ID, DATABRICKS_CLIENT_SECRET=SECRET,
    )  # fmt: skip
    ids = []
    for round_ in range(4):  # four batches at least
        ids += steps(50, start=50 * round_)
        flush()
    (grant,) = front.token_requests
    assert (grant.grant_type, grant.scope, grant.client_id, grant.basic, grant.status) == (
        "client_credentials", "all-apis", CLIENT_ID, True, 200,
    )  # fmt: skip
    (token,) = front.issued()
    api = front.api_requests()
    assert len(api) >= 4
    assert {(r.path, r.status, r.authorization) for r in api} == {
        ("/v1/traces", 200, "Bearer " + token)
    }
    assert sorted(stored_ids(mlflow_server.url, experiment_id)) == sorted(ids)


def test_oauth_token_is_refreshed_before_it_expires_not_per_request(
    front: WorkspaceFront,
    mlflow_server: MlflowServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    front.expires_in = 2  # the front refuses a token two seconds after it issued it
    experiment_id = create_experiment(mlflow_server.url, unique("refresh"))
    connect(
        monkeypatch, tmp_path / "spool", experiment_id=experiment_id,
        DATABRICKS_HOST=front.url, DATABRICKS_CLIENT_ID=CLIENT_ID, DATABRICKS_CLIENT_SECRET=SECRET,
    )  # fmt: skip
    ids = []
    deadline = time.monotonic() + 4.5
    while time.monotonic() < deadline:
        ids += steps(1, start=len(ids))
        flush()
        time.sleep(0.1)
    statuses = front.statuses()
    assert len(statuses) >= 15
    assert set(statuses) == {200}  # no request ever carried an expired token
    assert 2 <= len(front.token_requests) <= 4  # one per ~1.8 s, not one per request
    assert sorted(stored_ids(mlflow_server.url, experiment_id)) == sorted(ids)


def test_a_refused_oauth_token_is_replaced_once(
    front: WorkspaceFront,
    mlflow_server: MlflowServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    experiment_id = create_experiment(mlflow_server.url, unique("revoked"))
    connect(
        monkeypatch, tmp_path / "spool", experiment_id=experiment_id,
        DATABRICKS_HOST=front.url, DATABRICKS_CLIENT_ID=CLIENT_ID, DATABRICKS_CLIENT_SECRET=SECRET,
    )  # fmt: skip
    ids = steps(1)
    flush()
    front.revoke()  # the workspace stops accepting the cached token
    ids += steps(3, start=1)
    flush()
    wait_until(lambda: tracekit.get_stats().get("delivered_from_spool") == 3, 20, "redelivery")
    assert front.statuses() == [200, 401, 200]
    assert len(front.token_requests) == 2  # the refused token was replaced once, no loop
    assert sorted(stored_ids(mlflow_server.url, experiment_id)) == sorted(ids)
    first, back = warnings_of(caplog)
    assert f"cannot deliver traces to {front.url}" in first
    assert "HTTP 401" in first
    assert OAUTH in first
    assert back == f"tracekit: {front.url} answers again; delivering spooled traces"


def test_profiles_from_the_config_file(
    front: WorkspaceFront,
    mlflow_server: MlflowServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    front.pats |= {"dapi-default", "dapi-named"}
    front.clients["robot-id"] = "robot-secret"
    cfg = write_profiles(tmp_path / "databrickscfg", front.url)
    experiment_id = create_experiment(mlflow_server.url, unique("profiles"))
    cases = [
        ("databricks", {}, "Bearer dapi-default"),
        ("databricks://named", {TOKEN: "dapi-wrong"}, "Bearer dapi-named"),
        ("databricks", {PROFILE: "robot"}, "oauth"),
        ("databricks", {PROFILE: "named", TOKEN: PAT}, "Bearer " + PAT),
    ]  # fmt: skip
    ids = []
    for uri, env, expected in cases:
        with monkeypatch.context() as m:
            m.setenv("DATABRICKS_CONFIG_FILE", str(cfg))
            connect(m, tmp_path / "spool", uri, experiment_id=experiment_id, **env)
            before = len(front.api_requests())
            ids += steps(1, start=len(ids))
            flush()
            _state.reset()
        (seen,) = front.api_requests()[before:]
        assert seen.status == 200, (uri, env)
        if expected == "oauth":
            (grant,) = front.token_requests
            assert grant.client_id == "robot-id"
            expected = "Bearer " + front.issued()[0]
        assert seen.authorization == expected, (uri, env)
    assert sorted(stored_ids(mlflow_server.url, experiment_id)) == sorted(ids)


SERVING_APP = textwrap.dedent(
    """
    import tracekit

    @tracekit.trace(span_type="AGENT")
    def predict(question):
        with tracekit.start_span("retrieve", span_type="RETRIEVER") as span:
            span.set_outputs(["doc"])
        return "answer to " + question

    predict("q")
    print(tracekit.get_last_trace_id())
    # No flush: the exit hook delivers what is queued.
    """
)


def test_model_serving_environment_in_a_subprocess(
    front: WorkspaceFront, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    """Configured as Databricks documents for Model Serving; no tracekit variable at all."""
    experiment_id = create_experiment(mlflow_server.url, unique("serving"))
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "TRACEKIT_TESTING": "1",
        "ENABLE_MLFLOW_TRACING": "true",
        "MLFLOW_EXPERIMENT_ID": experiment_id,
        "DATABRICKS_HOST": front.url,
        "DATABRICKS_TOKEN": PAT,
    }
    done = subprocess.run(
        [sys.executable, "-c", SERVING_APP],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "tracekit:" not in done.stderr, done.stderr
    trace_id = done.stdout.strip()
    # No file store; the spool (every batch is written there first) holds nothing.
    assert {p.name for p in (tmp_path / ".tracekit").glob("*")} <= {"spool"}
    assert jsonl_ids(tmp_path / ".tracekit", "*.jsonl*") == []
    assert [(r.path, r.status, r.authorization) for r in front.api_requests()] == [
        ("/v1/traces", 200, "Bearer " + PAT)
    ]
    trace = read_trace(mlflow_server.python, mlflow_server.url, f"tr-{trace_id}")
    assert trace["experiment_id"] == experiment_id
    assert [(s["name"], s["span_type"]) for s in trace["spans"]] == [
        ("predict", "AGENT"),
        ("retrieve", "RETRIEVER"),
    ]
    assert trace["spans"][0]["outputs"] == "answer to q"


def test_wrong_token_spools_names_the_problem_and_upload_delivers_later(
    front: WorkspaceFront,
    mlflow_server: MlflowServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="tracekit")
    wrong = "dapi-wrong-" + uuid.uuid4().hex
    name = unique("/Shared/wrong-token")
    spool = tmp_path / "spool"
    connect(
        monkeypatch, spool, experiment_name=name, DATABRICKS_HOST=front.url, DATABRICKS_TOKEN=wrong
    )
    ids = []
    for round_ in range(3):
        started = time.perf_counter()
        ids += steps(10, start=10 * round_)
        assert time.perf_counter() - started < 0.5  # the app is unaffected
        flush()
    (message,) = warnings_of(caplog)
    assert message.startswith(f"tracekit: cannot deliver traces to {front.url} (")
    assert "HTTP 401" in message
    assert "(check DATABRICKS_TOKEN)" in message
    _state.reset()  # stops the spool thread: no batch is claimed while we look
    assert sorted(jsonl_ids(spool)) == sorted(ids)
    (description,) = spool.glob("*/destination.json")
    assert json.loads(description.read_text()) == {
        "uri": "databricks",
        "host": front.url,
        "experiment_id": None,
        "experiment_name": name,
    }
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert wrong not in logged
    assert wrong not in everything_written(tmp_path)
    assert {r.status for r in front.api_requests()} == {401}

    # Fixed: the upload takes the credentials from the environment and the host from the
    # spool (DATABRICKS_HOST is not even set).
    monkeypatch.delenv("DATABRICKS_HOST")
    monkeypatch.setenv("DATABRICKS_TOKEN", PAT)
    assert cli.main(["upload", "--spool", str(spool)]) == 0
    assert jsonl_ids(spool) == []
    experiment_id = experiment_named(mlflow_server.url, name)
    assert sorted(stored_ids(mlflow_server.url, experiment_id)) == sorted(ids)


def test_wrong_client_secret_spools_names_the_problem_and_upload_delivers_later(
    front: WorkspaceFront,
    mlflow_server: MlflowServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="tracekit")
    wrong = "dose-wrong-" + uuid.uuid4().hex
    experiment_id = create_experiment(mlflow_server.url, unique("wrong-secret"))
    spool = tmp_path / "spool"
    connect(
        monkeypatch, spool, experiment_id=experiment_id, DATABRICKS_HOST=front.url,
        DATABRICKS_CLIENT_ID=CLIENT_ID, DATABRICKS_CLIENT_SECRET=wrong,
    )  # fmt: skip
    ids = []
    for round_ in range(3):
        ids += steps(10, start=10 * round_)
        flush()
    (message,) = warnings_of(caplog)
    assert message.startswith(f"tracekit: cannot deliver traces to {front.url} (")
    assert f"OAuth token request to {front.url}/oidc/v1/token: HTTP 401" in message
    assert f"(check {OAUTH})" in message
    _state.reset()
    assert sorted(jsonl_ids(spool)) == sorted(ids)
    assert front.api_requests() == []  # no API request without a token
    assert 1 <= len(front.token_requests) <= 4  # the circuit breaker paces the attempts
    logged = "\n".join(r.getMessage() for r in caplog.records)
    written = everything_written(tmp_path)
    for secret in (wrong, SECRET):
        assert secret not in logged
        assert secret not in written

    monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", SECRET)
    assert cli.main(["upload", "--spool", str(spool)]) == 0
    assert front.token_requests[-1].status == 200
    assert sorted(stored_ids(mlflow_server.url, experiment_id)) == sorted(ids)


def test_unknown_host_spools_with_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    host = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    spool = tmp_path / "spool"
    connect(monkeypatch, spool, experiment_id="1234", DATABRICKS_HOST=host, DATABRICKS_TOKEN=PAT)
    started = time.perf_counter()
    ids = steps(20)
    assert time.perf_counter() - started < 0.5
    flush()
    ids += steps(5, start=20)
    flush()
    (message,) = warnings_of(caplog)
    assert message.startswith(f"tracekit: cannot deliver traces to {host} (")
    assert "connection refused" in message
    _state.reset()
    assert sorted(jsonl_ids(spool)) == sorted(ids)
    assert PAT not in everything_written(tmp_path)


def test_throttled_workspace_gets_every_trace_once_and_retry_after_is_honoured(
    front: WorkspaceFront,
    mlflow_server: MlflowServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    experiment_id = create_experiment(mlflow_server.url, unique("throttled"))
    connect(
        monkeypatch, tmp_path / "spool", experiment_id=experiment_id,
        DATABRICKS_HOST=front.url, DATABRICKS_TOKEN=PAT,
    )  # fmt: skip
    front.retry_after = "1"
    front.throttle_until = time.monotonic() + 2.5  # every request 429 for 2.5 s
    ids = []
    for round_ in range(6):
        ids += steps(20, start=20 * round_)
        time.sleep(0.3)
    flush()

    def stored() -> list[str]:
        return stored_ids(mlflow_server.url, experiment_id)

    wait_until(lambda: len(stored()) >= len(ids), 30, "every trace delivered")
    time.sleep(0.5)
    assert sorted(stored()) == sorted(ids)  # each once
    api = front.api_requests()
    assert 429 in {r.status for r in api}
    assert api[-1].status == 200
    for refused, after in itertools.pairwise(api):
        if refused.status == 429:  # the next request waited for Retry-After: 1
            assert after.time - refused.time >= 0.9, (refused, after)
    assert front.most_in_one_second() <= DEFAULT_MAX_RPS
    assert tracekit.get_stats()["delivered_from_spool"] > 0


def test_a_burst_of_2000_traces_stays_under_max_rps(
    front: WorkspaceFront,
    mlflow_server: MlflowServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    experiment_id = create_experiment(mlflow_server.url, unique("burst"))
    monkeypatch.setenv("DATABRICKS_HOST", front.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", PAT)
    monkeypatch.setenv("TRACEKIT_DATABRICKS_MAX_RPS", "5")
    tracekit.configure(
        tracking_uri="databricks",
        experiment_id=experiment_id,
        spool_dir=str(tmp_path / "spool"),
        export_interval=0.05,
        export_batch_spans=100,  # 20 requests for 2,000 one-span traces
    )
    started = time.perf_counter()
    ids = steps(2000)
    assert time.perf_counter() - started < 2.0  # the burst is not slowed down
    flush()
    api = front.api_requests()
    assert len(api) >= 20
    assert {r.status for r in api} == {200}
    assert front.most_in_one_second() <= 5
    # Unpaced, this server takes a request every ~0.15 s; paced, they are 0.21 s apart.
    gaps = [b.time - a.time for a, b in itertools.pairwise(api)]
    assert min(gaps) >= 1.05 / 5 - 0.04, gaps
    assert jsonl_ids(tmp_path / "spool", "*.jsonl*") == []  # every batch delivered
    assert sorted(stored_ids(mlflow_server.url, experiment_id)) == sorted(ids)


def test_foundation_model_api_through_the_openai_sdk_is_traced_to_the_workspace(
    front: WorkspaceFront,
    mlflow_server: MlflowServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """docs/databricks.md's example: one token for the serving endpoints and the traces.
    The serving endpoints are a local OpenAI-compatible fake under /serving-endpoints."""
    openai = pytest.importorskip("openai")
    import tracekit.openai
    from tracekit._fake_server import FakeProviderServer
    from tracekit.integrations.openai import integration

    experiment_id = create_experiment(mlflow_server.url, unique("fmapi"))
    connect(
        monkeypatch, tmp_path / "spool", experiment_id=experiment_id,
        DATABRICKS_HOST=front.url, DATABRICKS_TOKEN=PAT,
    )  # fmt: skip
    tracekit.openai.autolog()
    try:
        with FakeProviderServer() as serving:
            client = openai.OpenAI(
                api_key=os.environ["DATABRICKS_TOKEN"],
                base_url=f"{serving.base_url}/serving-endpoints",
                max_retries=0,
            )
            response = client.chat.completions.create(
                model="databricks-meta-llama-3-3-70b-instruct",
                messages=[{"role": "user", "content": "What is a mixture of experts model?"}],
                max_tokens=256,
            )
            trace_id = tracekit.get_last_trace_id()
            (sent,) = serving.requests
    finally:
        integration.revert()
    flush()
    assert sent["path"] == "/serving-endpoints/chat/completions"
    assert {k.lower(): v for k, v in sent["headers"].items()}["authorization"] == "Bearer " + PAT
    trace = read_trace(mlflow_server.python, mlflow_server.url, f"tr-{trace_id}")
    (span,) = trace["spans"]
    assert span["name"] == "chat databricks-meta-llama-3-3-70b-instruct"
    assert span["span_type"] == "CHAT_MODEL"
    assert span["attributes"]["server.address"] == "127.0.0.1"
    assert span["attributes"]["gen_ai.request.max_tokens"] == 256
    usage = response.usage
    assert usage is not None
    assert trace["token_usage"]["input_tokens"] == usage.prompt_tokens
    assert trace["token_usage"]["output_tokens"] == usage.completion_tokens
    assert PAT not in json.dumps(trace)
