"""The peers benchmark's report writer (benchmarks/peerbench/report.py) turns a saved
results file into docs/benchmarks.md alone, the same page every time.

The snapshot is tests/snapshots/benchmarks/peers_report_small.md; after a deliberate
change to the page, write it again with

    .venv/bin/python benchmarks/peerbench/report.py \\
        tests/snapshots/benchmarks/peers_results_small.json \\
        --doc tests/snapshots/benchmarks/peers_report_small.md --no-chart
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOTS = ROOT / "tests" / "snapshots" / "benchmarks"
RESULTS = SNAPSHOTS / "peers_results_small.json"
PAGE = SNAPSHOTS / "peers_report_small.md"


@pytest.fixture(scope="module")
def report() -> Any:
    # the benchmarks are scripts, not a package: their folder goes on the path, as
    # `python benchmarks/peers.py` has it
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from peerbench import report

        yield report
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def results() -> dict[str, Any]:
    return json.loads(RESULTS.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def test_the_page_is_the_snapshot_every_time(report: Any) -> None:
    first = report.render(results())
    assert report.render(results()) == first
    assert first == PAGE.read_text(encoding="utf-8")


def test_the_page_is_written_from_the_results_file_alone(report: Any, tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    assert report.main([str(RESULTS), "--doc", str(doc), "--no-chart"]) == 0
    assert doc.read_text(encoding="utf-8") == PAGE.read_text(encoding="utf-8")


def test_every_latency_table_has_the_bare_vs_bare_control_beside_it(report: Any) -> None:
    page = report.render(results())
    header = next(line for line in page.splitlines() if line.startswith("| case | bare |"))
    assert header.split(" | ")[-2] == "control: bare again"
    chat = next(line for line in page.splitlines() if line.startswith("| OpenAI chat |"))
    # the control's ratio with its range over the rounds: the noise floor
    assert "+20 µs (1.020×; 1.010–1.030)" in chat
    # a variant that records less is marked beside its latency
    stream = next(
        line for line in page.splitlines() if line.startswith("| Anthropic messages stream |")
    )
    assert "**⚠ usage on 0%**" in stream


def test_a_run_of_one_figure_group_renders_only_that(report: Any) -> None:
    only_cpu = {k: v for k, v in results().items() if k in ("meta", "cpu")}
    page = report.render(only_cpu)
    assert "## Added median latency" not in page
    assert "## Correctness" not in page
    rows = [line for line in page.splitlines() if line.startswith("| whole-process CPU")]
    assert rows == [
        "| whole-process CPU, 100 OpenAI chat calls + export, file store | 3.52 s "
        "| 3.60 s (1.02×) | 8.25 s (2.35×) | 4.72 s (1.34×) | 3.85 s (1.10×) "
        "| 3.54 s (1.00×; 1.00–1.00) | ≤ 1.10× bare: PASS |"
    ]
