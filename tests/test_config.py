"""Configuration: environment variables, configure(), sampling, content capture,
span processors, custom exporters and destinations."""

from __future__ import annotations

import json
import logging
import os
import random
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from tests.child import run_python

import tracekit
from tracekit import _config, _runtime, _state
from tracekit._config import INTEGRATIONS, Config, from_env
from tracekit.exporters import SUCCESS
from tracekit.exporters.memory import InMemoryExporter
from tracekit.testing import START_NS, STEP_NS, CountingIdGenerator, FakeClock, capture

ALL_ENV = {
    "TRACEKIT_ENABLED": "false",
    "TRACEKIT_TRACKING_URI": "file:///tmp/store, console ,memory",
    "TRACEKIT_EXPERIMENT_ID": "42",
    "TRACEKIT_EXPERIMENT_NAME": "/Users/me/exp",
    "TRACEKIT_AUTOLOG": "OpenAI, langchain",
    "TRACEKIT_SAMPLING_RATIO": "0.25",
    "TRACEKIT_CAPTURE_CONTENT": "off",
    "TRACEKIT_SERVICE_NAME": "support-bot",
    "TRACEKIT_SHUTDOWN_TIMEOUT": "2.5",
    "TRACEKIT_SPOOL_DIR": "/var/spool/tk",
    "TRACEKIT_EXPORT_INTERVAL": "0.5",
    "TRACEKIT_EXPORTER": "my.pkg:make_exporter",
    "TRACEKIT_THREAD_CONTEXT": "no",
}


def tracekit_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "tracekit" and r.levelno == logging.WARNING
    ]


# -- from_env -------------------------------------------------------------------


def test_defaults_from_an_empty_environment(caplog):
    assert from_env({}) == Config()
    assert tracekit_warnings(caplog) == []


def test_every_variable_parsed(caplog):
    assert from_env(ALL_ENV) == Config(
        enabled=False,
        tracking_uris=("file:///tmp/store", "console", "memory"),
        experiment_id="42",
        experiment_name="/Users/me/exp",
        autolog=("openai", "langchain"),
        sampling_ratio=0.25,
        capture_content=False,
        service_name="support-bot",
        shutdown_timeout=2.5,
        spool_dir="/var/spool/tk",
        export_interval=0.5,
        exporter_factory="my.pkg:make_exporter",
        propagate_context_to_threads=False,
    )
    assert tracekit_warnings(caplog) == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("true", True),
        (" TRUE ", True),
        ("yes", True),
        ("on", True),
        ("0", False),
        ("False", False),
        ("no", False),
        ("Off", False),
        ("", True),  # blank: unset
    ],
)
def test_boolean_values(raw, expected, caplog):
    assert from_env({"TRACEKIT_ENABLED": raw}).enabled is expected
    assert from_env({"TRACEKIT_CAPTURE_CONTENT": raw}).capture_content is expected
    assert tracekit_warnings(caplog) == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("all", INTEGRATIONS),
        ("ALL", INTEGRATIONS),
        ("openai", ("openai",)),
        ("anthropic,gemini", ("anthropic", "gemini")),
        ("openai,anthropic,gemini,langchain", INTEGRATIONS),
    ],
)
def test_autolog_values(raw, expected, caplog):
    assert from_env({"TRACEKIT_AUTOLOG": raw}).autolog == expected
    assert tracekit_warnings(caplog) == []


@pytest.mark.parametrize(
    ("var", "raw", "field", "fallback"),
    [
        ("TRACEKIT_SAMPLING_RATIO", "abc", "sampling_ratio", 1.0),
        ("TRACEKIT_SAMPLING_RATIO", "2", "sampling_ratio", 1.0),
        ("TRACEKIT_SAMPLING_RATIO", "-0.1", "sampling_ratio", 1.0),
        ("TRACEKIT_SAMPLING_RATIO", "nan", "sampling_ratio", 1.0),
        ("TRACEKIT_ENABLED", "maybe", "enabled", True),
        ("TRACEKIT_CAPTURE_CONTENT", "perhaps", "capture_content", True),
        ("TRACEKIT_EXPORT_INTERVAL", "-1", "export_interval", 1.0),
        ("TRACEKIT_EXPORT_INTERVAL", "soon", "export_interval", 1.0),
        ("TRACEKIT_SHUTDOWN_TIMEOUT", "-5", "shutdown_timeout", 5.0),
        ("TRACEKIT_SHUTDOWN_TIMEOUT", "inf", "shutdown_timeout", 5.0),
        ("TRACEKIT_AUTOLOG", "foo", "autolog", ()),
        ("TRACEKIT_EXPORTER", "nocolon", "exporter_factory", None),
    ],
)
def test_bad_values_warn_and_fall_back(var, raw, field, fallback, caplog):
    config = from_env({var: raw})
    assert getattr(config, field) == fallback
    assert config == Config()
    (message,) = tracekit_warnings(caplog)
    assert var in message
    assert repr(raw) in message or raw in message
    if fallback not in ((), None):
        assert repr(fallback) in message


def test_autolog_keeps_the_known_names(caplog):
    assert from_env({"TRACEKIT_AUTOLOG": "openai, foo ,gemini"}).autolog == ("openai", "gemini")
    (message,) = tracekit_warnings(caplog)
    assert "TRACEKIT_AUTOLOG" in message
    assert "foo" in message


def test_fallback_variables(caplog):
    config = from_env(
        {
            "MLFLOW_EXPERIMENT_ID": "7",
            "MLFLOW_EXPERIMENT_NAME": "mlflow-exp",
            "OTEL_SERVICE_NAME": "otel-svc",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod, team = ml ,k=a=b",
        }
    )
    assert config == Config(
        experiment_id="7",
        experiment_name="mlflow-exp",
        service_name="otel-svc",
        resource_attributes={"deployment.environment": "prod", "team": "ml", "k": "a=b"},
    )
    assert tracekit_warnings(caplog) == []


def test_tracekit_variables_beat_their_fallbacks():
    config = from_env(
        {
            "TRACEKIT_EXPERIMENT_ID": "1",
            "MLFLOW_EXPERIMENT_ID": "2",
            "TRACEKIT_EXPERIMENT_NAME": "mine",
            "MLFLOW_EXPERIMENT_NAME": "theirs",
            "TRACEKIT_SERVICE_NAME": "tk",
            "OTEL_SERVICE_NAME": "otel",
            "TRACEKIT_TRACKING_URI": "/data/store",
            "MLFLOW_TRACKING_URI": "http://mlflow:5000",
        }
    )
    assert (config.experiment_id, config.experiment_name, config.service_name) == (
        "1",
        "mine",
        "tk",
    )
    assert config.tracking_uris == ("/data/store",)


def test_otel_resource_attributes_bad_item_skipped(caplog):
    config = from_env({"OTEL_RESOURCE_ATTRIBUTES": "good=1,novalue,=x"})
    assert config.resource_attributes == {"good": "1"}
    messages = tracekit_warnings(caplog)
    assert messages
    assert all("OTEL_RESOURCE_ATTRIBUTES" in m for m in messages)


def test_otel_resource_attributes_are_percent_decoded():
    """The OpenTelemetry spec percent-encodes values (W3C baggage octets)."""
    config = from_env({"OTEL_RESOURCE_ATTRIBUTES": "team=ml%20platform,version=1.0%2Cbeta"})
    assert config.resource_attributes == {"team": "ml platform", "version": "1.0,beta"}


@pytest.mark.parametrize(
    ("uri", "honoured"),
    [
        ("http://mlflow:5000", True),
        ("https://mlflow.example.com", True),
        ("HTTPS://MLFLOW.EXAMPLE.COM", True),
        ("databricks", True),
        ("databricks://my-profile", True),
        ("file:///tmp/mlruns", False),
        ("./mlruns", False),
        ("/abs/mlruns", False),
        ("sqlite:///mlflow.db", False),
        ("postgresql://user@db/mlflow", False),
    ],
)
def test_mlflow_tracking_uri_only_for_servers(uri, honoured):
    expected = (uri,) if honoured else ()
    assert from_env({"MLFLOW_TRACKING_URI": uri}).tracking_uris == expected


def test_bad_environment_never_breaks_import(tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TRACEKIT_")},
        "TRACEKIT_SAMPLING_RATIO": "abc",
        "TRACEKIT_ENABLED": "maybe",
        "TRACEKIT_EXPORT_INTERVAL": "-1",
        "TRACEKIT_AUTOLOG": "foo",
        "TRACEKIT_EXPORTER": "nocolon",
        "TRACEKIT_SHUTDOWN_TIMEOUT": "x",
        "OTEL_RESOURCE_ATTRIBUTES": "garbage",
    }
    code = textwrap.dedent(
        """
        import tracekit

        @tracekit.trace
        def f(x):
            return x + 1

        print(f(1))
        print(tracekit.flush(5))
        """
    )
    done = run_python(code, cwd=tmp_path, env=env)
    assert done.stdout.split() == ["2", "True"]
    for var in ("TRACEKIT_SAMPLING_RATIO", "TRACEKIT_ENABLED", "TRACEKIT_EXPORT_INTERVAL"):
        assert var in done.stderr
    lines = (tmp_path / ".tracekit" / "traces.jsonl").read_text().splitlines()
    assert [json.loads(line)["name"] for line in lines] == ["f"]


# -- the environment in effect ------------------------------------------------------


@pytest.fixture
def env_setup(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., InMemoryExporter]]:
    """Set environment variables, re-read them, and capture traces in memory.

    Ids count from 1 and the clock is fake, as with the `captured` fixture.
    """
    monkeypatch.setattr(_runtime, "ids", CountingIdGenerator())
    monkeypatch.setattr(_runtime, "clock", FakeClock())

    def setup(**env: str) -> InMemoryExporter:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        _state.reset()
        exporter = InMemoryExporter()
        tracekit.configure(exporter=exporter)
        return exporter

    yield setup
    tracekit.flush(10)
    _state.reset()


def exported(exporter: InMemoryExporter) -> list[dict[str, Any]]:
    assert tracekit.flush(10)
    return exporter.traces


def t(n: int) -> int:
    return START_NS + n * STEP_NS


@tracekit.trace
def leaf(x):
    return x * 2


@tracekit.trace
def root_fn(x):
    with ThreadPoolExecutor(2) as pool:
        threaded = list(pool.map(leaf, [x, x + 1]))
    with tracekit.start_span("manual", inputs={"x": x}) as span:
        span.set_outputs(leaf(x))
    return threaded


def test_disabled_records_nothing(env_setup):
    exporter = env_setup(TRACEKIT_ENABLED="false")

    @tracekit.trace
    def gen():
        yield from (1, 2)

    assert root_fn(1) == [2, 4]
    assert list(gen()) == [1, 2]
    with tracekit.start_span("block") as span:
        assert not span.is_recording
        span.set_attribute("k", "v")
    assert exported(exporter) == []


@pytest.mark.parametrize("how", ["env", "configure"])
def test_sampling_zero_records_nothing(env_setup, how):
    if how == "env":
        exporter = env_setup(TRACEKIT_SAMPLING_RATIO="0")
    else:
        exporter = env_setup()
        tracekit.configure(sampling_ratio=0.0)
    for i in range(20):
        assert root_fn(i) == [2 * i, 2 * i + 2]
    assert exported(exporter) == []
    assert tracekit.get_stats()["traces_in_flight"] == 0


def test_sampling_half(env_setup):
    exporter = env_setup(TRACEKIT_SAMPLING_RATIO="0.5")

    @tracekit.trace
    def child():
        return 1

    @tracekit.trace
    def root():
        random.seed(1234)  # the app reseeding the global generator must not matter
        return child()

    for _ in range(2_000):
        root()
    traces = exported(exporter)
    assert 850 <= len(traces) <= 1_150
    # A sampled root keeps all of its children, in one trace.
    assert all([s["name"] for s in r["spans"]] == ["root", "child"] for r in traces)


def test_capture_content_off_keeps_everything_else(env_setup):
    exporter = env_setup(TRACEKIT_CAPTURE_CONTENT="false")

    @tracekit.trace(span_type="LLM", attributes={"gen_ai.request.model": "m"})
    def llm(prompt):
        span = tracekit.get_current_span()
        span.set_token_usage({"input_tokens": 3, "output_tokens": 1, "total_tokens": 4})
        span.set_inputs({"prompt": prompt})
        return "secret completion"

    @tracekit.trace
    def failing(password):
        raise ValueError("bad")

    with tracekit.start_span("root", inputs={"q": "secret question"}) as root:
        root.set_attribute("k", "v")
        root.set_outputs("secret answer")
        assert llm("secret prompt") == "secret completion"
        with pytest.raises(ValueError, match="bad"):
            failing("hunter2")
    (record,) = exported(exporter)
    assert "secret" not in json.dumps(record)
    assert "hunter2" not in json.dumps(record)
    stack = record["spans"][2]["events"][0]["attributes"]["exception.stacktrace"]
    assert record["spans"][2]["events"] == [
        {
            "name": "exception",
            "timestamp_ns": t(4),
            "attributes": {
                "exception.type": "ValueError",
                "exception.message": "bad",
                "exception.stacktrace": stack,
            },
        }
    ]
    assert stack.startswith("Traceback")
    usage = {"input_tokens": 3, "output_tokens": 1, "total_tokens": 4}
    assert record["token_usage"] == usage
    assert record["spans"] == [
        {
            "span_id": f"{1:016x}",
            "parent_id": None,
            "name": "root",
            "span_type": "UNKNOWN",
            "start_time_ns": t(0),
            "end_time_ns": t(6),
            "status": {"code": "OK", "message": ""},
            "inputs": None,
            "outputs": None,
            "attributes": {"k": "v"},
            "events": [],
        },
        {
            "span_id": f"{2:016x}",
            "parent_id": f"{1:016x}",
            "name": "llm",
            "span_type": "LLM",
            "start_time_ns": t(1),
            "end_time_ns": t(2),
            "status": {"code": "OK", "message": ""},
            "inputs": None,
            "outputs": None,
            "attributes": {"gen_ai.request.model": "m"},
            "events": [],
            "token_usage": usage,
        },
        {
            "span_id": f"{3:016x}",
            "parent_id": f"{1:016x}",
            "name": "failing",
            "span_type": "UNKNOWN",
            "start_time_ns": t(3),
            "end_time_ns": t(5),
            "status": {"code": "ERROR", "message": "ValueError: bad"},
            "inputs": None,
            "outputs": None,
            "attributes": {},
            "events": record["spans"][2]["events"],
        },
    ]


def test_explicit_configure_beats_env(env_setup):
    exporter = env_setup(
        TRACEKIT_SAMPLING_RATIO="0",
        TRACEKIT_CAPTURE_CONTENT="false",
        TRACEKIT_SERVICE_NAME="env-svc",
        TRACEKIT_EXPERIMENT_NAME="env-exp",
    )
    config = tracekit.configure(sampling_ratio=1.0, capture_content=True, service_name="code-svc")
    assert (config.sampling_ratio, config.capture_content, config.service_name) == (
        1.0,
        True,
        "code-svc",
    )
    assert config.experiment_name == "env-exp"  # not given explicitly: the env stays
    leaf(3)
    (record,) = exported(exporter)
    assert record["resource"]["service.name"] == "code-svc"
    assert record["spans"][0]["inputs"] == {"x": 3}


def test_enabled_argument_beats_env(env_setup):
    exporter = env_setup(TRACEKIT_ENABLED="false")
    tracekit.configure(enabled=True)
    leaf(1)
    assert [r["name"] for r in exported(exporter)] == ["leaf"]


def test_configure_bad_values_warn_and_keep_the_previous(env_setup, caplog):
    env_setup(TRACEKIT_SAMPLING_RATIO="0.5")
    config = tracekit.configure(sampling_ratio=2.0, max_spans_per_trace=0, enabled="yes")
    assert config.sampling_ratio == 0.5
    assert config.max_spans_per_trace == Config().max_spans_per_trace
    assert config.enabled is True
    messages = "\n".join(tracekit_warnings(caplog))
    for name in ("sampling_ratio", "max_spans_per_trace", "enabled"):
        assert name in messages
    with pytest.raises(TypeError):
        tracekit.configure(sampling_rate=0.5)


def test_resource_from_otel_variables(env_setup):
    exporter = env_setup(
        OTEL_SERVICE_NAME="otel-svc",
        OTEL_RESOURCE_ATTRIBUTES="service.name=from-attrs,deployment.environment=prod",
    )
    leaf(1)
    (record,) = exported(exporter)
    assert record["resource"] == {
        "service.name": "otel-svc",
        "deployment.environment": "prod",
        "telemetry.sdk.name": "tracekit",
        "telemetry.sdk.language": "python",
        "telemetry.sdk.version": tracekit.__version__,
    }


def test_resource_service_name_from_attributes_alone(env_setup):
    exporter = env_setup(OTEL_RESOURCE_ATTRIBUTES="service.name=from-attrs")
    leaf(1)
    (record,) = exported(exporter)
    assert record["resource"]["service.name"] == "from-attrs"


# -- span processors ------------------------------------------------------------------


def test_span_processors_redact_in_place_and_by_replacement():
    seen: list[str] = []

    def redact_in_place(span: dict[str, Any]) -> None:
        seen.append(span["name"])
        if isinstance(span["inputs"], dict) and "password" in span["inputs"]:
            span["inputs"]["password"] = "***"  # noqa: S105

    def replace(span: dict[str, Any]) -> dict[str, Any]:
        new = dict(span)
        new["outputs"] = "[hidden]"
        new["attributes"] = {**span["attributes"], "redacted": True}
        return new

    @tracekit.trace
    def login(user, password):
        return {"token": "tok-secret"}

    with capture(span_processors=[redact_in_place, replace]) as captured:
        with tracekit.start_span("root"):
            login("ann", "hunter2")
        (record,) = captured.traces
    assert seen == ["root", "login"]
    assert "hunter2" not in json.dumps(record)
    assert "tok-secret" not in json.dumps(record)
    assert [(s["name"], s["inputs"], s["outputs"], s["attributes"]) for s in record["spans"]] == [
        ("root", None, "[hidden]", {"redacted": True}),
        ("login", {"user": "ann", "password": "***"}, "[hidden]", {"redacted": True}),
    ]


def test_failing_span_processor_removes_content_and_logs_once(caplog):
    calls = []

    def failing_redactor(span: dict[str, Any]) -> None:
        calls.append(span["name"])
        raise RuntimeError("redactor bug")

    @tracekit.trace
    def call_llm(api_key):
        tracekit.get_current_span().set_attribute("model", "m")
        return "answer with sk-secret"

    with capture(span_processors=[failing_redactor]) as captured:
        for _ in range(3):
            call_llm("sk-secret")
        records = captured.traces
    assert calls == ["call_llm"] * 3
    assert len(records) == 3
    for record in records:
        text = json.dumps(record)
        assert "sk-secret" not in text
        (span,) = record["spans"]
        assert span["name"] == "call_llm"
        assert span["attributes"] == {"model": "m"}
        assert span["status"] == {"code": "OK", "message": ""}
        assert span["inputs"] != {"api_key": "sk-secret"}
    messages = [m for m in tracekit_warnings(caplog) if "failing_redactor" in m]
    assert len(messages) == 1
    assert "RuntimeError" in messages[0]


# -- exporters and destinations ----------------------------------------------------------


CUSTOM_EXPORTER = """
from tracekit.exporters import SUCCESS, BaseExporter

RECEIVED = []

class ListExporter(BaseExporter):
    def export(self, traces):
        RECEIVED.extend(traces)
        return SUCCESS

def make():
    return ListExporter()
"""


def test_custom_exporter_from_env(tmp_path, monkeypatch, caplog):
    module = f"tk_custom_exporter_{os.getpid()}_{id(tmp_path)}"
    (tmp_path / f"{module}.py").write_text(CUSTOM_EXPORTER)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("TRACEKIT_EXPORTER", f"{module}:make")
    _state.reset()
    try:
        leaf(21)
        assert tracekit.flush(10)
        received = sys.modules[module].RECEIVED
        assert [r["spans"][0]["outputs"] for r in received] == [42]
    finally:
        _state.reset()
        sys.modules.pop(module, None)
    assert tracekit_warnings(caplog) == []


def test_unloadable_custom_exporter_warns_and_uses_the_file_store(monkeypatch, caplog, tmp_path):
    monkeypatch.setenv("TRACEKIT_EXPORTER", "no_such_module_tk:make")
    _state.reset()
    try:
        leaf(1)
        assert tracekit.flush(10)
    finally:
        _state.reset()
    assert any("TRACEKIT_EXPORTER" in m for m in tracekit_warnings(caplog))
    lines = (tmp_path / ".tracekit" / "traces.jsonl").read_text().splitlines()
    assert [json.loads(line)["name"] for line in lines] == ["leaf"]


def test_configure_exporter_object():
    class DuckExporter:  # no base class: the protocol is enough
        def __init__(self) -> None:
            self.records: list[dict[str, Any]] = []
            self.flushed = 0

        def export(self, traces):
            self.records.extend(traces)
            return SUCCESS

        def force_flush(self, timeout=None):
            self.flushed += 1
            return True

        def shutdown(self, timeout=None):
            pass

    duck = DuckExporter()
    try:
        tracekit.configure(exporter=duck)
        leaf(2)
        assert tracekit.flush(10)
        assert [r["name"] for r in duck.records] == ["leaf"]
        assert duck.flushed >= 1
    finally:
        _state.reset()


def test_configure_exporter_with_only_export():
    class Minimal:
        def __init__(self) -> None:
            self.records: list[dict[str, Any]] = []

        def export(self, traces):
            self.records.extend(traces)
            return SUCCESS

    minimal = Minimal()
    try:
        tracekit.configure(exporter=minimal)
        leaf(2)
        assert tracekit.flush(10)
        leaf(3)
        assert tracekit.flush(10)
        assert [r["spans"][0]["outputs"] for r in minimal.records] == [4, 6]
    finally:
        _state.reset()


def test_custom_exporter_factory_returning_a_non_exporter(tmp_path, monkeypatch, caplog):
    module = f"tk_bad_factory_{os.getpid()}_{id(tmp_path)}"
    (tmp_path / f"{module}.py").write_text("def make():\n    return object()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("TRACEKIT_EXPORTER", f"{module}:make")
    _state.reset()
    try:
        leaf(1)
        assert tracekit.flush(10)
    finally:
        _state.reset()
        sys.modules.pop(module, None)
    assert any(module in m for m in tracekit_warnings(caplog))
    lines = (tmp_path / ".tracekit" / "traces.jsonl").read_text().splitlines()
    assert [json.loads(line)["name"] for line in lines] == ["leaf"]


def test_several_destinations(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    try:
        tracekit.configure(tracking_uri=f"file://{a},{b},console")
        leaf(5)
        assert tracekit.flush(10)
    finally:
        _state.reset()
    for store in (a, b):
        (line,) = (store / "traces.jsonl").read_text().splitlines()
        assert json.loads(line)["spans"][0]["outputs"] == 10
    assert "leaf" in capsys.readouterr().out


@pytest.mark.parametrize(
    "uri",
    [
        "s3://bucket/traces",
        "databricks",  # supported, but no workspace host is configured here
        "databricks://profile",  # no such profile
    ],
)
def test_unsupported_destination_falls_back_to_the_file_store(uri, monkeypatch, caplog, tmp_path):
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / "absent.databrickscfg"))
    monkeypatch.setenv("TRACEKIT_TRACKING_URI", uri)
    _state.reset()
    try:
        leaf(1)
        assert tracekit.flush(10)
    finally:
        _state.reset()
    messages = [m for m in tracekit_warnings(caplog) if uri in m]
    assert len(messages) == 1
    assert ".tracekit" in messages[0]
    lines = (tmp_path / ".tracekit" / "traces.jsonl").read_text().splitlines()
    assert [json.loads(line)["name"] for line in lines] == ["leaf"]


def test_configure_accepts_a_path_object(tmp_path):
    store = tmp_path / "store"
    try:
        tracekit.configure(tracking_uri=store)
        leaf(1)
        assert tracekit.flush(10)
    finally:
        _state.reset()
    (line,) = (store / "traces.jsonl").read_text().splitlines()
    assert json.loads(line)["name"] == "leaf"


def test_configure_export_interval_zero_does_not_spin(caplog):
    """The environment refuses intervals under 10 ms; configure() must not allow a busy loop."""
    try:
        tracekit.configure(exporter=InMemoryExporter(), export_interval=0)
        leaf(1)
        assert tracekit.flush(10)
        time.sleep(0.05)
        cpu = time.process_time()
        time.sleep(0.3)
        assert time.process_time() - cpu < 0.15
    finally:
        _state.reset()


def test_default_destination_is_the_file_store_in_cwd(tmp_path):
    _state.reset()
    try:
        leaf(1)
        assert tracekit.flush(10)
    finally:
        _state.reset()
    (line,) = (tmp_path / ".tracekit" / "traces.jsonl").read_text().splitlines()
    assert json.loads(line)["schema"] == "tracekit.trace/1"


def test_config_module_reads_only_mapping_passed():
    # from_env(env) must not consult os.environ when given a mapping.
    os.environ["TRACEKIT_SAMPLING_RATIO"] = "0.1"
    try:
        assert from_env({}).sampling_ratio == 1.0
        assert _config.from_env().sampling_ratio == 0.1
    finally:
        del os.environ["TRACEKIT_SAMPLING_RATIO"]


@pytest.mark.parametrize("uri", ["otlp://alice:s3cret@collector:4318", "s3://alice:s3cret@bucket"])
def test_unusable_uri_warnings_never_show_credentials(uri, monkeypatch, caplog, tmp_path):
    monkeypatch.setenv("TRACEKIT_TRACKING_URI", uri)
    _state.reset()
    try:
        leaf(1)
        assert tracekit.flush(10)
    finally:
        _state.reset()
    warnings = tracekit_warnings(caplog)
    assert [m for m in warnings if "collector" in m or "bucket" in m], warnings
    assert not [m for m in warnings if "s3cret" in m or "alice" in m]
    lines = (tmp_path / ".tracekit" / "traces.jsonl").read_text().splitlines()
    assert [json.loads(line)["name"] for line in lines] == ["leaf"]
