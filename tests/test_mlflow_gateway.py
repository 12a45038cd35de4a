"""Tracing through the MLflow AI Gateway: one trace, in the configured experiment.

A real `mlflow server` 3.17 runs its AI Gateway with request-level tracing (usage tracking
on every endpoint, and `MLFLOW_USE_BATCH_SPAN_PROCESSOR=false`, without which the server
drops the gateway's spans). Three gateway endpoints point at tracekit's fake provider
server: OpenAI (`/gateway/openai/v1`), Anthropic (`/gateway/anthropic`) and Gemini
(`/gateway/gemini`, served by a Databricks-type model whose host is the fake server, since
the gateway's Gemini provider has no configurable base URL). An app calls each route with
the provider's real SDK, autologged, under a `@tracekit.trace` function; its `traceparent`
makes the gateway record `gateway/<endpoint>` (and the provider call under it) in the app's
trace. Whichever reaches the server first, the trace must be one trace, in the app's
experiment, with the gateway's span under tracekit's LLM span. Read back with MLflow's client.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.child import run_python
from tests.mlflow_server import (
    MlflowServer,
    create_experiment,
    mlflow_python,
    read_traces,
)
from tests.test_otlp_export import Received, Receiver, sample_records
from tests.venvs import python_or_skip

from tracekit._fake_server import FakeProviderServer
from tracekit.exporters._http import HttpClient
from tracekit.exporters.tracking import TrackingServerExporter

pytestmark = pytest.mark.timeout(900)  # may build the MLflow virtualenv

# What the gateway needs on a test server (docs/mlflow-gateway.md explains each).
GATEWAY_SERVER_ENV = {
    "MLFLOW_USE_BATCH_SPAN_PROCESSOR": "false",  # else the gateway's spans are dropped
    "MLFLOW_GATEWAY_API_BASE_ALLOWED_SCHEMES": "http,https",  # the fake provider: plain HTTP
    "MLFLOW_GATEWAY_API_BASE_ALLOW_PRIVATE_IPS": "true",  # ... on loopback
}
# endpoint name -> (gateway provider, model name, upstream base URL below the fake server)
ENDPOINTS = {
    "openai-ep": ("openai", "fake-mini", "/v1"),
    "anthropic-ep": ("anthropic", "fake-claude", "/v1"),
    "gemini-ep": ("databricks", "fake-gemini", ""),
}
# provider -> (tracekit's LLM span, the gateway endpoint)
CALLS = {
    "openai": ("chat openai-ep", "openai-ep"),
    "anthropic": ("chat anthropic-ep", "anthropic-ep"),
    "gemini": ("generate_content gemini-ep", "gemini-ep"),
}

APP = r"""
import json, os, sys
import anthropic, openai
from google import genai
from google.genai import types
import tracekit, tracekit.anthropic, tracekit.gemini, tracekit.openai

for integration in (tracekit.openai, tracekit.anthropic, tracekit.gemini):
    integration.autolog()
gateway = os.environ["GATEWAY_URL"] + "/gateway"

@tracekit.trace(span_type="AGENT")
def ask_openai():
    client = openai.OpenAI(api_key="unused", base_url=gateway + "/openai/v1")
    messages = [{"role": "user", "content": "hello openai"}]
    return client.chat.completions.create(model="openai-ep", messages=messages)

@tracekit.trace(span_type="AGENT")
def ask_anthropic():
    client = anthropic.Anthropic(api_key="unused", base_url=gateway + "/anthropic")
    messages = [{"role": "user", "content": "hello anthropic"}]
    return client.messages.create(model="anthropic-ep", max_tokens=32, messages=messages)

@tracekit.trace(span_type="AGENT")
def ask_gemini():
    options = types.HttpOptions(base_url=gateway + "/gemini", api_version="v1beta")
    client = genai.Client(api_key="unused", http_options=options)
    return client.models.generate_content(model="gemini-ep", contents="hello gemini")

trace_ids = {}
for provider, ask in (("openai", ask_openai), ("anthropic", ask_anthropic), ("gemini", ask_gemini)):
    ask()
    trace_ids[provider] = tracekit.get_last_trace_id()
assert tracekit.flush(60)
print(json.dumps(trace_ids))
"""


def _post(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(  # noqa: S310 - loopback
        url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
        answer: dict[str, Any] = json.loads(resp.read())
        return answer


def add_endpoint(url: str, name: str, provider: str, model: str, api_base: str, experiment: str):
    """A gateway endpoint over REST, as the MLflow UI's AI Gateway page creates one:
    a secret (key and base URL), a model definition, an endpoint with usage tracking."""
    secret = _post(
        url,
        "/api/3.0/mlflow/gateway/secrets/create",
        {
            "secret_name": f"{name}-key",
            "secret_value": {"api_key": "fake-key"},
            "provider": provider,
            "auth_config": {"api_base": api_base},
        },
    )["secret"]
    model_definition = _post(
        url,
        "/api/3.0/mlflow/gateway/model-definitions/create",
        {
            "name": f"{name}-model",
            "secret_id": secret["secret_id"],
            "provider": provider,
            "model_name": model,
        },
    )["model_definition"]
    _post(
        url,
        "/api/3.0/mlflow/gateway/endpoints/create",
        {
            "name": name,
            "model_configs": [
                {
                    "model_definition_id": model_definition["model_definition_id"],
                    "linkage_type": "PRIMARY",
                    "weight": 1.0,
                }
            ],
            "experiment_id": experiment,
            "usage_tracking": True,  # request-level tracing
        },
    )


class Gateway:
    def __init__(self, server: MlflowServer, python: Path) -> None:
        self.server = server
        self.python = python
        self.gateway_experiment = create_experiment(server.url, "gateway-own-traces")
        self.app_experiment = create_experiment(server.url, "support-bot")
        self.trace_ids: dict[str, str] = {}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    python = python_or_skip(mlflow_python, "MLflow")
    workdir = tmp_path_factory.mktemp("mlflow-gateway")
    with (
        FakeProviderServer() as fake,
        MlflowServer(python, workdir, env=GATEWAY_SERVER_ENV) as server,
    ):
        gw = Gateway(server, python)
        for name, (provider, model, path) in ENDPOINTS.items():
            add_endpoint(
                server.url, name, provider, model, fake.base_url + path, gw.gateway_experiment
            )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACEKIT_", "MLFLOW_"))}
        env.update(
            GATEWAY_URL=server.url,
            TRACEKIT_TRACKING_URI=server.url,
            TRACEKIT_EXPERIMENT_ID=gw.app_experiment,
            TRACEKIT_SPOOL_DIR=str(workdir / "spool"),
        )
        done = run_python(APP, env=env, cwd=workdir, timeout=300)
        gw.trace_ids = json.loads(done.stdout.splitlines()[-1])
        yield gw


def _spans_stored(url: str, trace_id: str) -> int:
    try:
        with urllib.request.urlopen(  # noqa: S310 - loopback
            f"{url}/api/3.0/mlflow/traces/batchGet?trace_ids=tr-{trace_id}", timeout=30
        ) as resp:
            traces = json.loads(resp.read()).get("traces") or []
    except urllib.error.HTTPError:
        return 0
    return sum(len(t.get("spans") or []) for t in traces)


def wait_for_spans(gw: Gateway, count: int, timeout: float = 60.0) -> None:
    """The gateway logs its spans in the background: wait until each trace has `count`."""
    deadline = time.monotonic() + timeout
    pending = dict(gw.trace_ids)
    while pending and time.monotonic() < deadline:
        pending = {p: t for p, t in pending.items() if _spans_stored(gw.server.url, t) < count}
        time.sleep(0.5)
    assert not pending, f"traces without the gateway's spans after {timeout} s: {pending}"


@pytest.fixture(scope="module")
def stored(gateway: Gateway) -> dict[str, list[dict[str, Any]]]:
    """Every trace of the app's, the gateway's and the Default experiment, once all landed."""
    wait_for_spans(gateway, 4)  # @trace function, LLM span, gateway span, provider span
    url, python = gateway.server.url, gateway.python
    return {
        "app": read_traces(python, url, gateway.app_experiment),
        "gateway": read_traces(python, url, gateway.gateway_experiment),
        "default": read_traces(python, url, "0"),
    }


def test_nothing_lands_in_the_default_experiment(stored: dict[str, list[dict[str, Any]]]) -> None:
    assert stored["default"] == []
    assert len(stored["app"]) == 3  # one trace per call, no fragment anywhere else


@pytest.mark.parametrize("provider", list(CALLS))
def test_one_trace_in_the_configured_experiment_with_the_gateway_span_nested(
    gateway: Gateway, stored: dict[str, list[dict[str, Any]]], provider: str
) -> None:
    llm_name, endpoint = CALLS[provider]
    trace_id = gateway.trace_ids[provider]
    (trace,) = [t for t in stored["app"] if t["trace_id"] == f"tr-{trace_id}"]
    assert trace["experiment_id"] == gateway.app_experiment
    assert trace["state"] == "OK"
    assert trace["tags"]["mlflow.traceName"] == f"ask_{provider}"

    spans = {s["name"]: s for s in trace["spans"]}
    gateway_provider, model_name, _ = ENDPOINTS[endpoint]
    model_span = f"provider/{gateway_provider}/{model_name}"
    assert set(spans) == {f"ask_{provider}", llm_name, f"gateway/{endpoint}", model_span}
    root, llm = spans[f"ask_{provider}"], spans[llm_name]
    gateway_span, model = spans[f"gateway/{endpoint}"], spans[model_span]
    assert root["parent_id"] is None
    assert llm["parent_id"] == root["span_id"]
    assert gateway_span["parent_id"] == llm["span_id"]  # the traceparent named tracekit's span
    assert model["parent_id"] == gateway_span["span_id"]
    assert llm["span_type"] in ("CHAT_MODEL", "LLM")
    assert gateway_span["attributes"]["endpoint_name"] == endpoint
    # Token usage counted once: tracekit's LLM span and the gateway's provider span
    # below it carry the same call's usage.
    usage = llm["attributes"]["mlflow.chat.tokenUsage"]
    assert usage["total_tokens"] > 0
    assert trace["token_usage"]["total_tokens"] == usage["total_tokens"]
    # The gateway's own full trace of the request stays in its own experiment, linked.
    assert not any(t["trace_id"] == f"tr-{trace_id}" for t in stored["gateway"])
    (linked,) = [
        t
        for t in stored["gateway"]
        if t["trace_id"] == gateway_span["attributes"]["mlflow.gateway.linkedTraceId"]
    ]
    assert [s["name"] for s in linked["spans"] if s["parent_id"] is None] == [f"gateway/{endpoint}"]


# -- which traces get StartTraceV3: the server's answer, without MLflow ----------------------


class InfoServer(Receiver):
    """Answers 200 `{}` to every request but BatchGetTraceInfos, which gets `infos` (or 404
    when None, as a server without the endpoint); records the paths."""

    def __init__(self, infos: list[dict[str, Any]] | None) -> None:
        def answer(request: Received) -> tuple[int, bytes]:
            if not request.path.endswith("/batchGetInfos"):
                return 200, b"{}"
            if infos is None:
                return 404, b'{"error_code": "ENDPOINT_NOT_FOUND"}'
            return 200, json.dumps({"trace_infos": infos}).encode()

        super().__init__(answer=answer)

    @property
    def paths(self) -> list[str]:
        return [r.path for r in self.received]


def _info(trace_id: str, experiment_id: str) -> dict[str, Any]:
    location = {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}}
    return {"trace_id": f"tr-{trace_id}", "trace_location": location}


@pytest.mark.parametrize(
    ("mode", "answer", "started"),
    [
        ("auto", "first-elsewhere", [0]),  # only the trace the gateway's spans put in Default
        ("auto", "all-ours", []),
        ("auto", "no-endpoint", [0, 1]),  # an older server: every trace, to be sure
        ("always", "all-ours", [0, 1]),
        ("metadata", "first-elsewhere", []),  # Databricks: no question asked
    ],
)
def test_start_trace_for_the_traces_the_server_holds_elsewhere(
    mode: str, answer: str, started: list[int]
) -> None:
    records = sample_records()
    ids = [r["trace_id"] for r in records]
    infos = {
        "first-elsewhere": [_info(ids[0], "0"), _info(ids[1], "7")],
        "all-ours": [_info(ids[0], "7"), _info(ids[1], "7")],
        "no-endpoint": None,
    }[answer]
    server = InfoServer(infos)
    try:
        exporter = TrackingServerExporter(
            HttpClient(server.url), experiment_id="7", trace_info=mode
        )
        assert exporter.export(records).ok
        exporter.shutdown()
    finally:
        server.close()
    asked = [] if mode != "auto" else ["/api/3.0/mlflow/traces/batchGetInfos"]
    assert server.paths == ["/v1/traces", *asked] + ["/api/3.0/mlflow/traces"] * len(started)
