"""Shared fixtures. Internal errors raise under the suite (TRACEKIT_TESTING=1)."""

from __future__ import annotations

import importlib
import os

os.environ["TRACEKIT_TESTING"] = "1"

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.fault_proxy import FaultProxy
from tests.mlflow_server import MlflowServer, mlflow_python
from tests.phoenix_server import PhoenixServer, phoenix_python
from tests.venvs import python_or_skip

from tracekit import _stats
from tracekit._fake_server import FakeProviderServer
from tracekit.testing import Capture, capture

CASSETTES = Path(__file__).resolve().parent / "cassettes"


@pytest.fixture
def captured() -> Iterator[Capture]:
    """Traces go to memory, with counting ids and a fake clock."""
    with capture() as c:
        yield c


@pytest.fixture
def captured_realtime() -> Iterator[Capture]:
    """Traces go to memory with random ids and the real clock (for concurrency)."""
    with capture(deterministic=False) as c:
        yield c


@pytest.fixture(autouse=True)
def _clean_stats() -> None:
    _stats.reset()


@pytest.fixture(autouse=True)
def _no_store_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never write the default store into the checkout."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if (
            name.startswith(("TRACEKIT_", "MLFLOW_", "OTEL_", "DATABRICKS_"))
            and name != "TRACEKIT_TESTING"
        ):
            monkeypatch.delenv(name)


@pytest.fixture
def fresh_tracing() -> Iterator[None]:
    """Every test configures its own pipeline; the last one is flushed and closed.
    (A module of such tests: `pytestmark = [pytest.mark.usefixtures("fresh_tracing")]`.)"""
    from tracekit import _state

    _state.reset()
    yield
    _state.reset()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real `mlflow server` (its own virtualenv, SQLite store) for the whole session.

    Skipped when MLflow cannot be installed, except under CI, where that fails.
    """
    python = python_or_skip(mlflow_python, "MLflow")
    with MlflowServer(python, tmp_path_factory.mktemp("mlflow")) as server:
        yield server


@pytest.fixture
def proxy(mlflow_server: MlflowServer) -> Iterator[FaultProxy]:
    """A fault proxy in front of the session's MLflow server, in `pass` mode."""
    with FaultProxy(mlflow_server.url) as p:
        yield p


@pytest.fixture(scope="session")
def phoenix_server() -> Iterator[PhoenixServer]:
    """A real Arize Phoenix server (its own virtualenv, SQLite) for the whole session.

    Skipped when Phoenix cannot be installed, except under CI, where that fails.
    """
    python = python_or_skip(phoenix_python, "Phoenix")
    with PhoenixServer(python) as server:
        yield server


# -- provider integrations (tests/contract and the provider files) -----------------------


@pytest.fixture
def integrations() -> Iterator[Callable[..., None]]:
    """`integrations("openai", "langchain")`: turn integrations on for this test, really
    unpatched afterwards."""
    reverts: list[Callable[[], None]] = []

    def on(*names: str) -> None:
        for name in names:
            importlib.import_module(f"tracekit.{name}").autolog()
            module = importlib.import_module(f"tracekit.integrations.{name}")
            reverts.append(module.integration.revert)

    try:
        yield on
    finally:
        for revert in reverts:
            revert()


@pytest.fixture
def autolog(captured: Capture, integrations: Callable[..., None]) -> Callable[..., Capture]:
    """`autolog("openai", "langchain")`: `integrations`, traced into the test's capture,
    which it returns."""

    def on(*names: str) -> Capture:
        integrations(*names)
        return captured

    return on


@pytest.fixture
def traced(request: pytest.FixtureRequest, autolog: Callable[..., Capture]) -> Capture:
    """The test's provider autologged for one test, really unpatched afterwards.

    The provider is the `adapter` parameter's (tests/contract) or the module's PROVIDER.
    """
    if "adapter" in request.fixturenames:
        name = request.getfixturevalue("adapter").provider
    else:
        name = request.module.PROVIDER
    return autolog(name)


@pytest.fixture
def server(
    request: pytest.FixtureRequest, fake_servers: Callable[..., FakeProviderServer]
) -> FakeProviderServer:
    """A fake provider server shared by the session, its request log emptied for the test:
    of the `adapter` parameter's server_class (tests/contract), the module's SERVER, or
    FakeProviderServer."""
    if "adapter" in request.fixturenames:
        cls = request.getfixturevalue("adapter").server_class
    else:
        cls = getattr(request.module, "SERVER", FakeProviderServer)
    fake = fake_servers(cls)
    fake.requests.clear()
    return fake


@pytest.fixture
def finishes(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How many times each span went through the finishing path (must be once)."""
    from tracekit import _api
    from tracekit.integrations import _streams

    counts: Counter[str] = Counter()
    original = _api.finish

    def counting(span: Any, exc: BaseException | None) -> None:
        counts[span.name] += 1
        original(span, exc)

    monkeypatch.setattr(_api, "finish", counting)
    monkeypatch.setattr(_streams, "finish", counting)
    return counts


@pytest.fixture(scope="session")
def fake_servers() -> Iterator[Callable[..., FakeProviderServer]]:
    """`fake_servers(cls, drop_after=None)`: a running fake provider server of that class,
    one per class and setting for the whole session (stopping one waits 0.5 s)."""
    pool: dict[tuple[type[FakeProviderServer], int | None], FakeProviderServer] = {}

    def get(
        cls: type[FakeProviderServer] = FakeProviderServer, drop_after: int | None = None
    ) -> FakeProviderServer:
        if (cls, drop_after) not in pool:
            pool[cls, drop_after] = cls(drop_after=drop_after).start()
        return pool[cls, drop_after]

    yield get
    for server in pool.values():
        server.stop()
