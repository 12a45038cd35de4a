"""What an exit must leave on its span (kept apart: the adapters' extra exits use it)."""

from __future__ import annotations

from dataclasses import dataclass

from tracekit.testing import Capture


@dataclass
class Outcome:
    """What the span must show after an exit."""

    ended_by: str | set[str] | None  # `tracekit.stream.ended_by` (None: absent; a set: any)
    chunks: int | None  # chunks the span counted (None: not checked)
    error: BaseException | None = None  # the exception the caller got and the span records
    full: bool = False  # the whole answer arrived: outputs and usage are complete
    items: int | None = None  # what the caller's loop got (recorded in the snapshot)
    requests: int = 1  # requests the server received
    partial: bool = False  # left after some chunks: a helper may have read ahead


def nothing_recorded_yet(captured: Capture) -> None:
    assert captured.traces == [], "the span ended before the stream was done with"
