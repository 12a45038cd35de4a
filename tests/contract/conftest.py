"""Fixtures of the contract suite: the adapter's servers and the snapshots.

`traced` (the adapter's provider autologged) and `finishes` come from tests/conftest.py.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator

import pytest
from tests.contract.adapters import KEEP, Adapter
from tests.contract.snapshots import Snapshots

from tracekit._fake_server import FakeProviderServer


@pytest.fixture
def dropping(
    adapter: Adapter, fake_servers: Callable[..., FakeProviderServer]
) -> FakeProviderServer:
    """The adapter's server, hanging up after KEEP events of every stream."""
    return fake_servers(adapter.server_class, KEEP)


@pytest.fixture(scope="session")
def snapshots() -> Iterator[Snapshots]:
    store = Snapshots()
    yield store
    store.write()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Move what collection imported (three SDKs) out of the collector's sight: the
    exits call gc.collect(), which otherwise walks all of it each time."""
    gc.freeze()
