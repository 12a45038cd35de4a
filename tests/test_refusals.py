"""Refusals handled by kind, against a real `mlflow server` (and an OTLP receiver) behind
the fault proxy: 413 splits the batch, a configuration error keeps the traces with one
clear message, a poison record is set aside so the rest flows, a 503 while resolving the
experiment is retried within the shutdown budget, a token that is not a valid header is
named, never printed."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.fault_proxy import FaultProxy
from tests.mlflow_server import MlflowServer
from tests.test_delivery import (
    APP,
    Remote,
    assert_once_each,
    jsonl_ids,
    records,
    remote_for,
    traced_calls,
    wait_until,
)
from tests.test_otlp_export import Receiver, all_spans
from tests.workspace_front import WorkspaceFront

import tracekit
from tracekit import _state, _stats, cli
from tracekit.exporters.split import SplittingExporter

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def remote(
    mlflow_server: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Remote]:
    with remote_for(mlflow_server, tmp_path, monkeypatch) as r:
        yield r


def big_trace(chars: int) -> str:
    with tracekit.start_span("big", inputs={"blob": "x" * chars}):
        pass
    return str(tracekit.get_last_trace_id())


def rejected_ids(root: Path) -> list[str]:
    return jsonl_ids(root, "*.rejected")


def test_413_splits_the_batch_and_sets_aside_a_trace_too_big_alone(remote: Remote) -> None:
    remote.connect()
    remote.proxy.max_body = 8_000  # a few traces per request
    ids, _ = traced_calls(40)
    too_big = big_trace(20_000)
    more, _ = traced_calls(5, start=40)
    assert tracekit.flush(60)

    traces = remote.wait_for(ids + more)
    assert_once_each(traces, ids + more)
    assert "tr-" + too_big not in {t["trace_id"] for t in traces}
    assert any(mode == "pass" for _, _, mode in remote.proxy.requests)
    assert rejected_ids(remote.spool_dir) == [too_big]
    assert remote.spooled_ids() == []
    stats = tracekit.get_stats()
    assert stats["set_aside"] == 1
    assert "export_failed" not in stats


def test_413_splits_otlp_batches(tmp_path: Path) -> None:
    receiver = Receiver()
    try:
        with FaultProxy(receiver.url) as proxy:
            proxy.max_body = 8_000
            _state.reset()
            tracekit.configure(
                tracking_uri=f"otlp+{proxy.url}/v1/traces",
                spool_dir=str(tmp_path / "spool"),
                export_interval=0.05,
            )
            ids, _ = traced_calls(40)
            too_big = big_trace(20_000)
            assert tracekit.flush(60)
            _state.reset()
    finally:
        receiver.close()
    got = [s["trace_id"] for r in receiver.received for s in all_spans(r.decoded())]
    assert sorted(set(got)) == sorted(ids)
    assert len(got) == 2 * len(ids)  # every span once: nothing was sent twice
    assert rejected_ids(tmp_path / "spool") == [too_big]
    assert _stats.snapshot() == {"set_aside": 1}


def create_experiment(server_url: str, name: str) -> str:
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{server_url}/api/2.0/mlflow/experiments/create",
        data=json.dumps({"name": name}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return str(json.loads(response.read())["experiment_id"])


def _kept_with_one_message(
    remote: Remote, caplog: pytest.LogCaptureFixture, **config: str
) -> tuple[list[str], str]:
    """Traces sent under a configuration the server refuses, in two bursts a few
    seconds apart (the spool's delivery tries again meanwhile): all of them wait in
    the spool and tracekit says so once. Returns their ids and that one message."""
    caplog.set_level(logging.WARNING, logger="tracekit")
    _state.reset()
    tracekit.configure(
        tracking_uri=remote.proxy.url,
        spool_dir=str(remote.spool_dir),
        export_interval=0.05,
        **config,
    )
    ids, _ = traced_calls(6)
    assert tracekit.flush(20)
    time.sleep(2.5)  # the spool's delivery tries again meanwhile: still one message
    more, _ = traced_calls(2, start=6)
    assert tracekit.flush(20)
    messages = [r.getMessage() for r in caplog.records if r.name == "tracekit"]
    assert len(messages) == 1, messages
    _state.reset()
    assert sorted(remote.spooled_ids()) == sorted(ids + more)
    return ids + more, messages[0]


def test_a_bad_experiment_id_keeps_the_traces_with_one_clear_message(
    remote: Remote, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids, message = _kept_with_one_message(remote, caplog, experiment_id="abc")
    assert "experiment id 'abc' is not usable" in message
    assert "set TRACEKIT_EXPERIMENT_ID" in message
    assert "export_failed" not in _stats.snapshot()

    # Fixed: `tracekit upload` delivers them.
    monkeypatch.setenv("TRACEKIT_EXPERIMENT_ID", create_experiment(remote.server.url, remote.name))
    assert cli.main(["upload", "--spool", str(remote.spool_dir)]) == 0
    assert_once_each(remote.wait_for(ids), ids)
    assert remote.spooled_ids() == []


def test_an_experiment_name_the_server_refuses_keeps_the_traces_with_one_clear_message(
    remote: Remote, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow refuses to create an experiment whose name is longer than 500 characters
    (HTTP 400): the traces wait in the spool, one message names the variable to fix."""
    ids, message = _kept_with_one_message(remote, caplog, experiment_name="n" * 600)
    assert "refused tracekit's configuration" in message
    assert "HTTP 400" in message
    assert "set TRACEKIT_EXPERIMENT_NAME" in message
    assert str(remote.spool_dir) in message
    stats = _stats.snapshot()
    assert not {"export_failed", "set_aside"} & set(stats), stats

    # Fixed: `tracekit upload` delivers them to the experiment now named.
    monkeypatch.setenv("TRACEKIT_EXPERIMENT_NAME", remote.name)
    assert cli.main(["upload", "--spool", str(remote.spool_dir)]) == 0
    assert_once_each(remote.wait_for(ids), ids)
    assert remote.spooled_ids() == []


def test_a_poison_record_is_set_aside_and_the_rest_flows(
    remote: Remote, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    remote.proxy.mode = "refuse"
    remote.connect()
    ids, _ = traced_calls(3)
    assert tracekit.flush(20)
    # A record that passes the spool's checks but that the exporter raises on (or the
    # server refuses, whichever the OTLP encoding): its trace id is not hex.
    (poison,) = records("z" * 32)
    spooler = _state.pipeline().exporter
    assert spooler.spool.put([poison])  # type: ignore[attr-defined]
    more, _ = traced_calls(2, start=3)
    assert tracekit.flush(20)
    remote.proxy.mode = "pass"
    try:
        wait_until(
            lambda: (
                tracekit.get_stats().get("delivered_from_spool") == 5 and not remote.spooled_ids()
            ),
            30,
        )
    except AssertionError:
        raise AssertionError(
            (tracekit.get_stats(), remote.spool_files(), remote.proxy.requests[-10:])
        ) from None
    assert_once_each(remote.wait_for(ids + more), ids + more)
    assert rejected_ids(remote.spool_dir) == ["z" * 32]
    assert tracekit.get_stats()["set_aside"] == 1
    _state.reset()
    capsys.readouterr()
    assert cli.main(["upload", "--spool", str(remote.spool_dir)]) == 0
    err = capsys.readouterr().err
    assert "1 trace(s) in 1 *.rejected file(s) were refused by the destination" in err


def test_the_splitter_isolates_poison_without_repeating_what_went_through() -> None:
    sent: list[list[str]] = []

    class Picky(tracekit.exporters.BaseExporter):
        def export(self, traces):  # type: ignore[no-untyped-def]
            sent.append([t["trace_id"] for t in traces])
            if any(t["trace_id"] == "3" for t in traces):
                return tracekit.exporters.ExportResult(ok=False, status=400, message="bad")
            return tracekit.exporters.SUCCESS

    aside: list[str] = []
    splitter = SplittingExporter(Picky(), lambda r, _: aside.append(r[0]["trace_id"]) or Path())
    batch = [{"trace_id": str(i), "spans": []} for i in range(8)]
    assert splitter.export(batch).ok
    assert aside == ["3"]
    delivered = [i for part in sent if "3" not in part for i in part]
    assert sorted(delivered) == [str(i) for i in range(8) if i != 3]  # each once
    assert len(sent) == 1 + 2 + 2 + 2  # the batch, its halves, quarters, eighths of one side


def run(code: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", APP + textwrap.dedent(code)],
        env={**os.environ, "TRACEKIT_TESTING": "1", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "internal error" not in proc.stderr, proc.stderr
    return proc, time.monotonic() - started


def test_503_while_resolving_the_experiment_is_retried_within_the_shutdown_budget(
    remote: Remote,
) -> None:
    """A short run meeting a server hiccup delivers before it exits, not in a later run."""
    remote.proxy.retry_after = "1"
    remote.proxy.scripted = [("/api/2.0/mlflow/experiments/get-by-name", 503)] * 4
    proc, elapsed = run(
        """
        answer(1)
        emit(id=tracekit.get_last_trace_id())
        """,
        remote.env(TRACEKIT_SHUTDOWN_TIMEOUT="10"),
    )
    (trace_id,) = [json.loads(line)["id"] for line in proc.stdout.splitlines()]
    assert elapsed < 10
    assert remote.spool_files() == []
    assert_once_each(remote.wait_for([trace_id]), [trace_id])
    assert remote.proxy.scripted == []


@pytest.mark.parametrize("variable", ["MLFLOW_TRACKING_TOKEN", "DATABRICKS_TOKEN"])
def test_a_token_with_a_newline_is_named_never_printed(
    remote: Remote, variable: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reported once, by the variable's name, never its value; the batches wait in the
    spool until the token is fixed, then go out (they are not spooled forever)."""
    fixed = "tok-fixed"
    env = remote.env(**{variable: "tok-part1\nSECRET-PART-2"})
    with contextlib.ExitStack() as stack:
        if variable == "DATABRICKS_TOKEN":  # the same server behind a workspace's front
            front = stack.enter_context(WorkspaceFront(remote.server.url, pats={fixed}))
            env.update(
                TRACEKIT_TRACKING_URI="databricks",
                DATABRICKS_HOST=front.url,
                DATABRICKS_CONFIG_FILE=str(tmp_path / "absent.databrickscfg"),
            )
        proc, _ = run(
            """
            answer(1)
            ids = [tracekit.get_last_trace_id()]
            tracekit.flush(10)
            answer(2)
            ids.append(tracekit.get_last_trace_id())
            emit(ids=ids, stats=tracekit.get_stats())
            """,
            env,
        )
        assert "SECRET" not in proc.stderr
        assert "tok-part1" not in proc.stderr
        assert proc.stderr.count(variable) == 1, proc.stderr
        assert "header's value has a line break" in proc.stderr
        (out,) = [json.loads(line) for line in proc.stdout.splitlines()]
        assert "export_failed" not in out["stats"]
        assert sorted(remote.spooled_ids()) == sorted(out["ids"])  # kept until it is fixed
        assert "SECRET" not in "".join(p.read_text() for p in remote.spool_dir.rglob("*.json"))

        # Fixed: `tracekit upload` (or the next run) delivers them, once.
        for key, value in {**env, variable: fixed}.items():
            monkeypatch.setenv(key, value)
        assert cli.main(["upload", "--spool", str(remote.spool_dir)]) == 0
        assert remote.spooled_ids() == []
        assert_once_each(remote.wait_for(out["ids"]), out["ids"])
