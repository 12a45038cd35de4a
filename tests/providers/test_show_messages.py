"""`tracekit show ID --messages`: the chat of each LLM span, readable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tracekit import cli
from tracekit._walk import marker

SNAPSHOTS = Path(__file__).parent / "snapshots"
TWO_TURNS = "openai.chat_tool_calls_two_turns.json"


def store_with(tmp_path: Path, records: list[dict[str, object]]) -> str:
    store = tmp_path / "store"
    store.mkdir()
    (store / "traces.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(store)


def show(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert cli.main(["show", *args]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


def test_show_messages_of_a_replayed_tool_call_conversation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = json.loads((SNAPSHOTS / TWO_TURNS).read_text())  # two traces, one call each
    store = store_with(tmp_path, records[1:])
    tree = show(capsys, records[1]["trace_id"], "--store", store)
    assert tree.endswith("\n\n  (1 LLM call(s) with messages: add --messages to read them)\n")
    assert show(capsys, records[1]["trace_id"], "--store", store, "--messages") == (
        tree.split("\n\n")[0]
        + "\n\n"
        + "\n".join(
            [
                "  ── chat gpt-4o-mini  (span 0000000000000002)",
                "    system     You're a helpful assistant.",
                "    user       What's the weather in Seattle and San Francisco today?",
                '    assistant  → get_current_weather({"location": "Seattle, WA"})'
                "  [call_JpNb8OiAkbIbHzDggfpdDHpi]",
                '               → get_current_weather({"location": "San Francisco, CA"})'
                "  [call_vaFQc3zK6hHTRZKXRI5Eo2cJ]",
                "    tool       ← [call_JpNb8OiAkbIbHzDggfpdDHpi] 50 degrees and raining",
                "    tool       ← [call_vaFQc3zK6hHTRZKXRI5Eo2cJ] 70 degrees and sunny",
                "    assistant  Today, the weather in Seattle is 50 degrees and raining, "
                "while in San Francisco, it's 70 degrees and sunny.  (finish: stop)",
            ]
        )
        + "\n"
    )


def test_show_messages_renders_every_part(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chat = {
        "system_instructions": [{"type": "text", "content": "Be terse."}],
        "input_messages": [
            {
                "role": "user",
                "name": "ann",
                "parts": [
                    {"type": "text", "content": "Two lines\nof text"},
                    {
                        "type": "blob",
                        "modality": "image",
                        "mime_type": "image/png",
                        "content": "iVBO... " + marker("base64 preview of 1032 bytes"),
                        "size_bytes": 1032,
                    },
                    {
                        "type": "uri",
                        "modality": "image",
                        "mime_type": None,
                        "uri": "https://x/c.jpg",
                    },
                    {"type": "file", "modality": "document", "mime_type": None, "file_id": "f-1"},
                ],
            },
        ],
        "output_messages": [
            {
                "role": "assistant",
                "parts": [
                    {"type": "reasoning", "content": "Think."},
                    {"type": "tool_call", "id": None, "name": "f", "arguments": "{raw"},
                ],
                "finish_reason": "tool_call",
            },
            {"role": "assistant", "parts": [], "finish_reason": "length"},
        ],
        "tool_definitions": [{"type": "function", "name": "f"}],
    }
    span = {
        "span_id": "00000000000000a1",
        "parent_id": None,
        "name": "chat m",
        "span_type": "CHAT_MODEL",
        "start_time_ns": 1,
        "end_time_ns": 2,
        "status": {"code": "OK", "message": ""},
        "chat": chat,
    }
    record = {"trace_id": "ab" * 16, "name": "chat m", "status": "OK", "spans": [span]}
    out = show(capsys, "abab", "--store", store_with(tmp_path, [record]), "-m")
    assert out.split("\n\n", 1)[1] == "\n".join(
        [
            "  ── chat m  (span 00000000000000a1)",
            "    system     Be terse.",
            "    user ann   Two lines",
            "               of text",
            "               [image image/png, 1032 bytes]",
            "               [image] https://x/c.jpg",
            "               [document] file f-1",
            "    assistant  (reasoning) Think.",
            "               → f({raw)  (finish: tool_call)",
            "    assistant  (empty)  (finish: length)",
            "    tools      f",
            "",
        ]
    )


def test_show_messages_of_a_trace_without_chats_prints_the_tree_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    span = {"span_id": "1" * 16, "parent_id": None, "name": "job", "span_type": "CHAIN"}
    record = {"trace_id": "cd" * 16, "name": "job", "status": "OK", "spans": [span]}
    store = store_with(tmp_path, [record])
    assert show(capsys, "cdcd", "--store", store, "--messages") == show(
        capsys, "cdcd", "--store", store
    )
