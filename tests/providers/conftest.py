"""Shared fixtures of the provider record tests: whole-record snapshots.

Each test replays a recorded cassette through the real SDK with autolog on (the
`autolog` fixture of tests/conftest.py), captures the
exported trace records (counting ids, fake clock) and compares them, whole, with a JSON
snapshot under `snapshots/`. Regenerate after an intended change with

    TRACEKIT_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/providers -p no:cacheprovider

and review the diff like code.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tracekit.testing import Capture

SNAPSHOTS = Path(__file__).parent / "snapshots"
# Read at import: the suite's autouse fixture clears TRACEKIT_* variables for each test.
UPDATE = os.environ.get("TRACEKIT_UPDATE_SNAPSHOTS", "").lower() in ("1", "true", "yes")

_PORT = "<port>"
_LOOPBACK = re.compile(r"(127\.0\.0\.1|localhost):\d+")
_RUN_ID = re.compile(r"lc_run--[0-9a-f-]{36}")  # LangChain's message ids: its run ids
_ADDRESS = re.compile(r" at 0x[0-9a-f]+>")  # the repr of a Python function given as a tool


def mask(value: Any, sdk_data: bool = False) -> Any:
    """The record with what changes from run to run (the replay server's port,
    LangChain's run ids, function addresses) masked, and the unset (null) fields of
    the SDKs' own objects in `inputs` and `outputs` left out: each SDK release adds
    optional fields, and a snapshot should change only when something was said."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if sdk_data and v is None:
                continue
            if k == "server.port" and isinstance(v, int):
                out[k] = _PORT
            else:
                out[k] = mask(v, sdk_data or k in ("inputs", "outputs"))
        return out
    if isinstance(value, list):
        return [mask(v, sdk_data) for v in value]
    if isinstance(value, str):
        value = _LOOPBACK.sub(r"\1:" + _PORT, value)
        return _ADDRESS.sub(" at 0x<address>>", _RUN_ID.sub("lc_run--<run id>", value))
    return value


@pytest.fixture
def snapshot(request: pytest.FixtureRequest) -> Callable[..., list[dict[str, Any]]]:
    """`snapshot(captured, name=None)`: assert the captured trace records equal the snapshot
    file `<name>.json` (written instead when TRACEKIT_UPDATE_SNAPSHOTS=1); `name` is
    `<provider>.<test>` by default (test_gemini_records.py::test_stream: gemini.stream).
    Returns the masked records."""

    def check(captured: Capture, name: str | None = None) -> list[dict[str, Any]]:
        records = mask(captured.traces)
        json.dumps(records)  # every record is JSON as exported
        if name is None:
            provider = request.path.stem.removeprefix("test_").removesuffix("_records")
            name = f"{provider}.{request.node.name.removeprefix('test_')}"
        path = SNAPSHOTS / f"{name}.json"
        if UPDATE or not path.exists():
            path.write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n")
            if not UPDATE:
                pytest.fail(f"snapshot {path.name} was missing and has been written: review it")
        assert records == json.loads(path.read_text())
        return records

    return check
