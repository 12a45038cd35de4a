"""What the report writer builds from a results file: the figures' rows, before layout."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Summary:
    """Tables and cells computed from the saved results (medians, ratios, verdicts)."""

    # transport -> case -> {"bare": ns, variant: {"ratio", "added_ns", "range"} | {"na"}}
    latency: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # the process figures: figure -> variant -> cell, and figure -> tracekit's target cell
    other: dict[str, dict[str, str]] = field(default_factory=dict)
    other_target: dict[str, str] = field(default_factory=dict)
    plot: dict[str, Any] = field(default_factory=dict)  # what the chart shows
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # variants that recorded less
    errors: dict[str, dict[str, str]] = field(default_factory=dict)  # variant -> provider -> why
