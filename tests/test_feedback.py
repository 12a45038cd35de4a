"""Feedback and expectations on the file store: logged, merged when read, shown, validated.

The MLflow server side (read back by MLflow's own client, spooled and delivered once after
an outage) is in tests/test_after_trace_mlflow.py.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest

import tracekit
from tracekit import _state
from tracekit.wsgi import TracekitMiddleware


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "store"
    _state.reset()
    tracekit.configure(tracking_uri=str(directory))
    yield directory
    _state.reset()


@tracekit.trace
def answer(question: str) -> str:
    return "Paris"


def test_feedback_round_trip(store: Path) -> None:
    answer("capital of France?")
    trace_id = tracekit.get_last_trace_id()
    assert trace_id is not None
    span_id = tracekit.get_trace(trace_id).data.spans[0].span_id  # type: ignore[union-attr]
    thumbs = tracekit.log_feedback(
        trace_id=trace_id,
        name="thumbs_up",
        value=True,
        source="user-42",
        rationale="right answer",
        metadata={"channel": "web", "attempt": 2},
    )
    tracekit.log_feedback(
        trace_id="tr-" + trace_id,  # MLflow's form of the id works too
        name="judge",
        value=None,
        source={"source_type": "LLM_JUDGE", "source_id": "gpt-judge"},
        error=TimeoutError("judge timed out"),
        span_id=span_id,
    )
    tracekit.log_expectation(trace_id=trace_id, name="expected", value=["Paris", {"lang": "fr"}])

    lines = [json.loads(line) for line in (store / "assessments.jsonl").read_text().splitlines()]
    assert lines[0] == {
        "schema": "tracekit.assessment/1",
        "trace_id": trace_id,
        "assessment_id": thumbs.assessment_id,
        "kind": "feedback",
        "name": "thumbs_up",
        "value": True,
        "source": {"source_type": "HUMAN", "source_id": "user-42"},
        "create_time_ms": thumbs.create_time_ms,
        "rationale": "right answer",
        "metadata": {"channel": "web", "attempt": "2"},
    }
    assert str(thumbs.assessment_id).startswith("a-")

    trace = tracekit.get_trace(trace_id)
    assert trace is not None
    got = [
        (a.kind, a.name, a.value, a.source.source_type, a.span_id, a.error)
        for a in trace.info.assessments
    ]
    assert got == [
        ("feedback", "thumbs_up", True, "HUMAN", None, None),
        (
            "feedback",
            "judge",
            None,
            "LLM_JUDGE",
            span_id,
            {"error_code": "TimeoutError", "error_message": "judge timed out"},
        ),
        ("expectation", "expected", ["Paris", {"lang": "fr"}], "HUMAN", None, None),
    ]
    # search_traces merges them too; other traces have none.
    answer("again")
    assert [len(t.info.assessments) for t in tracekit.search_traces()] == [0, 3]

    # `tracekit show` lists them under the trace.
    shown = subprocess.run(
        [sys.executable, "-m", "tracekit", "show", trace_id[:8], "--store", str(store)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert shown[-3:] == [
        '  feedback thumbs_up = true  by HUMAN user-42  "right answer"',
        f"  feedback judge = null  by LLM_JUDGE gpt-judge  on span {span_id}  error TimeoutError",
        '  expectation expected = ["Paris", {"lang": "fr"}]  by HUMAN default',
    ]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"value": object()}, TypeError, "value must be a bool, a number, a string"),
        ({"value": float("inf")}, ValueError, "value must be a finite number"),
        ({"value": {"a": {1: 2}}}, TypeError, r"value\['a'\] keys must be strings"),
        ({"value": [1, {2, 3}]}, TypeError, r"value\[1\] must be"),
        ({"value": None}, ValueError, "value is required"),
        ({"value": 1, "name": ""}, ValueError, "name must be a non-empty string"),
        ({"value": 1, "trace_id": ""}, ValueError, "trace_id must be a trace id"),
        ({"value": 1, "source": {"source_type": "ROBOT"}}, ValueError, "source_type must be"),
        ({"value": 1, "metadata": ["x"]}, TypeError, "metadata must be a dict"),
    ],
)
def test_bad_arguments_are_clear_errors(
    store: Path, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    arguments: dict[str, Any] = {"trace_id": "0" * 32, "name": "x", **kwargs}
    with pytest.raises(error, match=message):
        tracekit.log_feedback(**arguments)
    assert not (store / "assessments.jsonl").exists()


def test_keyword_only_like_mlflow(store: Path) -> None:
    with pytest.raises(TypeError):
        tracekit.log_feedback("0" * 32, "x", True)  # type: ignore[misc]


def test_destinations_without_feedback_warn_and_go_on(caplog: pytest.LogCaptureFixture) -> None:
    _state.reset()
    try:
        tracekit.configure(tracking_uri="otlp")
        with caplog.at_level(logging.WARNING, logger="tracekit"):
            logged = tracekit.log_feedback(trace_id="0" * 32, name="x", value=1)
        assert logged.value == 1
        assert "none is configured (TRACEKIT_TRACKING_URI=otlp)" in caplog.text
    finally:
        _state.reset()


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_thumbs_up_web_pattern(store: Path) -> None:
    """docs/feedback.md's pattern: the answer carries its trace id; a later request rates it."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ["PATH_INFO"] == "/ask":
            text = answer("capital of France?")
            trace_id = tracekit.get_current_trace_id() or ""
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps({"answer": text, "trace_id": trace_id}).encode()]
        body = json.loads(environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])))
        tracekit.log_feedback(
            trace_id=body["trace_id"],
            name="thumbs_up",
            value=body["thumbs_up"],
            source=body["user_id"],
            rationale=body.get("comment"),
        )
        start_response("204 No Content", [])
        return []

    server = make_server("127.0.0.1", 0, TracekitMiddleware(app), handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        with urllib.request.urlopen(base + "/ask", timeout=10) as response:  # noqa: S310
            asked = json.loads(response.read())
        request = urllib.request.Request(  # noqa: S310
            base + "/feedback",
            data=json.dumps(
                {"trace_id": asked["trace_id"], "thumbs_up": False, "user_id": "u-7"}
            ).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            assert response.status == 204
    finally:
        server.shutdown()
        server.server_close()
    trace = tracekit.get_trace(asked["trace_id"])
    assert trace is not None
    assert trace.info.name == "GET /ask"  # the request's span is the trace's root
    ((name, value, who),) = [(a.name, a.value, a.source.source_id) for a in trace.info.assessments]
    assert (name, value, who) == ("thumbs_up", False, "u-7")
