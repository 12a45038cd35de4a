"""The export worker's own economy: what it lets go of and when, and the forms it keeps."""

from __future__ import annotations

import gc
import json
import time
import weakref
from typing import Any

import pydantic
import pytest

import tracekit
from tracekit._walk import to_jsonable
from tracekit.exporters.base import EncodedRecord, Encoding
from tracekit.exporters.file import FileExporter, encode
from tracekit.exporters.memory import InMemoryExporter

pytestmark = [pytest.mark.usefixtures("fresh_tracing")]


class Answer:
    """What a traced function returns: the trace holds it until the worker digests it."""


def _released(ref: weakref.ref[Any], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        gc.collect()
        if ref() is None:
            return True
        time.sleep(0.01)
    return False


def test_a_steady_load_is_digested_long_before_its_export(tmp_path):
    """Traces that arrive after the queue emptied are digested within the digest delay,
    not at the next export (the export interval here is half a minute)."""
    tracekit.configure(tracking_uri=str(tmp_path / "store"), export_interval=30.0)

    @tracekit.trace
    def answer() -> Answer:
        return Answer()

    answer()
    assert tracekit.flush(10)  # the queue is empty now: the worker was idle
    for _ in range(3):
        ref = weakref.ref(answer())
        assert _released(ref, timeout=2.0), "the trace kept its outputs until the export"
    assert tracekit.flush(10)
    lines = (tmp_path / "store" / "traces.jsonl").read_bytes().splitlines()
    assert len(lines) == 4
    outputs = [json.loads(line)["spans"][0]["outputs"] for line in lines]
    assert all("Answer object at" in out for out in outputs), outputs


def test_a_digested_trace_lets_go_of_its_spans_while_it_waits_for_its_batch(tmp_path):
    """Once its record is made, a trace waiting for its export keeps no span objects
    (each one a tracked object that the garbage collector would promote to its old
    generation while the trace waits); the batch still counts and writes them all."""
    from tracekit._span import Span

    tracekit.configure(tracking_uri=str(tmp_path / "store"), export_interval=30.0)

    @tracekit.trace
    def inner() -> int:
        return 1

    @tracekit.trace
    def outer() -> Answer:
        inner()
        return Answer()

    outer()
    assert tracekit.flush(10)  # the worker is idle: the next trace is digested early
    for _ in range(3):
        ref = weakref.ref(outer())
        assert _released(ref, timeout=2.0)
    alive = [o for o in gc.get_objects() if isinstance(o, Span) and o.is_recording]
    assert tracekit.flush(10)
    lines = (tmp_path / "store" / "traces.jsonl").read_bytes().splitlines()
    records = [json.loads(line) for line in lines]
    assert [len(record["spans"]) for record in records] == [2, 2, 2, 2]
    mine = {record["trace_id"] for record in records[1:]}  # digested before the export
    assert [span for span in alive if span.trace_id in mine] == []


def test_the_file_store_writes_an_early_encoded_record_as_the_record_itself(tmp_path):
    record = {"schema": "tracekit.trace/1", "trace_id": "1" * 32, "spans": [], "n": "é \ud83d"}
    exporter = FileExporter(tmp_path / "a")
    assert isinstance(exporter, Encoding)
    kept = exporter.encoded_record(record)
    assert type(kept) is EncodedRecord  # one object...
    assert not kept  # ...with no dict content
    assert exporter.export([kept]).ok
    assert FileExporter(tmp_path / "b").export([record]).ok
    written = (tmp_path / "a" / "traces.jsonl").read_bytes()
    assert written == (tmp_path / "b" / "traces.jsonl").read_bytes() == encode(record)


def test_exporters_that_read_records_get_them_whole():
    assert not isinstance(InMemoryExporter(), Encoding)


def test_the_serializer_keeps_no_class_alive():
    """The serializer remembers what to do per type, without keeping classes made at run
    time (a pydantic model per request, say) alive."""
    made = pydantic.create_model("Made", x=(int, 1))
    plain = type("Plain", (), {"__repr__": lambda self: "plain"})
    assert to_jsonable([made(x=2), plain()]) == [{"x": 2}, "plain"]
    refs = [weakref.ref(made), weakref.ref(plain)]
    del made, plain
    assert _released(refs[0], 2.0)
    assert _released(refs[1], 2.0)
