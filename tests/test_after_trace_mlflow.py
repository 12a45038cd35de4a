"""After the trace, against a real `mlflow server`: cost, reading back, feedback.

What tracekit writes is read back with MLflow's own client (`tests/mlflow_read.py`
in the MLflow venv), and what MLflow's own client writes is read with tracekit.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import uuid
from typing import Any

import pytest
from tests.child import run_python
from tests.mlflow_server import MlflowServer, _clean_env, create_experiment, read_traces

import tracekit
from tracekit import _state

pytestmark = [
    pytest.mark.timeout(600),  # the first use of `mlflow_server` may build its venv
    pytest.mark.usefixtures("fresh_tracing"),
]

PRICES = {"my-endpoint": {"input_mtok": 2.0, "output_mtok": 10.0}}
USAGE = {"input_tokens": 1000, "output_tokens": 200, "total_tokens": 1200}
ONE_CALL = {"input_cost": 0.002, "output_cost": 0.002, "total_cost": 0.004}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def priced_agent(calls: int, **metadata: str) -> str:
    """A trace of `calls` LLM spans on a user-priced endpoint; returns its id."""
    with tracekit.start_span("agent", span_type="AGENT"):
        if metadata:
            tracekit.update_current_trace(metadata=metadata)
        for _ in range(calls):
            with tracekit.start_span("chat my-endpoint", span_type="CHAT_MODEL") as span:
                span.set_attributes(
                    {"gen_ai.request.model": "my-endpoint", "gen_ai.provider.name": "openai"}
                )
                span.set_token_usage(dict(USAGE))
    trace_id = tracekit.get_last_trace_id()
    assert trace_id is not None
    return trace_id


def test_cost_is_shown_by_mlflow(mlflow_server: MlflowServer) -> None:
    """Span cost as `mlflow.llm.cost`, the trace's as `mlflow.trace.cost` (MLflow's
    `TraceInfo.cost`), whether the server sums the spans or StartTraceV3 states it."""
    experiment_id = create_experiment(mlflow_server.url, unique("cost"))
    tracekit.configure(tracking_uri=mlflow_server.url, experiment_id=experiment_id, prices=PRICES)
    from_spans = priced_agent(2)
    from_info = priced_agent(3, team="search")  # metadata only StartTraceV3 stores
    assert tracekit.flush(30)

    stored = {
        t["trace_id"]: t
        for t in read_traces(mlflow_server.python, mlflow_server.url, experiment_id)
    }
    for trace_id, calls in ((from_spans, 2), (from_info, 3)):
        trace = stored["tr-" + trace_id]
        llm = [s for s in trace["spans"] if s["span_type"] == "CHAT_MODEL"]
        assert [s["attributes"]["mlflow.llm.cost"] for s in llm] == [ONE_CALL] * calls
        total = json.loads(trace["metadata"]["mlflow.trace.cost"])
        assert total == pytest.approx({k: v * calls for k, v in ONE_CALL.items()})


def mlflow_client(server: MlflowServer, code: str) -> Any:
    """Run `code` with MLflow's own client in the MLflow venv; it prints one JSON value."""
    script = f"import json, mlflow\nmlflow.set_tracking_uri({server.url!r})\n" + textwrap.dedent(
        code
    )
    env = _clean_env(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="30")
    done = subprocess.run(
        [str(server.python), "-c", script], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_trace_logged_by_mlflow_is_read_by_tracekit(mlflow_server: MlflowServer) -> None:
    name = unique("by-mlflow")
    made = mlflow_client(
        mlflow_server,
        f"""
        mlflow.set_experiment({name!r})

        @mlflow.trace(span_type="AGENT")
        def agent(question):
            mlflow.update_current_trace(
                tags={{"env": "prod"}},
                metadata={{"mlflow.trace.session": "s-9", "mlflow.trace.user": "u-9"}},
            )
            with mlflow.start_span("retrieve", span_type="RETRIEVER") as span:
                span.set_inputs({{"q": question}})
                span.set_outputs(["doc"])
            return "answer"

        agent("why?")
        trace_id = mlflow.get_last_active_trace_id()
        mlflow.flush_trace_async_logging()
        experiment = mlflow.get_experiment_by_name({name!r}).experiment_id
        print(json.dumps([trace_id, experiment]))
        """,
    )
    mlflow_id, experiment_id = made
    tracekit.configure(tracking_uri=mlflow_server.url, experiment_id=experiment_id)

    trace = tracekit.get_trace(mlflow_id)
    assert trace is not None
    info = trace.info
    assert info.trace_id == mlflow_id.removeprefix("tr-")
    assert (info.name, info.state, info.experiment_id) == ("agent", "OK", experiment_id)
    assert info.tags["env"] == "prod"
    assert (info.session_id, info.user_id) == ("s-9", "u-9")
    assert isinstance(info.request_time, int)
    assert isinstance(info.execution_duration, int)
    root, retrieve = trace.data.spans
    assert (root.name, root.span_type, root.parent_id, root.status) == (
        "agent",
        "AGENT",
        None,
        "OK",
    )
    assert (root.inputs, root.outputs) == ({"question": "why?"}, "answer")
    assert (retrieve.name, retrieve.span_type, retrieve.parent_id) == (
        "retrieve",
        "RETRIEVER",
        root.span_id,
    )
    assert (retrieve.inputs, retrieve.outputs) == ({"q": "why?"}, ["doc"])
    assert tracekit.get_trace(mlflow_id.removeprefix("tr-")) is not None  # bare hex works too
    assert tracekit.get_trace("tr-" + "0" * 32) is None

    # Searching on the server: MLflow evaluates the filter, tracekit's names mapped.
    mine = priced_agent(1)
    found = [t.info.trace_id for t in tracekit.search_traces()]
    assert found == [mine, info.trace_id]  # newest first
    only = "tags.env = 'prod' AND metadata.session_id = 's-9' AND status = 'OK'"
    assert [t.info.trace_id for t in tracekit.search_traces(only)] == [info.trace_id]
    assert [t.info.trace_id for t in tracekit.search_traces("name = 'agent'")] == [
        mine,
        info.trace_id,
    ]
    assert tracekit.search_traces("tags.env = 'dev'") == []
    assert len(tracekit.search_traces(max_results=1)) == 1
    with pytest.raises(ValueError, match="refused the request"):
        tracekit.search_traces("trace.status < 3 AND tags.env LIKE 5")

    ours = tracekit.get_trace(mine)
    assert ours is not None
    assert ours.info.token_usage == USAGE
    assert ours.info.cost is None  # configured without prices this time
    assert [s.name for s in ours.data.spans] == ["agent", "chat my-endpoint"]
    assert ours.data.spans[1].token_usage == USAGE


# -- feedback ---------------------------------------------------------------------------


def mlflow_assessments(server: MlflowServer, trace_id: str) -> list[dict[str, Any]]:
    """`mlflow.get_trace(...).info.assessments`, read by MLflow's own client."""
    return mlflow_client(  # type: ignore[no-any-return]
        server,
        f"""
        trace = mlflow.get_trace({"tr-" + trace_id!r})
        print(json.dumps([
            {{
                "id": a.assessment_id,
                "name": a.name,
                "kind": type(a).__name__,
                "value": a.value,
                "source": [a.source.source_type, a.source.source_id],
                "rationale": a.rationale,
                "metadata": a.metadata,
                "span_id": a.span_id,
            }}
            for a in sorted(trace.info.assessments, key=lambda a: a.create_time_ms)
        ]))
        """,
    )


def stored_count(server_url: str, trace_id: str) -> int:
    """How many assessments the server holds for a trace (a plain REST read)."""
    import urllib.request

    url = f"{server_url}/api/3.0/mlflow/traces/tr-{trace_id}"
    with urllib.request.urlopen(url, timeout=30) as answer:  # noqa: S310 - loopback http
        info = json.loads(answer.read())["trace"]["trace_info"]
    return len(info.get("assessments") or [])


def wait_for(condition: Any, timeout: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_feedback_is_read_back_by_mlflow(mlflow_server: MlflowServer, tmp_path: Any) -> None:
    experiment_id = create_experiment(mlflow_server.url, unique("feedback"))
    tracekit.configure(
        tracking_uri=mlflow_server.url, experiment_id=experiment_id, spool_dir=str(tmp_path)
    )
    trace_id = priced_agent(1)
    assert tracekit.flush(30)
    span_id = tracekit.get_trace(trace_id).data.spans[1].span_id  # type: ignore[union-attr]
    thumbs = tracekit.log_feedback(
        trace_id=trace_id,
        name="thumbs_up",
        value=True,
        source=tracekit.AssessmentSource("HUMAN", "user-42"),
        rationale="answered my question",
        metadata={"channel": "web"},
    )
    score = tracekit.log_feedback(
        trace_id=trace_id, name="relevance", value=0.75, source="reviewer-1", span_id=span_id
    )
    expected = tracekit.log_expectation(
        trace_id=trace_id, name="expected_answer", value={"answer": "Paris", "sources": [1, 2]}
    )
    assert tracekit.flush(30)  # delivers the feedback too
    assert stored_count(mlflow_server.url, trace_id) == 3

    assert mlflow_assessments(mlflow_server, trace_id) == [
        {
            "id": thumbs.assessment_id,
            "name": "thumbs_up",
            "kind": "Feedback",
            "value": True,
            "source": ["HUMAN", "user-42"],
            "rationale": "answered my question",
            "metadata": {"channel": "web"},
            "span_id": None,
        },
        {
            "id": score.assessment_id,
            "name": "relevance",
            "kind": "Feedback",
            "value": 0.75,
            "source": ["HUMAN", "reviewer-1"],
            "rationale": None,
            "metadata": None,
            "span_id": span_id,
        },
        {
            "id": expected.assessment_id,
            "name": "expected_answer",
            "kind": "Expectation",
            "value": {"answer": "Paris", "sources": [1, 2]},
            "source": ["HUMAN", "default"],
            "rationale": None,
            "metadata": None,
            "span_id": None,
        },
    ]
    # ...and by tracekit, from the server.
    read = tracekit.get_trace(trace_id)
    assert read is not None
    assert [(a.kind, a.name, a.value) for a in read.info.assessments] == [
        ("feedback", "thumbs_up", True),
        ("feedback", "relevance", 0.75),
        ("expectation", "expected_answer", {"answer": "Paris", "sources": [1, 2]}),
    ]


def test_spooled_feedback_is_delivered_exactly_once_after_an_outage(
    mlflow_server: MlflowServer, tmp_path: Any
) -> None:
    import time

    from tests.fault_proxy import FaultProxy

    experiment_id = create_experiment(mlflow_server.url, unique("outage"))
    with FaultProxy(mlflow_server.url) as proxy:
        tracekit.configure(
            tracking_uri=proxy.url,
            experiment_id=experiment_id,
            spool_dir=str(tmp_path),
            export_timeout=2.0,
        )
        trace_id = priced_agent(1)
        assert tracekit.flush(30)
        assert stored_count(mlflow_server.url, trace_id) == 0

        # Down: the caller does not wait; the feedback is kept on disk.
        proxy.mode = "refuse"
        began = time.monotonic()
        down = tracekit.log_feedback(trace_id=trace_id, name="during_outage", value="bad")
        assert time.monotonic() - began < 0.5
        spool = tmp_path / "assessments"
        time.sleep(1.5)  # attempts fail meanwhile
        assert stored_count(mlflow_server.url, trace_id) == 0
        assert [p.name for p in spool.rglob("*.jsonl*")]  # still spooled

        # Creates reach the server but their answers are lost: a retry must not add one.
        proxy.mode = "pass_then_stall"
        lost = tracekit.log_feedback(trace_id=trace_id, name="answer_lost", value=1)
        wait_for(lambda: stored_count(mlflow_server.url, trace_id) >= 1)

        proxy.mode = "pass"
        wait_for(lambda: stored_count(mlflow_server.url, trace_id) == 2)
        wait_for(lambda: not list(spool.rglob("*.jsonl*")))
        time.sleep(2.0)  # nothing more arrives later
        assert stored_count(mlflow_server.url, trace_id) == 2
        # A create whose answer was lost (it reached the server) was looked up, not repeated.
        seen = "\n".join(map(str, proxy.requests))
        assert any(m == "POST" and mode == "pass_then_stall" for m, _, mode in proxy.requests)
        assert any(
            m == "GET" and "/assessments/a-" in path and mode == "pass"
            for m, path, mode in proxy.requests
        ), seen

    # Feedback is counted as feedback, never as traces (the trace was delivered at once):
    # what waited in the spool (whether a feedback's retries outlasted the outage depends
    # on timing) was delivered later.
    stats = tracekit.get_stats()
    spooled = stats.get("feedback_spooled", 0)
    assert spooled == stats.get("feedback_delivered_from_spool", 0) <= 2, stats
    assert not {"spooled", "delivered_from_spool"} & set(stats), stats

    got = mlflow_assessments(mlflow_server, trace_id)
    assert sorted((a["id"], a["name"], a["value"]) for a in got) == sorted(
        [(down.assessment_id, "during_outage", "bad"), (lost.assessment_id, "answer_lost", 1)]
    )


def test_feedback_waits_for_its_trace(mlflow_server: MlflowServer, tmp_path: Any) -> None:
    """Feedback logged before the trace reached the server (404) is kept and sent after."""
    experiment_id = create_experiment(mlflow_server.url, unique("early"))
    tracekit.configure(
        tracking_uri=mlflow_server.url,
        experiment_id=experiment_id,
        spool_dir=str(tmp_path),
        export_interval=3.0,  # the trace is still queued when the feedback goes
    )
    trace_id = priced_agent(1)
    tracekit.log_feedback(trace_id=trace_id, name="early", value=False)
    wait_for(
        lambda: (
            _exists(mlflow_server.url, trace_id) and stored_count(mlflow_server.url, trace_id) == 1
        )
    )


def _exists(url: str, trace_id: str) -> bool:
    import urllib.error

    try:
        stored_count(url, trace_id)
    except urllib.error.HTTPError:
        return False
    return True


def test_databricks_reads_and_takes_feedback(
    mlflow_server: MlflowServer, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same REST API behind a (stand-in) Databricks workspace, with its credentials."""
    from tests.workspace_front import WorkspaceFront

    token = "dapi-" + uuid.uuid4().hex
    experiment_id = create_experiment(mlflow_server.url, unique("dbx"))
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / "absent.databrickscfg"))
    with WorkspaceFront(mlflow_server.url, pats={token}) as front:
        monkeypatch.setenv("DATABRICKS_HOST", front.url)
        monkeypatch.setenv("DATABRICKS_TOKEN", token)
        tracekit.configure(
            tracking_uri="databricks",
            experiment_id=experiment_id,
            spool_dir=str(tmp_path / "spool"),
            prices=PRICES,
        )
        trace_id = priced_agent(2)
        trace = tracekit.get_trace(trace_id)
        assert trace is not None
        assert trace.info.cost == pytest.approx({k: 2 * v for k, v in ONE_CALL.items()})
        assert [t.info.trace_id for t in tracekit.search_traces("status = 'OK'")] == [trace_id]
        tracekit.log_feedback(trace_id=trace_id, name="thumbs_up", value=True, source="u-1")
        wait_for(lambda: stored_count(mlflow_server.url, trace_id) == 1)
        assert all(r.status == 200 for r in front.api_requests())
        _state.reset()


def test_a_script_that_exits_at_once_delivers_its_feedback(
    mlflow_server: MlflowServer, tmp_path: Any
) -> None:

    experiment_id = create_experiment(mlflow_server.url, unique("exit"))
    tracekit.configure(
        tracking_uri=mlflow_server.url, experiment_id=experiment_id, spool_dir=str(tmp_path)
    )
    trace_id = priced_agent(1)
    assert tracekit.flush(30)
    script = textwrap.dedent(
        f"""
        import tracekit
        tracekit.configure(tracking_uri={mlflow_server.url!r}, experiment_id={experiment_id!r},
                           spool_dir={str(tmp_path)!r})
        tracekit.log_feedback(trace_id={trace_id!r}, name="from_a_script", value=5)
        """
    )
    env = _clean_env()
    env.pop("TRACEKIT_TESTING", None)
    done = run_python(script, env=env)
    assert done.stderr == ""
    assert stored_count(mlflow_server.url, trace_id) == 1  # delivered before the exit
    assert not list((tmp_path / "assessments").rglob("*.jsonl*"))


def test_a_forked_child_delivers_its_own_feedback_and_not_the_parents_state(
    mlflow_server: MlflowServer, tmp_path: Any
) -> None:
    """A real os.fork while the parent's feedback waits in the spool (the server was down):
    the child starts with no sender of the parent's (no failing state, no connection, no
    pending count), delivers its own feedback, and the parent's is stored once."""
    import json
    import sys

    from tests.fault_proxy import FaultProxy

    experiment_id = create_experiment(mlflow_server.url, unique("fork"))
    tracekit.configure(
        tracking_uri=mlflow_server.url,
        experiment_id=experiment_id,
        spool_dir=str(tmp_path / "traces"),
    )
    trace_id = priced_agent(1)
    assert tracekit.flush(30)
    with FaultProxy(mlflow_server.url, mode="refuse") as proxy:
        script = textwrap.dedent(
            f"""
            import json, os, sys, time
            import tracekit

            def emit(**values):
                sys.stdout.write(json.dumps(values) + "\\n")
                sys.stdout.flush()

            tracekit.configure(tracking_uri={proxy.url!r}, experiment_id={experiment_id!r},
                               spool_dir={str(tmp_path / "spool")!r}, export_timeout=1.0)
            tracekit.log_feedback(trace_id={trace_id!r}, name="parent", value=1)
            while not tracekit.get_stats().get("feedback_spooled"):  # its attempts failed
                time.sleep(0.05)
            emit(ready=True)
            sys.stdin.readline()  # the server answers again
            pid = os.fork()
            if pid == 0:
                tracekit.log_feedback(trace_id={trace_id!r}, name="child", value=2)
                emit(who="child", flushed=tracekit.flush(30), stats=tracekit.get_stats())
                sys.exit(0)
            _, status = os.waitpid(pid, 0)
            emit(who="parent", child=os.waitstatus_to_exitcode(status), stats=tracekit.get_stats())
            """
        )
        app = subprocess.Popen(
            [sys.executable, "-c", script],
            env=_clean_env(TRACEKIT_TESTING="1"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert app.stdout is not None
        assert app.stdin is not None
        assert json.loads(app.stdout.readline()) == {"ready": True}
        proxy.mode = "pass"
        app.stdin.write("go\n")
        app.stdin.flush()
        out, err = app.communicate(timeout=120)
        assert app.returncode == 0, err
        assert "internal error" not in err, err
        lines = {o["who"]: o for o in map(json.loads, out.splitlines())}
        child, parent = lines["child"], lines["parent"]
        assert child["flushed"] is True
        assert parent["child"] == 0
        # The child counts only what it did: its feedback went out at once (not spooled);
        # it may have delivered the parent's from the shared spool, once.
        feedback = {k: v for k, v in child["stats"].items() if k.startswith("feedback_")}
        assert set(feedback) <= {"feedback_delivered_from_spool"}, child["stats"]
        assert parent["stats"]["feedback_spooled"] == 1, parent["stats"]
        assert "spooled" not in parent["stats"]  # feedback is not counted as traces
        delivered = sum(o["stats"].get("feedback_delivered_from_spool", 0) for o in (child, parent))
        assert delivered <= 1
        wait_for(lambda: stored_count(mlflow_server.url, trace_id) == 2)
    got = mlflow_assessments(mlflow_server, trace_id)
    assert sorted((a["name"], a["value"]) for a in got) == [("child", 2), ("parent", 1)]
    assert not list((tmp_path / "spool" / "assessments").rglob("*.jsonl*"))
