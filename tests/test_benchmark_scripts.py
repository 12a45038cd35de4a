"""The benchmarks that judge changes to the hot path and the export worker run against
the code as it is: a change to what a traced call keeps (the shape of `Span.deferred`,
say) must not leave them broken for the next measurement. Small runs; their figures
are not asserted, only that every case printed its row."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("openai")
pytest.importorskip("anthropic")
pytest.importorskip("google.genai")

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(script: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


def _rows(table: str) -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) > 2 and not cells[0].startswith(("case", "-")):
            rows[cells[0]] = cells[1:]
    return rows


def test_the_worker_benchmark_measures_every_case() -> None:
    rows = _rows(_run("worker.py", "--calls", "20"))
    assert sorted(rows) == [
        "Anthropic messages",
        "Anthropic messages stream",
        "Gemini generate_content",
        "Gemini generate_content_stream",
        "OpenAI chat",
        "OpenAI chat stream",
    ]
    for cells in rows.values():
        worker, direct, floor = cells[0], cells[1], cells[2]
        assert float(worker) > 0
        assert all(float(x) > 0 for x in direct.split(" / ") + floor.split(" / "))
        assert cells[-1].endswith("of 20")  # undigested at the last call, of the calls


def test_the_call_counts_cover_the_sdk_cases() -> None:
    rows = _rows(_run("callcount.py", "--only", "openai_chat"))
    assert list(rows) == ["OpenAI chat"]
    bare_traced, added, _c_calls, kept = rows["OpenAI chat"]
    assert "→" in bare_traced
    assert int(added.lstrip("+")) > 0
    assert int(kept.lstrip("+")) > 0


def test_the_sustained_load_benchmark_writes_every_trace() -> None:
    out = _run("sustained.py", "--calls", "100", "--rate", "500")
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] in ("bare", "tracekit", "control"):
            rows[cells[0]] = cells[1:]
    assert sorted(rows) == ["bare", "control", "tracekit"]
    calls, written, dropped = rows["tracekit"][0], rows["tracekit"][3], rows["tracekit"][4]
    assert (calls, written, dropped) == ("100", "100", "0")
    assert "whole-process CPU, tracekit/bare" in out
