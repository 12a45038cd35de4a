"""The `tracekit` command, run as a real program against real stores.

Stores are written by small traced programs run in their own interpreters
(`TRACEKIT_TRACKING_URI=<dir>`), or by hand where a test needs exact times or
odd content. The CLI runs as `python -m tracekit` and as the installed console
script, with `TZ=UTC` so the STARTED column can be compared exactly.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from tests.child import run_command, run_python

CONSOLE_SCRIPT = Path(sys.executable).with_name("tracekit")
DURATION = re.compile(r"\d+ µs|\d+\.\d ms|\d+\.\d\d s")
EMPTY = (
    "No traces in {store} yet. Traced code writes there by default; set "
    "TRACEKIT_TRACKING_URI or pass --store DIR to read another store."
)
SUMMARY_KEYS = {
    "cost",
    "trace_id",
    "name",
    "status",
    "start_time_ns",
    "end_time_ns",
    "token_usage",
    "tags",
    "span_count",
}

# Three traces, oldest first: a tree with an error and token usage, a slow
# single span, a failed root.
PROGRAM = """
import time
import tracekit

@tracekit.trace(span_type="RERANKER")
def rerank(docs):
    return docs

@tracekit.trace(span_type="RETRIEVER")
def retrieve(query):
    docs = rerank(["a", "b"])
    with tracekit.start_span("embed", span_type="EMBEDDING") as span:
        span.set_token_usage({"input_tokens": 3, "total_tokens": 3})
    return docs

@tracekit.trace(span_type="TOOL")
def lookup_order(order_id):
    raise KeyError(order_id)

@tracekit.trace(span_type="AGENT")
def answer(question):
    retrieve(question)
    try:
        lookup_order("A-1")
    except KeyError:
        pass
    with tracekit.start_span("chat my-model", span_type="CHAT_MODEL") as span:
        span.set_token_usage({"input_tokens": 12, "output_tokens": 5, "total_tokens": 17})
    return "Within 14 days."

@tracekit.trace
def pause(seconds):
    time.sleep(seconds)

@tracekit.trace(span_type="CHAIN")
def failing():
    raise ValueError("boom\\nsecond line")

ids = []
answer("When will I get my refund?")
ids.append(tracekit.get_last_trace_id())
time.sleep(0.002)
pause(0.003)
ids.append(tracekit.get_last_trace_id())
time.sleep(0.002)
try:
    failing()
except ValueError:
    pass
ids.append(tracekit.get_last_trace_id())
print(" ".join(ids))
"""


# ---------------------------------------------------------------------------
# helpers


def child_env(tracking_uri: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEKIT_")}
    env.update(TRACEKIT_TESTING="1", TZ="UTC", PYTHONIOENCODING="utf-8")
    if tracking_uri is not None:
        env["TRACEKIT_TRACKING_URI"] = tracking_uri
    return env


def run_traced(code: str, cwd: Path, tracking_uri: str | None) -> str:
    """Run a traced program in a fresh interpreter; return its stdout."""
    proc = run_python(textwrap.dedent(code), cwd=cwd, env=child_env(tracking_uri))
    assert proc.stderr == "", proc.stderr
    return proc.stdout


def cli(
    *args: str,
    cwd: Path,
    tracking_uri: str | None = None,
    script: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run `tracekit ARGS` (the console script, or `python -m tracekit`)."""
    if script:
        if not CONSOLE_SCRIPT.exists():
            pytest.skip(f"console script not installed at {CONSOLE_SCRIPT}")
        command = [str(CONSOLE_SCRIPT), *args]
    else:
        command = [sys.executable, "-m", "tracekit", *args]
    proc = run_command(command, cwd=cwd, env=child_env(tracking_uri), returncode=None)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def read_lines(store: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted(store.glob("*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def started(ns: int) -> str:
    return datetime.fromtimestamp(ns // 10**9, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def header(name_width: int, status_width: int = 6) -> str:
    return (
        f"{'TRACE ID':<32}  {'NAME':<{name_width}}  {'STATUS':<{status_width}}  "
        f"{'STARTED':<19}  {'DURATION':<8}  SPANS  TOKENS  COST"
    )


def check_row(line: str, before: str, after: str, width: int = 8) -> str:
    """`line` is `before`, a duration cell `width` wide, `after`; returns the duration."""
    assert line.startswith(before), (line, before)
    assert line[len(before) + width :] == after, (line, after)
    duration = line[len(before) : len(before) + width].rstrip()
    assert DURATION.fullmatch(duration), line
    return duration


def check_tree(output: str, expected: list[str]) -> list[str]:
    """Compare lines exactly, `{D}` standing for a duration; return the durations."""
    lines = output.splitlines()
    assert len(lines) == len(expected), output
    durations = []
    for line, pattern in zip(lines, expected, strict=True):
        regex = re.escape(pattern).replace(re.escape("{D}"), f"({DURATION.pattern})")
        match = re.fullmatch(regex, line)
        assert match, f"\n{line!r}\ndoes not match\n{pattern!r}"
        durations.extend(match.groups())
    return durations


def ms(duration: str) -> float:
    value, unit = duration.split(" ")
    return float(value) * {"µs": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def span(
    span_id: str,
    parent_id: str | None,
    name: str,
    span_type: str,
    start: int,
    end: int,
    *,
    status: str = "OK",
    message: str = "",
    tokens: dict[str, int] | None = None,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "span_id": span_id,
        "parent_id": parent_id,
        "name": name,
        "span_type": span_type,
        "start_time_ns": start,
        "end_time_ns": end,
        "status": {"code": status, "message": message},
        "inputs": None,
        "outputs": None,
        "attributes": {},
        "events": [],
    }
    if tokens:
        record["token_usage"] = tokens
    return record


def trace_record(
    trace_id: str,
    spans: list[dict[str, Any]],
    *,
    tokens: dict[str, int] | None = None,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    first = spans[0]
    record: dict[str, Any] = {
        "schema": "tracekit.trace/1",
        "trace_id": trace_id,
        "name": first["name"],
        "status": first["status"]["code"],
        "start_time_ns": first["start_time_ns"],
        "end_time_ns": first["end_time_ns"],
        "tags": tags or {},
        "metadata": {},
        "resource": {"service.name": "unknown_service"},
        "spans": spans,
    }
    if tokens:
        record["token_usage"] = tokens
    return record


def write_lines(path: Path, lines: list[dict[str, Any] | str | bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b""
    for line in lines:
        if isinstance(line, dict):
            line = json.dumps(line)
        if isinstance(line, str):
            line = line.encode("utf-8")
        data += line + b"\n"
    path.write_bytes(data)


T0 = 1_795_000_000_123_456_789  # 2026-11-18 11:06:40.123 UTC
MS = 1_000_000


# ---------------------------------------------------------------------------
# a store written by a real traced program (shared, read-only)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("cli-sample")
    store = root / "store"
    ids = run_traced(PROGRAM, cwd=root, tracking_uri=str(store)).split()
    assert len(ids) == 3
    records = {r["trace_id"]: r for r in read_lines(store)}
    assert sorted(records) == sorted(ids), "each trace is one line in the store"
    answer, pause, failing = ids
    return {
        "store": store,
        "answer": answer,
        "pause": pause,
        "failing": failing,
        "records": records,
    }


@pytest.mark.parametrize("script", [False, True], ids=["python-m", "console-script"])
def test_ls_lists_traces_newest_first(sample: dict[str, Any], tmp_path: Path, script: bool) -> None:
    proc = cli("ls", "--store", str(sample["store"]), cwd=tmp_path, script=script)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert len(lines) == 4, proc.stdout
    assert lines[0] == header(name_width=7)
    records = sample["records"]

    def before(trace_id: str, name: str, status: str) -> str:
        start = started(records[trace_id]["start_time_ns"])
        return f"{trace_id}  {name:<7}  {status:<6}  {start}  "

    check_row(lines[1], before(sample["failing"], "failing", "ERROR"), "  1      -       -")
    slow = check_row(lines[2], before(sample["pause"], "pause", "OK"), "  1      -       -")
    # The answer trace: 6 spans, and TOKENS is the trace's total (17 + 3).
    check_row(lines[3], before(sample["answer"], "answer", "OK"), "  6      20      -")
    assert ms(slow) >= 3.0  # pause(0.003): the duration is the real one


def test_ls_limit(sample: dict[str, Any], tmp_path: Path) -> None:
    store = str(sample["store"])
    for args, expected in [
        (["-n", "1"], [sample["failing"]]),
        (["--limit", "2"], [sample["failing"], sample["pause"]]),
        (["--limit=2"], [sample["failing"], sample["pause"]]),
        (["-n", "3"], [sample["failing"], sample["pause"], sample["answer"]]),
        (["-n", "50"], [sample["failing"], sample["pause"], sample["answer"]]),
    ]:
        proc = cli("ls", "--store", store, *args, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[0].startswith("TRACE ID"), args
        assert [line.split()[0] for line in lines[1:]] == expected, args


def test_ls_json(sample: dict[str, Any], tmp_path: Path) -> None:
    proc = cli("ls", "--json", "--store", str(sample["store"]), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summaries = json.loads(proc.stdout)
    assert [s["trace_id"] for s in summaries] == [
        sample["failing"],
        sample["pause"],
        sample["answer"],
    ]
    records = sample["records"]
    for summary in summaries:
        assert set(summary) == SUMMARY_KEYS
        record = records[summary["trace_id"]]
        for key in ("name", "status", "start_time_ns", "end_time_ns", "tags"):
            assert summary[key] == record[key], key
        assert summary["span_count"] == len(record["spans"])
    by_id = {s["trace_id"]: s for s in summaries}
    assert by_id[sample["answer"]]["token_usage"] == {
        "input_tokens": 15,
        "output_tokens": 5,
        "total_tokens": 20,
    }
    assert by_id[sample["answer"]]["span_count"] == 6
    assert by_id[sample["failing"]]["status"] == "ERROR"
    assert by_id[sample["pause"]]["token_usage"] is None

    proc = cli("ls", "--json", "-n", "1", "--store", str(sample["store"]), cwd=tmp_path)
    assert [s["trace_id"] for s in json.loads(proc.stdout)] == [sample["failing"]]


@pytest.mark.parametrize("script", [False, True], ids=["python-m", "console-script"])
def test_show_prints_the_tree(sample: dict[str, Any], tmp_path: Path, script: bool) -> None:
    store = str(sample["store"])
    proc = cli("show", sample["answer"], "--store", store, cwd=tmp_path, script=script)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    check_tree(
        proc.stdout,
        [
            f"trace {sample['answer']}  answer  OK  {{D}}  tokens in=15 out=5 total=20",
            "  answer  [AGENT]  {D}  OK",
            "  ├─ retrieve  [RETRIEVER]  {D}  OK",
            "  │  ├─ rerank  [RERANKER]  {D}  OK",
            "  │  └─ embed  [EMBEDDING]  {D}  OK  tokens in=3 total=3",
            "  ├─ lookup_order  [TOOL]  {D}  ERROR  - KeyError: 'A-1'",
            "  └─ chat my-model  [CHAT_MODEL]  {D}  OK  tokens in=12 out=5 total=17",
        ],
    )

    proc = cli("show", sample["failing"], "--store", store, cwd=tmp_path, script=script)
    assert proc.returncode == 0, proc.stderr
    # Only the first line of the error message.
    check_tree(
        proc.stdout,
        [
            f"trace {sample['failing']}  failing  ERROR  {{D}}",
            "  failing  [CHAIN]  {D}  ERROR  - ValueError: boom",
        ],
    )

    proc = cli("show", sample["pause"], "--store", store, cwd=tmp_path, script=script)
    assert proc.returncode == 0, proc.stderr
    durations = check_tree(
        proc.stdout,
        [f"trace {sample['pause']}  pause  OK  {{D}}", "  pause  [UNKNOWN]  {D}  OK"],
    )
    assert durations[0] == durations[1]
    assert ms(durations[0]) >= 3.0


def test_show_accepts_a_unique_prefix(sample: dict[str, Any], tmp_path: Path) -> None:
    trace_id = sample["answer"]
    full = cli("show", trace_id, "--store", str(sample["store"]), cwd=tmp_path)
    assert full.returncode == 0
    assert full.stdout.startswith(f"trace {trace_id}  answer  OK  ")
    for given in [
        trace_id[:8],
        f"tr-{trace_id[:8]}",
        f"TR-{trace_id[:8].upper()}",
        trace_id.upper(),
        f"tr-{trace_id}",
        f"  {trace_id[:10]} ",
    ]:
        proc = cli("show", given, "--store", str(sample["store"]), cwd=tmp_path)
        assert proc.returncode == 0, (given, proc.stderr)
        assert proc.stdout == full.stdout, given


def test_show_json_prints_the_record(sample: dict[str, Any], tmp_path: Path) -> None:
    for trace_id in (sample["answer"], sample["failing"]):
        proc = cli("show", trace_id[:8], "--json", "--store", str(sample["store"]), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == sample["records"][trace_id]
        assert proc.stdout.startswith("{\n  "), "indented JSON"


def test_show_unknown_id(sample: dict[str, Any], tmp_path: Path) -> None:
    first_digits = {trace_id[0] for trace_id in sample["records"]}
    unused = next(c for c in "0123456789abcdef" if c not in first_digits) * 4
    store = sample["store"]
    proc = cli("show", unused, "--store", str(store), cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr == (
        f"No trace with id {unused!r} in {store} (3 traces there; `tracekit ls` lists them).\n"
    )


def test_show_ambiguous_prefix(sample: dict[str, Any], tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(sample["store"], store)
    trace_id = sample["answer"]
    twin_id = trace_id[:6] + ("1" if trace_id[6] == "0" else "0") + trace_id[7:]
    twin = dict(sample["records"][trace_id], trace_id=twin_id, name="twin")
    with (store / "traces.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(twin) + "\n")

    proc = cli("show", trace_id[:6], "--store", str(store), cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr == f"{trace_id[:6]!r} matches 2 traces; give more digits.\n"

    proc = cli("show", f"tr-{trace_id[:5]}", "--store", str(store), cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr == f"{'tr-' + trace_id[:5]!r} matches 2 traces; give more digits.\n"

    # One more digit tells them apart.
    proc = cli("show", trace_id[:7], "--store", str(store), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"trace {trace_id}  answer  OK  ")
    proc = cli("show", twin_id[:7], "--store", str(store), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"trace {twin_id}  twin  OK  ")


@pytest.mark.parametrize("exists", [True, False], ids=["empty-dir", "missing-dir"])
def test_empty_store(tmp_path: Path, exists: bool) -> None:
    store = tmp_path / "empty-store"
    if exists:
        store.mkdir()
        (store / "notes.txt").write_text("not a store file\n")
        (store / "traces.jsonl").write_text("")
    message = EMPTY.format(store=store)

    proc = cli("ls", "--store", str(store), cwd=tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, message + "\n", "")

    proc = cli("ls", "--json", "--store", str(store), cwd=tmp_path)
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == []

    proc = cli("show", "1234", "--store", str(store), cwd=tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", message + "\n")

    proc = cli("show", "1234", "--json", "--store", str(store), cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (1, "")

    assert store.exists() == exists, "reading never creates the store"


def test_default_store_is_dot_tracekit_in_cwd(tmp_path: Path) -> None:
    proc = cli("ls", cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (0, EMPTY.format(store=".tracekit") + "\n")
    assert not (tmp_path / ".tracekit").exists()


def test_store_resolution(tmp_path: Path) -> None:
    named = """
        import tracekit
        with tracekit.start_span("{name}"):
            pass
    """
    # The default store ./.tracekit, an env store, a --store store.
    run_traced(named.replace("{name}", "in_default"), cwd=tmp_path, tracking_uri=None)
    run_traced(named.replace("{name}", "in_env"), cwd=tmp_path, tracking_uri="envstore")
    run_traced(named.replace("{name}", "in_flag"), cwd=tmp_path, tracking_uri="flagstore")
    for directory in (".tracekit", "envstore", "flagstore"):
        assert len(read_lines(tmp_path / directory)) == 1, directory

    def listed(*args: str, tracking_uri: str | None = None) -> list[str]:
        proc = cli("ls", *args, cwd=tmp_path, tracking_uri=tracking_uri)
        assert proc.returncode == 0, proc.stderr
        return [line.split()[1] for line in proc.stdout.splitlines()[1:]]

    assert listed() == ["in_default"]
    assert listed(tracking_uri="envstore") == ["in_env"]
    assert listed(tracking_uri=str(tmp_path / "envstore")) == ["in_env"]
    assert listed(tracking_uri=f"file://{tmp_path / 'envstore'}") == ["in_env"]
    # The first *file* destination counts; console/memory/http are skipped.
    assert listed(tracking_uri="console, envstore") == ["in_env"]
    assert listed(tracking_uri="memory,https://example.invalid,file://envstore") == ["in_env"]
    assert listed(tracking_uri="console") == ["in_default"]
    # --store beats the environment, which beats the default.
    assert listed("--store", "flagstore", tracking_uri="envstore") == ["in_flag"]
    assert listed("--store", str(tmp_path / "flagstore")) == ["in_flag"]

    (env_record,) = read_lines(tmp_path / "envstore")
    proc = cli("show", env_record["trace_id"], cwd=tmp_path, tracking_uri="envstore")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"trace {env_record['trace_id']}  in_env  OK  ")
    proc = cli(
        "show",
        env_record["trace_id"],
        "--store",
        "flagstore",
        cwd=tmp_path,
        tracking_uri="envstore",
    )
    assert proc.returncode == 1
    assert "No trace with id" in proc.stderr
    assert "flagstore (1 traces there" in proc.stderr


@pytest.mark.parametrize("value", ["0", "-3", "abc", "1.5"])
@pytest.mark.parametrize("option", ["-n", "--limit"])
def test_ls_rejects_a_limit_below_one(tmp_path: Path, option: str, value: str) -> None:
    proc = cli("ls", option, value, "--store", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("usage: tracekit ls")
    assert f"expected a positive whole number, got {value!r}" in proc.stderr


@pytest.mark.parametrize("given", ["", "tr-", "   "])
def test_show_needs_an_id(sample: dict[str, Any], tmp_path: Path, given: str) -> None:
    proc = cli("show", given, "--store", str(sample["store"]), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == (
        "Give a trace id (or a unique prefix of one); `tracekit ls` lists them.\n"
    )


def test_show_without_an_id_is_a_usage_error(tmp_path: Path) -> None:
    proc = cli("show", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: tracekit show")
    assert "trace_id" in proc.stderr


@pytest.mark.parametrize("script", [False, True], ids=["python-m", "console-script"])
def test_no_arguments_prints_help(tmp_path: Path, script: bool) -> None:
    proc = cli(cwd=tmp_path, script=script)
    assert proc.returncode == 2
    assert proc.stdout.startswith("usage: tracekit ")
    assert "Read traces from a tracekit file store." in proc.stdout
    assert re.search(r"^\s+ls\s+list recent traces, newest first$", proc.stdout, re.M)
    assert re.search(r"^\s+show\s+show one trace as a tree$", proc.stdout, re.M)


def test_unknown_command_is_a_usage_error(tmp_path: Path) -> None:
    proc = cli("list", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "invalid choice: 'list'" in proc.stderr


# ---------------------------------------------------------------------------
# fragments, torn lines


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fragments_from_a_forked_child_are_merged(tmp_path: Path) -> None:
    store = tmp_path / "store"
    trace_id = run_traced(
        """
        import os
        import tracekit

        @tracekit.trace(span_type="TOOL")
        def child_work():
            with tracekit.start_span("child_inner", span_type="LLM") as span:
                span.set_token_usage({"input_tokens": 4, "output_tokens": 3, "total_tokens": 7})

        with tracekit.start_span("parent", span_type="AGENT") as outer:
            with tracekit.start_span("before_fork", span_type="CHAIN"):
                pass
            pid = os.fork()
            if pid == 0:
                child_work()
                tracekit.flush(10)
                os._exit(0)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            with tracekit.start_span("after_fork", span_type="CHAIN") as span:
                span.set_token_usage({"input_tokens": 10, "output_tokens": 0, "total_tokens": 10})
        print(outer.trace_id)
        """,
        cwd=tmp_path,
        tracking_uri=str(store),
    ).strip()
    lines = read_lines(store)
    assert [r["trace_id"] for r in lines] == [trace_id, trace_id], "two fragments"

    proc = cli("ls", "--store", str(store), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = proc.stdout.splitlines()[1:]
    assert len(rows) == 1, proc.stdout
    cells = re.split(r" {2,}", rows[0])
    assert cells[0] == trace_id
    assert cells[1:3] == ["parent", "OK"]
    assert cells[-3:] == ["5", "17", "-"]  # all spans and tokens of both fragments; no cost

    proc = cli("show", trace_id[:8], "--store", str(store), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    check_tree(
        proc.stdout,
        [
            f"trace {trace_id}  parent  OK  {{D}}  tokens in=14 out=3 total=17",
            "  parent  [AGENT]  {D}  OK",
            "  ├─ before_fork  [CHAIN]  {D}  OK",
            "  ├─ child_work  [TOOL]  {D}  OK",
            "  │  └─ child_inner  [LLM]  {D}  OK  tokens in=4 out=3 total=7",
            "  └─ after_fork  [CHAIN]  {D}  OK  tokens in=10 out=0 total=10",
        ],
    )

    proc = cli("show", trace_id, "--json", "--store", str(store), cwd=tmp_path)
    merged = json.loads(proc.stdout)
    assert merged["trace_id"] == trace_id
    assert merged["name"] == "parent"
    assert sorted(s["name"] for s in merged["spans"]) == [
        "after_fork",
        "before_fork",
        "child_inner",
        "child_work",
        "parent",
    ]
    assert merged["token_usage"]["total_tokens"] == 17


def handwritten_fragments() -> tuple[str, list[dict[str, Any]]]:
    trace_id = "5f" * 16
    root = trace_record(
        trace_id,
        [
            span("a" * 16, None, "handler", "AGENT", T0, T0 + 12_100_000),
            span(
                "b" * 16,
                "a" * 16,
                "llm",
                "LLM",
                T0 + 1 * MS,
                T0 + 3 * MS,
                tokens={"input_tokens": 8, "output_tokens": 2, "total_tokens": 10},
            ),
        ],
        tokens={"input_tokens": 8, "output_tokens": 2, "total_tokens": 10},
        tags={"a": "1"},
    )
    child = trace_record(
        trace_id,
        [
            span("c" * 16, "a" * 16, "worker", "TOOL", T0 + 4 * MS, T0 + 9 * MS),
            span(
                "d" * 16,
                "c" * 16,
                "inner",
                "LLM",
                T0 + 5 * MS,
                T0 + 5 * MS + 50_000,
                status="ERROR",
                message="RuntimeError: x\nmore detail",
                tokens={"input_tokens": 5, "output_tokens": 2, "total_tokens": 7},
            ),
        ],
        tokens={"input_tokens": 5, "output_tokens": 2, "total_tokens": 7},
        tags={"b": "2"},
    )
    return trace_id, [child, root]  # the child's fragment first, as after a fork


def test_handwritten_fragments_are_merged(tmp_path: Path) -> None:
    trace_id, fragments = handwritten_fragments()
    store = tmp_path / "store"
    other = trace_record("0123" * 8, [span("e" * 16, None, "older", "CHAIN", T0 - MS, T0 - 500)])
    write_lines(store / "traces.jsonl", [fragments[0], other, fragments[1]])

    proc = cli("ls", "--store", str(store), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        header(name_width=7),
        f"{trace_id}  handler  OK      {started(T0)}  12.1 ms   4      17      -",
        f"{'0123' * 8}  older    OK      {started(T0 - MS)}  1.0 ms    1      -       -",
    ]

    proc = cli("show", "5f5f", "--store", str(store), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"trace {trace_id}  handler  OK  12.1 ms  tokens in=13 out=4 total=17",
        "  handler  [AGENT]  12.1 ms  OK",
        "  ├─ llm  [LLM]  2.0 ms  OK  tokens in=8 out=2 total=10",
        "  └─ worker  [TOOL]  5.0 ms  OK",
        "     └─ inner  [LLM]  50 µs  ERROR  tokens in=5 out=2 total=7  - RuntimeError: x",
    ]

    proc = cli("show", "5f5f", "--json", "--store", str(store), cwd=tmp_path)
    merged = json.loads(proc.stdout)
    assert merged["name"] == "handler"
    assert merged["start_time_ns"] == T0
    assert merged["end_time_ns"] == T0 + 12_100_000
    assert sorted(s["span_id"][0] for s in merged["spans"]) == ["a", "b", "c", "d"]
    assert merged["token_usage"] == {"input_tokens": 13, "output_tokens": 4, "total_tokens": 17}
    assert merged["tags"] == {"a": "1", "b": "2"}

    proc = cli("ls", "--json", "--store", str(store), cwd=tmp_path)
    first = json.loads(proc.stdout)[0]
    assert first["trace_id"] == trace_id
    assert first["span_count"] == 4


def test_fragments_in_different_files_are_merged(tmp_path: Path) -> None:
    trace_id, (child, root) = handwritten_fragments()
    store = tmp_path / "store"
    write_lines(store / "traces-20261122T000000Z-1-1.jsonl", [root])
    write_lines(store / "traces.jsonl", [child])
    proc = cli("ls", "--store", str(store), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1:] == [
        f"{trace_id}  handler  OK      {started(T0)}  12.1 ms   4      17      -"
    ]


def test_torn_and_garbage_lines_are_skipped(tmp_path: Path) -> None:
    store = tmp_path / "store"
    good_old = trace_record("1111" * 8, [span("1" * 16, None, "old", "CHAIN", T0, T0 + 2 * MS)])
    good_new = trace_record(
        "2222" * 8, [span("2" * 16, None, "new", "CHAIN", T0 + 5 * MS, T0 + 6 * MS)]
    )
    torn = json.dumps(
        trace_record("3333" * 8, [span("3" * 16, None, "torn", "CHAIN", T0, T0 + MS)])
    )
    write_lines(
        store / "traces.jsonl",
        [
            good_old,
            torn[: len(torn) // 2],  # a writer died mid-line
            b"\xff\xfe\x00 binary garbage \x80",
            "",
            "   ",
            "null",
            "[1, 2, 3]",
            '"just a string"',
            "42",
            "{}",
            '{"no_trace_id": true}',
            "{not json at all",
            good_new,
        ],
    )
    # A rotated file whose last line was cut off without a newline.
    (store / "traces-20261122T000000Z-1-1.jsonl").write_text(torn[:-7], encoding="utf-8")

    proc = cli("ls", "--store", str(store), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == (
        f"tracekit: skipped 10 line(s) in {store} that are not trace records tracekit can "
        "read (torn, garbage, or hostile)\n"
    )
    assert proc.stdout.splitlines() == [
        header(name_width=4),
        f"{'2222' * 8}  new   OK      {started(T0 + 5 * MS)}  1.0 ms    1      -       -",
        f"{'1111' * 8}  old   OK      {started(T0)}  2.0 ms    1      -       -",
    ]

    proc = cli("show", "1111", "--store", str(store), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"trace {'1111' * 8}  old  OK  2.0 ms",
        "  old  [CHAIN]  2.0 ms  OK",
    ]
    proc = cli("show", "3333", "--store", str(store), cwd=tmp_path)
    assert proc.returncode == 1
    assert "(2 traces there;" in proc.stderr


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param('{"trace_id": "' + "1111" * 8 + '"}', id="fragment-without-spans"),
        pytest.param('{"trace_id": 5, "spans": []}', id="numeric-trace-id"),
        pytest.param('{"trace_id": "abc", "start_time_ns": "late", "spans": []}', id="str-time"),
        pytest.param('{"trace_id": "abc", "spans": 5}', id="spans-not-a-list"),
        pytest.param('{"trace_id": "abc", "spans": [1, "x", null]}', id="spans-not-objects"),
    ],
)
def test_wrong_shaped_records_do_not_crash(tmp_path: Path, bad: str) -> None:
    """A JSON line that is not a trace record is garbage too: skipped, no traceback."""
    store = tmp_path / "store"
    good = trace_record("1111" * 8, [span("1" * 16, None, "good", "CHAIN", T0, T0 + 2 * MS)])
    write_lines(store / "traces.jsonl", [good, bad])
    for args in (["ls"], ["ls", "--json"], ["show", "1111"], ["show", "1111", "--json"]):
        command = [sys.executable, "-m", "tracekit", *args, "--store", str(store)]
        proc = run_command(command, cwd=tmp_path, env=child_env(), returncode=None)
        assert "Traceback" not in proc.stderr, (args, proc.stderr)
        assert proc.returncode == 0, (args, proc.stderr)
        assert "1111" * 8 in proc.stdout, args


def test_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    """`tracekit ls | head -1`: no traceback, exit 0."""
    store = tmp_path / "store"
    write_lines(
        store / "traces.jsonl",
        [
            trace_record(f"{i:032x}", [span(f"{i:016x}", None, "t", "CHAIN", T0 + i, T0 + i + MS)])
            for i in range(1, 3001)
        ],
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracekit", "ls", "--json", "-n", "3000", "--store", str(store)],
        cwd=tmp_path,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    assert proc.stdout.readline() == b"[\n"
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, stderr
    assert stderr == ""


def test_cost_in_ls_and_show(tmp_path: Path) -> None:
    """The estimated cost: a column of `ls` (fragments summed), the trace and span lines
    of `show`, a key of `ls --json`."""
    trace_id, (child, root) = handwritten_fragments()
    root["spans"][1]["cost"] = {"input_cost": 0.0008, "output_cost": 0.0004, "total_cost": 0.0012}
    root["cost"] = dict(root["spans"][1]["cost"])
    child["cost"] = {"input_cost": 0.0001, "output_cost": 0.0, "total_cost": 0.0001}
    store = tmp_path / "store"
    write_lines(store / "traces.jsonl", [root, child])

    proc = cli("ls", "--store", str(store), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        header(name_width=7),
        f"{trace_id}  handler  OK      {started(T0)}  12.1 ms   4      17      $0.001300",
    ]
    proc = cli("ls", "--json", "--store", str(store), cwd=tmp_path)
    assert json.loads(proc.stdout)[0]["cost"] == pytest.approx(
        {"input_cost": 0.0009, "output_cost": 0.0004, "total_cost": 0.0013}
    )
    proc = cli("show", trace_id[:6], "--store", str(store), cwd=tmp_path)
    lines = proc.stdout.splitlines()
    assert lines[0] == (
        f"trace {trace_id}  handler  OK  12.1 ms  tokens in=13 out=4 total=17  cost $0.001300"
    )
    assert lines[2] == "  ├─ llm  [LLM]  2.0 ms  OK  tokens in=8 out=2 total=10  cost $0.001200"
