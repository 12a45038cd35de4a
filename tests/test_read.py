"""Reading traces back from a file store: get_trace, search_traces, get_current_trace_id."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import tracekit
from tracekit import _filter, _state
from tracekit._read import UnreadableDestinationError


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "store"
    _state.reset()
    tracekit.configure(tracking_uri=str(directory))
    yield directory
    _state.reset()


USAGE = {"input_tokens": 12, "output_tokens": 5, "total_tokens": 17}


@tracekit.trace
def answer(question: str, env: str = "prod", session: str = "s-1", fail: bool = False) -> str:
    tracekit.update_current_trace(tags={"env": env}, session_id=session, user_id="u-1")
    with tracekit.start_span("chat my-model", span_type="CHAT_MODEL") as span:
        span.set_attributes({"gen_ai.request.model": "my-model"})
        span.set_token_usage(dict(USAGE))
    if fail:
        raise RuntimeError("no answer")
    trace_id = tracekit.get_current_trace_id()
    assert trace_id is not None
    return trace_id


def test_seed_snippet_and_the_whole_trace(store: Path) -> None:
    assert tracekit.get_current_trace_id() is None  # outside any trace
    trace_id = answer("hi")
    assert trace_id == tracekit.get_last_trace_id()
    trace = tracekit.get_trace(trace_id)
    assert trace is not None
    assert trace.info.token_usage["input_tokens"] == 12  # the seed's snippet
    info = trace.info
    assert (info.trace_id, info.name, info.state, info.status) == (trace_id, "answer", "OK", "OK")
    assert info.tags == {"env": "prod"}
    assert info.metadata == {"session_id": "s-1", "user_id": "u-1"}
    assert (info.session_id, info.user_id) == ("s-1", "u-1")
    assert info.token_usage == USAGE
    assert info.cost is None  # no price for my-model
    assert info.assessments == []
    inputs = {"question": "hi", "env": "prod", "session": "s-1", "fail": False}
    assert (
        info.request_preview == '{"question": "hi", "env": "prod", "session": "s-1", "fail": false}'
    )
    assert isinstance(info.request_time, int)
    assert abs(info.request_time - time.time() * 1000) < 60_000
    assert isinstance(info.execution_duration, int)
    assert info.execution_duration >= 0
    root, chat = trace.data.spans
    assert (root.name, root.parent_id, root.inputs, root.outputs) == (
        "answer",
        None,
        inputs,
        trace_id,
    )
    assert (chat.name, chat.span_type, chat.parent_id, chat.token_usage) == (
        "chat my-model",
        "CHAT_MODEL",
        root.span_id,
        USAGE,
    )
    assert chat.attributes == {"gen_ai.request.model": "my-model"}


def test_prefix_unknown_and_ambiguous_ids(store: Path) -> None:
    ids = [answer(str(i)) for i in range(20)]
    trace_id = ids[0]
    by_prefix = tracekit.get_trace(trace_id[:10])
    assert by_prefix is not None
    assert by_prefix.info.trace_id == trace_id
    trace = tracekit.get_trace("tr-" + trace_id)
    assert trace is not None
    assert trace.info.trace_id == trace_id
    assert tracekit.get_trace("f" * 32 if not trace_id.startswith("f") else "0" * 32) is None
    # 20 ids, 16 hex digits: two of them start alike.
    shared = next(c for c in "0123456789abcdef" if sum(i[0] == c for i in ids) > 1)
    with pytest.raises(ValueError, match=r"matches \d+ traces; give more digits"):
        tracekit.get_trace(shared)


def test_search_with_mlflow_filters(store: Path) -> None:
    ok = answer("a", env="prod", session="s-1")
    time.sleep(0.01)  # timestamps are in milliseconds
    dev = answer("b", env="dev", session="s-2")
    time.sleep(0.01)
    with pytest.raises(RuntimeError):
        answer("c", env="prod", session="s-2", fail=True)
    failed = tracekit.get_last_trace_id()
    start = tracekit.get_trace(dev).info.request_time  # type: ignore[union-attr]

    def ids(filter_string: str | None = None, **kwargs: object) -> list[str]:
        return [t.info.trace_id for t in tracekit.search_traces(filter_string, **kwargs)]  # type: ignore[arg-type]

    assert ids() == [failed, dev, ok]  # newest first
    assert ids(max_results=2) == [failed, dev]
    assert ids("status = 'ERROR'") == [failed]
    assert ids("trace.status != 'ERROR'") == [dev, ok]
    assert ids("attributes.status IN ('OK', 'ERROR') AND tags.env = 'prod'") == [failed, ok]
    assert ids("tag.`env` NOT IN ('prod')") == [dev]
    assert ids("name = 'answer' AND metadata.session_id = 's-2'") == [failed, dev]
    assert ids("metadata.`mlflow.trace.session` = 's-1'") == [ok]  # MLflow's key works too
    assert ids("metadata.user_id = 'u-1' AND metadata.missing = 'x'") == []
    assert ids("name LIKE 'ans%' AND name ILIKE 'ANSWER'") == [failed, dev, ok]
    assert ids(f"timestamp_ms >= {start}") == [failed, dev]
    assert ids(f"timestamp < {start}") == [ok]
    assert ids("execution_time_ms >= 0 AND execution_time_ms < 60000") == [failed, dev, ok]
    assert ids(order_by=["timestamp_ms ASC"]) == [ok, dev, failed]
    assert ids(order_by=["status DESC", "timestamp_ms ASC"]) == [ok, dev, failed]
    assert ids(f"trace_id = '{dev}'") == [dev]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("bogus = 1", "unknown key 'bogus'"),
        ("status = 'OK' OR name = 'x'", "only AND joins clauses"),
        ("status 'OK'", "expected a comparator"),
        ("status =", "expected a value"),
        ("status = OK", "expected a 'quoted string' or a number"),
        ("tags.env IN 'x'", "expected \\( after IN"),
        ("status = 'OK' ;", "cannot parse the filter"),
    ],
)
def test_bad_filters_say_why(store: Path, text: str, error: str) -> None:
    with pytest.raises(_filter.FilterError, match=error):
        tracekit.search_traces(text)


def test_filter_written_for_a_tracking_server() -> None:
    clauses = _filter.parse(
        "status = 'OK' AND tags.env = 'prod' AND metadata.session_id = 's-1' AND "
        "execution_time_ms > 5 AND trace_id IN ('" + "a" * 32 + "')"
    )
    assert _filter.to_mlflow(clauses) == (
        "trace.status = 'OK' AND tags.`env` = 'prod' AND "
        "metadata.`mlflow.trace.session` = 's-1' AND trace.execution_time_ms > 5 AND "
        "trace.request_id IN ('tr-" + "a" * 32 + "')"
    )


@pytest.mark.parametrize("uri", ["otlp", "console", "memory"])
def test_unreadable_destinations_say_so(uri: str) -> None:
    _state.reset()
    try:
        tracekit.configure(tracking_uri=uri)
        with pytest.raises(UnreadableDestinationError, match="cannot read traces back from"):
            tracekit.get_trace("0" * 32)
        with pytest.raises(UnreadableDestinationError, match="add a file store"):
            tracekit.search_traces()
    finally:
        _state.reset()


def test_the_file_store_among_several_destinations_is_read(tmp_path: Path) -> None:
    _state.reset()
    try:
        tracekit.configure(tracking_uri=["console", str(tmp_path / "s")])
        trace_id = answer("x")
        trace = tracekit.get_trace(trace_id)
        assert trace is not None
        assert trace.info.trace_id == trace_id
    finally:
        _state.reset()
