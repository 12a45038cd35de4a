"""Helpers for testing code traced with tracekit.

Example (pytest):

    import pytest
    from tracekit.testing import capture

    @pytest.fixture
    def traces():
        with capture() as captured:
            yield captured

    def test_answer(traces):
        answer("hi")
        (record,) = traces.traces
        assert record["spans"][0]["name"] == "answer"

`capture()` routes traces to memory, makes ids count up from 1 and the clock
advance 1 ms per reading, so whole traces can be compared exactly.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tracekit import _config, _runtime, _state
from tracekit._fake_server import FakeProviderServer
from tracekit.exporters.memory import InMemoryExporter

__all__ = ["Capture", "CountingIdGenerator", "FakeClock", "FakeProviderServer", "capture"]

START_NS = 1_700_000_000_000_000_000
STEP_NS = 1_000_000


class CountingIdGenerator:
    """Trace ids 000…001, 000…002, … and span ids likewise (thread-safe)."""

    def __init__(self) -> None:
        self._traces = itertools.count(1)
        self._spans = itertools.count(1)

    def trace_id(self) -> str:
        return f"{next(self._traces):032x}"

    def span_id(self) -> str:
        return f"{next(self._spans):016x}"


class FakeClock:
    """A clock that advances `step_ns` on every reading."""

    def __init__(self, start_ns: int = START_NS, step_ns: int = STEP_NS) -> None:
        self._ticks = itertools.count()
        self.start_ns = start_ns
        self.step_ns = step_ns

    def __call__(self) -> int:
        return self.start_ns + next(self._ticks) * self.step_ns


class Capture:
    """What `capture()` yields: the traces exported while it was active."""

    def __init__(self, exporter: InMemoryExporter) -> None:
        self.exporter = exporter

    @property
    def traces(self) -> list[dict[str, Any]]:
        """Every trace finished so far (flushes first)."""
        _state.flush(10.0)
        return self.exporter.traces

    def single(self) -> dict[str, Any]:
        """The one trace finished so far; AssertionError if there are 0 or several."""
        traces = self.traces
        assert len(traces) == 1, f"expected one trace, got {len(traces)}"
        return traces[0]

    def clear(self) -> None:
        _state.flush(10.0)
        self.exporter.clear()


@contextmanager
def capture(*, deterministic: bool = True, **settings: Any) -> Iterator[Capture]:
    """Send traces to memory for the duration of the block.

    Args:
        deterministic: count ids up from 1 and use a fake clock.
        **settings: any `tracekit.configure()` setting (e.g. `sampling_ratio`),
            applied over defaults, not over the environment.
    """
    exporter = InMemoryExporter()
    saved = (_state._config_value, _runtime.ids, _runtime.clock)
    config = _config.merge(_config.Config(exporters=(exporter,)), settings)
    if deterministic:
        _runtime.ids = CountingIdGenerator()
        _runtime.clock = FakeClock()
    _state.reset(config)
    _state.buffer.discard_all()  # spans left open by earlier code must not leak in
    try:
        yield Capture(exporter)
    finally:
        _state.flush(10.0)
        _runtime.ids, _runtime.clock = saved[1], saved[2]
        _state.reset(saved[0])
