"""Process-wide sources of ids and time, replaceable by `tracekit.testing`.

Ids come from a private `random.Random` seeded from `os.urandom`, so an
application calling `random.seed()` cannot make them collide, and a forked
child re-seeds before it creates its first id.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from typing import Protocol


class IdGenerator(Protocol):
    """Where trace and span ids come from."""

    def trace_id(self) -> str: ...

    def span_id(self) -> str: ...


_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


class RandomIdGenerator:
    """128-bit trace ids and 64-bit span ids as lowercase hex (W3C compatible)."""

    def __init__(self) -> None:
        # Ids need uniqueness, not secrecy; os.urandom-seeded Mersenne Twister is
        # several times faster than secrets.token_hex on the hot path.
        self._rng = random.Random()  # noqa: S311

    def trace_id(self) -> str:
        bits = self._rng.getrandbits(128)
        while not bits:  # all-zero ids are invalid in W3C trace context
            bits = self._rng.getrandbits(128)
        return f"{bits:032x}"

    def span_id(self) -> str:
        bits = self._rng.getrandbits(64)
        while not bits:
            bits = self._rng.getrandbits(64)
        return f"{bits:016x}"

    def root_ids(self) -> tuple[str, str]:
        """A trace id and a span id from one draw (a new trace's root: one call fewer)."""
        text = f"{self._rng.getrandbits(192):048x}"
        trace_id, span_id = text[:32], text[32:]
        if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:  # invalid in W3C: draw again
            return self.trace_id(), self.span_id()
        return trace_id, span_id

    def random(self) -> float:
        return self._rng.random()

    def reseed(self) -> None:
        self._rng.seed()


_random = RandomIdGenerator()


def root_ids() -> tuple[str, str]:
    """The ids of a new trace and its root span, from `ids` (replaceable)."""
    if ids is _random:
        return _random.root_ids()
    return ids.trace_id(), ids.span_id()


ids: IdGenerator = _random
clock: Callable[[], int] = time.time_ns
# Sampling uses the private generator as well: `random.seed()` must not make
# every process of a fleet take the same sampling decisions.
sample = _random.random

os.register_at_fork(after_in_child=_random.reseed)
