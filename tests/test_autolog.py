"""`tracekit.autolog()` and the integration registry it reads.

One call turns on every integration whose SDK is installed (all four are, in the
dev group), with the real SDKs talking to `FakeProviderServer` over loopback;
`disable=True` stops them all without unpatching; `revert()` really unpatches and
`autolog()` patches again. An SDK that is missing is skipped with one debug line;
one older than the registry's minimum is not traced, with one warning.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

anthropic = pytest.importorskip("anthropic")
openai = pytest.importorskip("openai")
genai = pytest.importorskip("google.genai")
pytest.importorskip("langchain_core")

from google.genai import types  # noqa: E402
from langchain_core.runnables import RunnableLambda  # noqa: E402

import tracekit  # noqa: E402
from tracekit._fake_server import FakeProviderServer  # noqa: E402
from tracekit.integrations import _registry  # noqa: E402
from tracekit.integrations._base import BaseIntegration  # noqa: E402
from tracekit.integrations._engine import Integration  # noqa: E402
from tracekit.integrations._registry import INTEGRATIONS, IntegrationSpec  # noqa: E402
from tracekit.testing import Capture  # noqa: E402

QUESTION = "hello there"
ANSWER = "You asked: hello there"


def integrations() -> list[BaseIntegration]:
    return [_registry_object(spec) for spec in INTEGRATIONS]


def _registry_object(spec: IntegrationSpec) -> BaseIntegration:
    import importlib

    found: BaseIntegration = importlib.import_module(spec.implementation).integration
    return found


@pytest.fixture
def autologged(captured: Capture) -> Iterator[Capture]:
    """`tracekit.autolog()` for one test; every integration really unpatched afterwards."""
    tracekit.autolog()
    try:
        yield captured
    finally:
        for integration in integrations():
            integration.revert()


def call_every_sdk(server: FakeProviderServer) -> list[str]:
    """One call through each SDK, the OpenAI one inside a LangChain runnable."""
    client = openai.OpenAI(api_key="test", base_url=server.base_url + "/v1", max_retries=0)

    def ask_openai(question: str) -> str:
        reply = client.chat.completions.create(
            model="fake-mini", messages=[{"role": "user", "content": question}]
        )
        return str(reply.choices[0].message.content)

    answers = [RunnableLambda(ask_openai, name="ask").invoke(QUESTION)]
    claude = anthropic.Anthropic(api_key="test", base_url=server.base_url, max_retries=0)
    reply = claude.messages.create(
        model="fake-claude", max_tokens=64, messages=[{"role": "user", "content": QUESTION}]
    )
    answers.append(reply.content[0].text)
    gemini = genai.Client(
        api_key="test",
        http_options=types.HttpOptions(base_url=server.base_url, api_version="v1beta"),
    )
    answers.append(str(gemini.models.generate_content(model="fake-gemini", contents=QUESTION).text))
    return answers


def shape(trace: dict[str, Any]) -> list[tuple[str, str, str | None, str | None]]:
    """Each span as (name, type, parent's name, provider)."""
    names = {span["span_id"]: span["name"] for span in trace["spans"]}
    return [
        (
            span["name"],
            span["span_type"],
            names.get(span["parent_id"]),
            span["attributes"].get("gen_ai.provider.name"),
        )
        for span in trace["spans"]
    ]


def test_autolog_traces_every_installed_sdk(
    autologged: Capture, server: FakeProviderServer
) -> None:
    assert call_every_sdk(server) == [ANSWER] * 3
    assert [integration.enabled for integration in integrations()] == [True] * 4
    assert [shape(trace) for trace in autologged.traces] == [
        [
            ("ask", "CHAIN", None, None),
            ("chat fake-mini", "CHAT_MODEL", "ask", "openai"),
        ],
        [("chat fake-claude", "CHAT_MODEL", None, "anthropic")],
        [("generate_content fake-gemini", "CHAT_MODEL", None, "gcp.gemini")],
    ]
    usage = [trace["token_usage"] for trace in autologged.traces]
    assert all(u["total_tokens"] == u["input_tokens"] + u["output_tokens"] > 0 for u in usage)


def test_disable_stops_every_integration_without_unpatching(
    autologged: Capture, server: FakeProviderServer
) -> None:
    create = openai.resources.chat.completions.Completions.__dict__["create"]
    tracekit.autolog(disable=True)
    assert [integration.enabled for integration in integrations()] == [False] * 4
    assert call_every_sdk(server) == [ANSWER] * 3  # the calls still work, untraced
    assert autologged.traces == []
    assert openai.resources.chat.completions.Completions.__dict__["create"] is create

    tracekit.autolog()  # on again: the same patches record again
    call_every_sdk(server)
    assert len(autologged.traces) == 3


def test_log_traces_false_is_disable(autologged: Capture, server: FakeProviderServer) -> None:
    tracekit.autolog(log_traces=False)
    call_every_sdk(server)
    assert autologged.traces == []


def test_revert_unpatches_and_autolog_patches_again(
    captured: Capture, server: FakeProviderServer
) -> None:
    from langchain_core.callbacks import base

    owner = openai.resources.chat.completions.Completions
    original = owner.__dict__["create"]
    manager_init = base.BaseCallbackManager.__dict__["__init__"]
    tracekit.autolog()
    try:
        assert owner.__dict__["create"] is not original
        assert base.BaseCallbackManager.__dict__["__init__"] is not manager_init
    finally:
        for integration in integrations():
            integration.revert()
    assert owner.__dict__["create"] is original
    assert base.BaseCallbackManager.__dict__["__init__"] is manager_init
    assert [integration.enabled for integration in integrations()] == [False] * 4
    call_every_sdk(server)
    assert captured.traces == []

    tracekit.autolog()
    try:
        call_every_sdk(server)
    finally:
        for integration in integrations():
            integration.revert()
    assert len(captured.traces) == 3


def test_a_missing_sdk_is_skipped_with_one_debug_line(
    captured: Capture,
    server: FakeProviderServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # `None` in sys.modules is how Python says "cannot be imported" (as if not installed).
    monkeypatch.setitem(sys.modules, "anthropic", None)
    caplog.set_level(logging.DEBUG, logger="tracekit")
    tracekit.autolog()
    try:
        enabled = {integration.name: integration.enabled for integration in integrations()}
    finally:
        for integration in integrations():
            integration.revert()
    assert enabled == {"openai": True, "anthropic": False, "gemini": True, "langchain": True}
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("DEBUG", "tracekit: autolog: anthropic is not installed; anthropic skipped")
    ]


def test_a_missing_sdk_warns_when_named_alone(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "google.genai", None)
    tracekit.gemini.autolog()
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "WARNING",
            "tracekit: gemini autolog: google-genai is not installed; nothing to trace "
            "(pip install 'tracekit[gemini]')",
        )
    ]
    caplog.clear()
    tracekit.gemini.autolog(silent=True)
    assert caplog.records == []
    assert not tracekit.gemini.integration.enabled


@pytest.mark.parametrize(("installed", "traced"), [("1.9.3", False), ("2.0.1rc1", True)])
def test_an_sdk_older_than_the_minimum_is_not_traced(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    installed: str,
    traced: bool,
) -> None:
    """A real (tiny) SDK module and the engine's own Integration class."""
    module = f"tk_tiny_sdk_{'new' if traced else 'old'}"
    (tmp_path / f"{module}.py").write_text(f"__version__ = {installed!r}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)  # removed again afterwards
    spec = IntegrationSpec(
        name="tiny",
        sdk_module=module,
        distribution="tiny-sdk",
        min_version="2.0",
        face="tracekit.tiny",
        implementation=__name__,
    )
    integration = Integration(spec, [])
    integration.autolog(silent=True)  # silent only hides "not installed"
    assert integration.enabled is traced
    expected = (
        []
        if traced
        else [
            (
                "WARNING",
                "tracekit: tiny autolog: tiny-sdk 1.9.3 is older than 2.0, the oldest release "
                "tracekit traces; not traced (pip install -U 'tiny-sdk>=2.0')",
            )
        ]
    )
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == expected
    integration.revert()


def test_every_registered_integration_is_wired() -> None:
    """The faces, the implementations, the configuration, pyproject's extras and the
    integrations page all follow the registry."""
    import importlib

    from tracekit._config import INTEGRATIONS as CONFIG_NAMES

    tomllib = pytest.importorskip("tomllib")
    pyproject = tomllib.loads(
        (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    )
    extras = pyproject["project"]["optional-dependencies"]
    page = (Path(__file__).resolve().parents[1] / "docs/integrations/index.md").read_text(
        encoding="utf-8"
    )
    assert CONFIG_NAMES == _registry.NAMES == ("openai", "anthropic", "gemini", "langchain")
    for spec in INTEGRATIONS:
        face = importlib.import_module(spec.face)
        integration = _registry_object(spec)
        assert getattr(tracekit, spec.name) is face
        assert face.integration is integration
        assert callable(face.autolog)
        assert isinstance(integration, BaseIntegration)
        assert integration.spec is spec
        assert extras[spec.name] == [f"{spec.distribution}>={spec.min_version}"]
        assert f"| `{spec.name}` | `{spec.distribution}` | {spec.min_version} |" in page
        version = importlib.import_module(spec.sdk_module).__version__
        assert _registry.version_tuple(version) >= _registry.version_tuple(spec.min_version)


def test_version_tuple() -> None:
    assert _registry.version_tuple("1.40.2") == (1, 40, 2)
    assert _registry.version_tuple("2.0.0rc1") == (2, 0, 0)
    assert _registry.version_tuple("1.0a1.dev3") == (1, 0)
    assert _registry.version_tuple("dev") == ()
