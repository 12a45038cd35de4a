"""`python -m tracekit.demo`: runs, prints the tree, stores one well-formed trace.

The demo is an agent: retrieval fanned out to a thread pool, an OpenAI chat call
(to a local fake server) that asks for a tool, the async tool, a streamed answer.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.child import run_command

DURATION = r"(?:\d+ µs|\d+\.\d ms|\d+\.\d\d s)"
TOKENS = r"tokens in=(\d+) out=(\d+) total=(\d+)"
QUESTION = "When will I get my refund for order A-1001?"
ANSWER = (
    "Your return of order A-1001 arrived on 2026-11-20, "
    "so your refund will be paid within 14 days of that date."
)


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEKIT_")}
    env.update(TRACEKIT_TESTING="1", PYTHONIOENCODING="utf-8")
    return env


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_command([sys.executable, *args], cwd=cwd, env=child_env(), returncode=None)


def test_demo(tmp_path: Path) -> None:
    proc = run("-m", "tracekit.demo", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""

    # --- what it prints
    lines = proc.stdout.splitlines()
    assert lines[:3] == [f"Q: {QUESTION}", f"A: {ANSWER}", ""], proc.stdout
    match = re.fullmatch(
        rf"trace ([0-9a-f]{{32}})  answer_question  OK  {DURATION}  {TOKENS}", lines[3]
    )
    assert match, lines[3]
    trace_id = match.group(1)
    header_tokens = [int(n) for n in match.groups()[1:]]
    tree = [
        "  answer_question  [AGENT]  {D}  OK",
        "  ├─ search  [RETRIEVER]  {D}  OK",
        "  ├─ search  [RETRIEVER]  {D}  OK",
        "  ├─ search  [RETRIEVER]  {D}  OK",
        "  ├─ chat fake-mini  [CHAT_MODEL]  {D}  OK  {T}",
        "  ├─ order_status  [TOOL]  {D}  OK",
        "  └─ chat fake-mini  [CHAT_MODEL]  {D}  OK  {T}",
    ]
    assert len(lines) == 4 + len(tree) + 2, proc.stdout
    chat_tokens = []
    for line, pattern in zip(lines[4 : 4 + len(tree)], tree, strict=True):
        regex = (
            re.escape(pattern).replace(re.escape("{D}"), DURATION).replace(re.escape("{T}"), TOKENS)
        )
        line_match = re.fullmatch(regex, line)
        assert line_match, f"{line!r} does not match {pattern!r}"
        if line_match.groups():
            chat_tokens.append([int(n) for n in line_match.groups()])
    # The trace's usage is the sum of the two model calls'.
    assert header_tokens == [sum(column) for column in zip(*chat_tokens, strict=True)]
    for tokens_in, tokens_out, total in chat_tokens:
        assert min(tokens_in, tokens_out) > 0
        assert total == tokens_in + tokens_out
    assert lines[-2] == ""
    assert lines[-1] == (
        "Stored in .tracekit/ — list traces with `tracekit ls`, "
        f"show this one with `tracekit show {trace_id}`, browse them with `tracekit ui`."
    )

    # --- what it stores: exactly one line, in ./.tracekit/traces.jsonl
    store = tmp_path / ".tracekit"
    assert sorted(p.name for p in store.iterdir()) == ["traces.jsonl"]
    raw = (store / "traces.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(raw) == 1
    record: dict[str, Any] = json.loads(raw[0])
    assert record["schema"] == "tracekit.trace/1"
    assert record["trace_id"] == trace_id
    assert record["name"] == "answer_question"
    assert record["status"] == "OK"
    assert record["tags"] == {"app": "demo"}
    assert record["metadata"] == {"session_id": "s-1", "user_id": "u-1"}
    usage = record["token_usage"]
    assert [usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]] == (header_tokens)

    spans = record["spans"]
    by_id = {s["span_id"]: s for s in spans}
    assert len(by_id) == len(spans) == 7, "span ids are unique"
    (root,) = [s for s in spans if s["parent_id"] is None]
    assert root["name"] == "answer_question"
    assert root["span_type"] == "AGENT"
    assert root["inputs"]["question"] == QUESTION
    assert root["outputs"] == ANSWER
    assert (record["start_time_ns"], record["end_time_ns"]) == (
        root["start_time_ns"],
        root["end_time_ns"],
    )

    # Every span's parent chain ends at the root, inside this record.
    for span in spans:
        seen = set()
        current = span
        while current["parent_id"] is not None:
            assert current["span_id"] not in seen, "parent cycle"
            seen.add(current["span_id"])
            assert current["parent_id"] in by_id, f"{span['name']}: parent not in the trace"
            current = by_id[current["parent_id"]]
        assert current is root, span["name"]

    # The thread-pool, SDK, asyncio.run and streamed spans are direct children of the root.
    children = sorted(
        (s for s in spans if s is not root), key=lambda s: (s["start_time_ns"], s["name"])
    )
    assert all(s["parent_id"] == root["span_id"] for s in children)
    assert [s["name"] for s in children] == [
        "search",
        "search",
        "search",
        "chat fake-mini",
        "order_status",
        "chat fake-mini",
    ]
    searches = children[:3]
    assert [s["span_type"] for s in searches] == ["RETRIEVER"] * 3
    assert sorted(s["inputs"]["topic"] for s in searches) == ["refunds", "returns", "unknown"]
    outputs = {s["inputs"]["topic"]: s["outputs"] for s in searches}
    assert outputs["unknown"] == []
    assert outputs["refunds"] == ["Refunds are paid within 14 days of the return arriving."]
    tool = children[4]
    assert tool["span_type"] == "TOOL"
    assert tool["outputs"]["status"] == "returned"
    first_chat, last_chat = children[3], children[5]
    for chat, tokens in zip((first_chat, last_chat), chat_tokens, strict=True):
        assert chat["span_type"] == "CHAT_MODEL"
        assert chat["attributes"]["gen_ai.request.model"] == "fake-mini"
        usage = chat["token_usage"]
        assert [usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]] == tokens
    assert last_chat["attributes"].get("tracekit.stream") is True

    for span in spans:
        assert span["status"] == {"code": "OK", "message": ""}, span["name"]
        assert span["end_time_ns"] is not None
        assert root["start_time_ns"] <= span["start_time_ns"] <= span["end_time_ns"]
        assert span["end_time_ns"] <= root["end_time_ns"], span["name"]
        assert not (span.get("attributes") or {}).get("tracekit.force_ended")
    for search in searches:  # time.sleep(0.005) inside
        assert search["end_time_ns"] - search["start_time_ns"] >= 5_000_000

    # --- and the CLI reads it back from the same default store
    listed = run("-m", "tracekit", "ls", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    (row,) = listed.stdout.splitlines()[1:]
    cells = re.split(r" {2,}", row)
    assert cells[:3] == [trace_id, "answer_question", "OK"]
    assert cells[-3:] == ["7", str(header_tokens[2]), "-"]  # fake-mini has no price
