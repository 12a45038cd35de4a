"""The CLI reads any store: hostile lines beside good ones are skipped and counted, never
fatal, and a 10,000-deep trace renders (iteratively)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tracekit import _store
from tracekit._render import MAX_INDENT, render_tree

T0 = 1_795_344_799_000_000_000


def record(trace_id: str, name: str = "ok", **extra: Any) -> dict[str, Any]:
    spans = [
        {
            "span_id": trace_id[:16],
            "parent_id": None,
            "name": name,
            "span_type": "CHAIN",
            "start_time_ns": T0,
            "end_time_ns": T0 + 2_000_000,
            "status": {"code": "OK", "message": ""},
        }
    ]
    base = {
        "schema": "tracekit.trace/1",
        "trace_id": trace_id,
        "name": name,
        "status": "OK",
        "start_time_ns": T0,
        "end_time_ns": T0 + 2_000_000,
        "spans": spans,
    }
    base.update(extra)
    return base


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


HOSTILE = [
    # nested past the JSON parser's recursion limit, and past what tracekit ever writes
    '{"trace_id": "' + "b" * 32 + '", "spans": [], "x": ' + nested(100_000) + "}",
    '{"trace_id": "' + "b" * 32 + '", "spans": [], "x": ' + nested(200) + "}",
    # bad types
    json.dumps({"trace_id": 5, "spans": []}),
    json.dumps({"trace_id": "c" * 32, "spans": "none"}),
    json.dumps(record("c" * 32, tags=["not", "a", "dict"])),
    json.dumps(record("c" * 32, metadata="x")),
    json.dumps({**record("c" * 32), "spans": [{"span_id": 7}]}),
    json.dumps({**record("c" * 32), "spans": [{"span_id": "s", "attributes": [1]}]}),
    # numbers no clock reaches
    json.dumps(record("d" * 32, start_time_ns=10**30)),
    '{"trace_id": "' + "d" * 32 + '", "spans": [], "start_time_ns": 1e999}',
    '{"trace_id": "' + "d" * 32 + '", "spans": [], "end_time_ns": ' + "9" * 5000 + "}",
    json.dumps(record("d" * 32, start_time_ns=-5)),
    json.dumps(record("d" * 32, start_time_ns=True)),
]


def write(store: Path, lines: list[str]) -> None:
    store.mkdir(parents=True, exist_ok=True)
    (store / "traces.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tracekit", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "PYTHONIOENCODING"},
    )


def test_hostile_lines_beside_good_ones_are_skipped_and_counted(tmp_path: Path) -> None:
    store = tmp_path / "store"
    good = record("a" * 32, "good")
    # Fragments of one trace whose usage and tags merge: one fragment's usage is not numeric.
    fragment_one = record("e" * 32, "merged", token_usage={"total_tokens": 5}, tags={"a": "1"})
    fragment_two = {
        **record("e" * 32, "merged"),
        "spans": [{**fragment_one["spans"][0], "span_id": "f" * 16, "parent_id": "e" * 16}],
        "token_usage": {"total_tokens": "many", "input_tokens": 3},
        "tags": {"b": "2"},
    }
    surrogate = json.dumps(record("9" * 32, "half \ud83d emoji"))
    write(
        store,
        [json.dumps(good), *HOSTILE, json.dumps(fragment_one), json.dumps(fragment_two), surrogate],
    )

    traces, skipped = _store.load_counted(store)
    assert skipped == len(HOSTILE)
    assert sorted(t["trace_id"] for t in traces) == ["9" * 32, "a" * 32, "e" * 32]
    merged = next(t for t in traces if t["trace_id"] == "e" * 32)
    assert merged["token_usage"] == {"total_tokens": 5, "input_tokens": 3}
    assert merged["tags"] == {"a": "1", "b": "2"}
    assert len(merged["spans"]) == 2

    proc = cli("ls", "--store", str(store))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == (
        f"tracekit: skipped {len(HOSTILE)} line(s) in {store} that are not trace records "
        "tracekit can read (torn, garbage, or hostile)\n"
    )
    rows = proc.stdout.splitlines()[1:]
    assert sorted(row.split()[0] for row in rows) == ["9" * 32, "a" * 32, "e" * 32]
    assert "half \\ud83d emoji" in proc.stdout  # the lone surrogate, escaped

    for trace_id in ("9" * 32, "e" * 32):
        for extra in ([], ["--json"]):
            proc = cli("show", trace_id[:8], "--store", str(store), *extra)
            assert proc.returncode == 0, proc.stderr
    proc = cli("ls", "--store", str(store), "--json")
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == 3


def chain(depth: int) -> dict[str, Any]:
    spans = [
        {
            "span_id": f"{i:016x}",
            "parent_id": f"{i - 1:016x}" if i else None,
            "name": f"level{i}",
            "span_type": "CHAIN",
            "start_time_ns": T0 + i,
            "end_time_ns": T0 + 2 * depth - i,
            "status": {"code": "OK", "message": ""},
        }
        for i in range(depth)
    ]
    return {**record("7" * 32, "deep"), "spans": spans}


def test_a_10000_deep_trace_renders(tmp_path: Path) -> None:
    store = tmp_path / "store"
    write(store, [json.dumps(chain(10_000))])
    proc = cli("show", "7777", "--store", str(store))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 + 10_000
    assert lines[1].startswith("  level0  [CHAIN]")
    assert lines[2].startswith("  └─ level1  [CHAIN]")
    assert lines[-1].lstrip(" │└├─").startswith("[depth 9999] level9999  [CHAIN]")
    assert max(len(line) for line in lines) < 3 * MAX_INDENT + 100  # indentation is capped
    proc = cli("ls", "--store", str(store))
    assert proc.returncode == 0, proc.stderr
    assert "10000" in proc.stdout


def test_a_parent_cycle_shows_every_span_once() -> None:
    spans = [
        {"span_id": "a", "parent_id": "b", "name": "a"},
        {"span_id": "b", "parent_id": "a", "name": "b"},
        {"span_id": "c", "parent_id": None, "name": "c"},
    ]
    lines = render_tree(spans)
    assert [line.lstrip(" │└├─").split()[0] for line in lines] == ["c", "a", "b"]


def test_the_spool_reader_skips_hostile_lines(tmp_path: Path) -> None:
    """`tracekit upload` reads spooled batches with the same reader: one deeply nested
    line no longer crashes it on every run."""
    from tracekit.exporters.spool import Spool

    spool = Spool(tmp_path / "spool" / "dest", 1 << 30, {"uri": "http://127.0.0.1:9"})
    assert spool.put([record("a" * 32)]) == 1
    (path,) = spool.pending()
    path.write_text(path.read_text() + "\n".join(HOSTILE) + "\n", encoding="utf-8")
    (claim,) = list(spool.claims())
    assert [r["trace_id"] for r in claim.records] == ["a" * 32]
    claim.release()
