"""`tracekit ui` without a browser: the store index, the JSON API, the command.

The browser end to end tests are in test_ui_browser.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.child import run_python
from tests.ui_records import T0, XSS, append, chat_trace, error_trace, span, trace, xss_trace

import tracekit
from tracekit import _state, _store
from tracekit._read import assessment_records
from tracekit._ui.index import Query, StoreIndex
from tracekit._ui.server import UIServer
from tracekit.cli import main as cli_main


def simple(n: int, **kwargs: Any) -> dict[str, Any]:
    trace_id = f"{n:032x}"
    root = span(f"{n:016x}", None, f"job-{n}", "CHAIN", 0, 10 + n)
    return trace(trace_id, [root], offset_s=n, **kwargs)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    append(path, simple(1), chat_trace(), error_trace(), xss_trace())
    return path


@pytest.fixture
def index(store: Path, tmp_path: Path) -> Iterator[StoreIndex]:
    idx = StoreIndex(store, tmp_path / "cache" / "index.sqlite")
    idx.refresh()
    yield idx
    idx.close()


def ids(index: StoreIndex, **query: Any) -> list[str]:
    _, rows = index.search(Query(**query))
    return [r["trace_id"] for r in rows]


def test_summaries_match_the_records(index: StoreIndex) -> None:
    total, rows = index.search(Query())
    assert total == 4
    assert [r["name"] for r in rows] == [XSS, "answer", "travel_agent", "job-1"]  # newest first
    travel = rows[2]
    assert travel == {
        "trace_id": "c" * 32,
        "name": "travel_agent",
        "status": "OK",
        "start_time_ns": T0 + 10 * 10**9,
        "end_time_ns": T0 + 10 * 10**9 + 1000 * 10**6,
        "duration_ns": 1000 * 10**6,
        "span_count": 2,
        "total_tokens": 52,
        "total_cost": 0.0001,
        "session_id": "trip-42",
        "user_id": "ada",
        "tags": {"team": "travel"},
        "assessments": 0,
        "models": ["gpt-4o-mini"],
    }


def test_filters_sort_and_paging(index: StoreIndex) -> None:
    assert ids(index, tag="team=travel") == ["c" * 32]
    assert ids(index, tag="env") == ["e" * 32]
    assert ids(index, tag="env=dev") == []
    assert ids(index, session="trip-42") == ["e" * 32, "c" * 32]
    assert ids(index, user="ada", status="ERROR") == ["e" * 32]
    assert ids(index, model="gpt-4o-mini") == ["c" * 32]
    assert ids(index, text="TRAVEL") == ["c" * 32]  # names match case-insensitively
    assert ids(index, text="eeee") == ["e" * 32]  # or the start of a trace id
    assert ids(index, text="%") == []  # LIKE wildcards are literal
    assert ids(index, since_ns=T0 + 15 * 10**9, until_ns=T0 + 25 * 10**9) == ["e" * 32]
    # equal durations: the later id first, as in any descending order
    assert ids(index, sort="duration") == ["c" * 32, f"{1:032x}", "e" * 32, "a" * 32]
    assert ids(index, sort="tokens")[0] == "c" * 32  # traces without tokens sort last
    assert ids(index, sort="cost")[0] == "c" * 32  # so do traces without a cost
    assert ids(index, sort="start", ascending=True)[0] == f"{1:032x}"
    total, page = index.search(Query(offset=1, limit=2))
    assert total == 4
    assert [r["trace_id"] for r in page] == ["e" * 32, "c" * 32]


def test_get_reads_the_record_back_and_merges_fragments(
    store: Path, index: StoreIndex, tmp_path: Path
) -> None:
    assert index.get("c" * 32) == chat_trace()
    late = trace("c" * 32, [span("c000000000000009", "c000000000000001", "late", "TOOL", 1, 2)])
    late["tags"] = {"late": "yes"}
    append(store, late)
    assert index.refresh()
    record = index.get("c" * 32)
    assert record is not None
    assert record == _store.merge([chat_trace(), late])
    assert record["name"] == "travel_agent"
    total, (row,) = index.search(Query(tag="late=yes"))
    assert (total, row["span_count"], row["name"]) == (1, 3, "travel_agent")
    # The late fragment started earlier: the row's start and duration span both.
    assert row["start_time_ns"] == late["start_time_ns"]
    assert row["duration_ns"] == chat_trace()["end_time_ns"] - late["start_time_ns"]
    assert index.get("f" * 32) is None
    assert index.resolve("ccc") == ["c" * 32]


def test_corrupt_and_torn_lines_are_skipped_and_counted(store: Path, index: StoreIndex) -> None:
    append(store, "{not json", '{"some": "other json"}', "")
    with (store / "traces.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(simple(2))[:50])  # a writer is mid-line
    assert index.refresh()
    assert index.skipped() == 2
    assert len(ids(index)) == 4
    with (store / "traces.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(simple(2))[50:] + "\n")  # the line completes
    assert index.refresh()
    assert f"{2:032x}" in ids(index)
    assert index.skipped() == 2


def test_only_appended_bytes_are_read_and_rotation_keeps_the_index(
    store: Path, tmp_path: Path
) -> None:
    path = tmp_path / "cache" / "index.sqlite"
    first = StoreIndex(store, path)
    assert first.refresh()
    assert not first.refresh()  # nothing new
    first.close()
    # A writer rotates the file (a rename keeps its inode) and starts a new one.
    (store / "traces.jsonl").rename(store / "traces-20261118T000000Z-1-1.jsonl")
    append(store, simple(3))
    again = StoreIndex(store, path)
    assert again.refresh()
    assert len(ids(again)) == 5
    rows = again._db.execute("SELECT count(*) FROM fragments").fetchone()
    assert rows == (5,), "the rotated file was not read again"
    assert again.get(f"{1:032x}") == simple(1)
    # A file edited by hand (it shrank) makes the index start over.
    (store / "traces.jsonl").write_text(json.dumps(simple(4)) + "\n", encoding="utf-8")
    assert again.refresh()
    assert f"{4:032x}" in ids(again)
    assert f"{3:032x}" not in ids(again)
    again.close()


def test_an_unwritable_cache_falls_back_to_memory(store: Path, tmp_path: Path) -> None:
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    idx = StoreIndex(store, blocked / "index.sqlite")
    assert str(idx.path) == ":memory:"
    idx.refresh()
    assert len(ids(idx)) == 4
    idx.close()


# ---------------------------------------------------------------------------
# the JSON API


@pytest.fixture
def server(store: Path, tmp_path: Path) -> Iterator[UIServer]:
    srv = UIServer(store, index=StoreIndex(store, tmp_path / "cache" / "api.sqlite"))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.close()
    thread.join(5)


def test_feedback_is_merged_into_the_trace_and_is_news(
    store: Path, index: StoreIndex, tmp_path: Path
) -> None:
    _state.reset()
    tracekit.configure(tracking_uri=str(store))
    try:
        assert index.get("c" * 32) == chat_trace()  # no feedback yet: no key
        assert not index.refresh()
        tracekit.log_feedback(
            trace_id="c" * 32, name="thumbs_up", value=True, source="user-42", rationale="quick"
        )
        tracekit.log_expectation(
            trace_id="c" * 32, name="expected", value="18 C", span_id="c000000000000002"
        )
        assert index.refresh()  # new feedback wakes the pages that wait on the store
        assert index.skipped() == 0  # assessments.jsonl lines are not broken trace lines
        logged = assessment_records(store)["c" * 32]
        assert [(a["kind"], a["name"]) for a in logged] == [
            ("feedback", "thumbs_up"),
            ("expectation", "expected"),
        ]
        assert index.get("c" * 32) == {**chat_trace(), "assessments": logged}  # as `show` merges
        assert index.get("e" * 32) == error_trace()
        total, rows = index.search(Query())
        assert total == 4  # the feedback file holds no traces
        assert {r["trace_id"]: r["assessments"] for r in rows}["c" * 32] == 2
        assert not index.refresh()
        page = tmp_path / "trace.html"  # `show --html` carries the feedback too
        assert cli_main(["show", "ccc", "--store", str(store), "--html", str(page)]) == 0
        assert '"name":"thumbs_up"' in page.read_text(encoding="utf-8")
    finally:
        _state.reset()


def get(url: str, host: str | None = None) -> tuple[int, Any, dict[str, str]]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            body = response.read()
            headers = dict(response.headers)
            status = response.status
    except urllib.error.HTTPError as exc:
        body, headers, status = exc.read(), dict(exc.headers), exc.code
    kind = headers.get("Content-Type", "")
    return status, json.loads(body) if kind == "application/json" else body, headers


def test_api(server: UIServer, store: Path) -> None:
    url = server.url
    status, page, headers = get(url + "api/traces?tag=team%3Dtravel&limit=10")
    assert status == 200
    assert page["total"] == 1
    assert page["traces"][0]["trace_id"] == "c" * 32
    assert page["skipped"] == 0
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert get(url + "api/traces/" + "c" * 32)[1]["spans"][1]["chat"]["output_messages"]
    assert get(url + "api/traces/" + "0" * 32)[0] == 404
    assert get(url + "api/nope")[0] == 404
    facets = get(url + "api/facets")[1]
    assert facets["status"] == ["ERROR", "OK"]
    assert facets["model"] == ["gpt-4o-mini"]
    sessions = get(url + "api/sessions")[1]
    assert [s["session_id"] for s in sessions["sessions"]] == [XSS, "trip-42"]
    older = get(url + "api/sessions?offset=1&limit=1")[1]
    assert older["total"] == 2
    assert older["sessions"] == [
        {
            "session_id": "trip-42",
            "trace_count": 2,
            "start_time_ns": T0 + 10 * 10**9,
            "end_time_ns": T0 + 20 * 10**9 + 5 * 10**6,
            "user_id": "ada",
            "tokens": 52,
            "cost": 0.0001,
        }
    ]
    turns = get(url + "api/sessions/trip-42")[1]["turns"]
    assert [t["trace_id"] for t in turns] == ["c" * 32, "e" * 32]  # in order
    assert turns[0]["inputs"] == {"question": "Weather in Paris?"}
    second = get(url + "api/sessions/trip-42?offset=1&limit=1")[1]  # a session's pages
    assert (second["total"], [t["trace_id"] for t in second["turns"]]) == (2, ["e" * 32])
    assert get(url + "api/traces?sort=cost&limit=1")[1]["traces"][0]["total_cost"] == 0.0001
    page_html = get(url)[1]
    assert b'<script src="static/app.js"></script>' in page_html
    assert get(url + "static/app.js")[0] == 200
    assert get(url + "static/../server.py")[0] == 404
    # DNS rebinding: a page served from another name cannot read the store.
    assert get(url + "api/traces", host="attacker.example:80")[0] == 403
    port = server.server_address[1]
    allowed = ["localhost", f"LOCALHOST:{port}", f"127.0.0.1:{port}", "[::1]:80", "10.0.0.7:8"]
    assert [server.allows(h) for h in allowed] == [True] * 5  # names no other site can use
    refused = ["attacker.example", "evil.localhost:80", "", "[::1", "a b"]
    assert [server.allows(h) for h in refused] == [False] * 5


def test_api_long_poll_and_non_finite_numbers(server: UIServer, store: Path) -> None:
    generation = get(server.url + "api/traces")[1]["generation"]
    odd = simple(5)
    odd["spans"][0]["outputs"] = float("nan")
    done: list[int] = []
    waiter = threading.Thread(
        target=lambda: done.append(get(server.url + f"api/wait?generation={generation}")[1])
    )
    waiter.start()
    append(store, odd)
    waiter.join(15)
    assert done
    assert done[0]["generation"] > generation
    record = get(server.url + "api/traces/" + f"{5:032x}")[1]
    assert record["spans"][0]["outputs"] == "nan"  # JSON.parse cannot read NaN


# ---------------------------------------------------------------------------
# the commands


def test_show_html_writes_one_file(store: Path, tmp_path: Path, capsys: Any) -> None:
    target = tmp_path / "trace.html"
    assert cli_main(["show", "ccc", "--store", str(store), "--html", str(target)]) == 0
    assert capsys.readouterr().out.startswith(f"Wrote {target}")
    page = target.read_text(encoding="utf-8")
    assert 'src="static' not in page
    assert 'href="static' not in page
    assert "Content-Security-Policy" in page
    assert "connect-src" not in page
    assert "Weather in Paris?" in page
    # No string from a trace can close the data element.
    xss = tmp_path / "xss.html"
    assert cli_main(["show", "a" * 32, "--store", str(store), "--html", str(xss)]) == 0
    assert "<script>alert(2)" not in xss.read_text(encoding="utf-8")


def test_ui_command_prints_its_url_first_and_stops_on_ctrl_c(store: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEKIT_")}
    env.update(TRACEKIT_TESTING="1", XDG_CACHE_HOME=str(tmp_path / "xdg"), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracekit", "ui", "--store", str(store), "--no-browser"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        assert first.startswith("tracekit ui: http://127.0.0.1:"), first
        url = first.removeprefix("tracekit ui: ")
        assert proc.stdout.readline().strip() == f"Serving {store} (4 traces)."
        assert get(url + "api/traces")[1]["total"] == 4
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert err == ""
    assert out.strip().endswith("tracekit ui: stopped.")
    assert list((tmp_path / "xdg" / "tracekit" / "ui").glob("*.sqlite")), "index in the cache"
    assert sorted(p.name for p in store.iterdir()) == ["traces.jsonl"], "the store is untouched"


def test_ui_on_another_address_warns(store: Path, tmp_path: Path) -> None:
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "xdg"), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tracekit",
            "ui",
            "--store",
            str(store),
            "--no-browser",
            "--host",
            "127.0.0.2",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("tracekit ui: http://127.0.0.2:")
        assert proc.stderr is not None
        warning = proc.stderr.readline()
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert warning.startswith("tracekit ui: warning: listening on 127.0.0.2, not loopback")
    assert proc.returncode == 0


def test_the_viewer_loads_only_when_it_runs() -> None:
    code = (
        "import sys, tracekit, tracekit.cli\n"
        "tracekit.cli.build_parser()\n"
        "print(sorted(m for m in sys.modules if m in ('sqlite3', 'http.server', "
        "'tracekit._ui.server', 'tracekit._ui.index')))"
    )
    done = run_python(code)
    assert done.stdout.strip() == "[]"


def test_ui_on_a_busy_port_says_so(store: Path, capsys: Any) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = cli_main(["ui", "--store", str(store), "--port", str(port), "--no-browser"])
    assert code == 1
    assert capsys.readouterr().err.startswith(f"tracekit ui: cannot listen on 127.0.0.1:{port}: ")
