"""Every integration tracekit has, in one table.

The configuration (`TRACEKIT_AUTOLOG` names), the lazy public faces
(`tracekit.openai` ...), `tracekit.autolog()` and each integration's own
install check read this table. It is plain data and imports nothing, so the
configuration can read it at no cost. The zero-code start-up hook
(`_tracekit_autostart`, which may not import tracekit) keeps a copy of the
names and SDK modules; tests/test_autostart.py checks that it matches.

To add an integration: a row here, its module under `tracekit/integrations/`
holding `integration` (a `BaseIntegration`), its public face `tracekit/NAME.py`,
an extra in pyproject.toml, and the row in `_tracekit_autostart.PACKAGES`.
"""

from __future__ import annotations

from typing import NamedTuple


class IntegrationSpec(NamedTuple):
    """One integration: what turns it on, where it lives, what it needs."""

    name: str  # in TRACEKIT_AUTOLOG, `tracekit.NAME.autolog()` and `tracekit[NAME]`
    sdk_module: str  # the SDK's module: importing it turns the integration on
    distribution: str  # the SDK's package on PyPI, for messages
    min_version: str  # the oldest SDK release traced (pyproject.toml's extra says the same)
    face: str  # the public module with `autolog()`
    implementation: str  # the module whose `integration` object (a BaseIntegration) does it


INTEGRATIONS: tuple[IntegrationSpec, ...] = (
    IntegrationSpec(
        "openai", "openai", "openai", "1.40", "tracekit.openai", "tracekit.integrations.openai"
    ),
    IntegrationSpec(
        "anthropic",
        "anthropic",
        "anthropic",
        "0.40",
        "tracekit.anthropic",
        "tracekit.integrations.anthropic",
    ),
    IntegrationSpec(
        "gemini",
        "google.genai",
        "google-genai",
        "1.0",
        "tracekit.gemini",
        "tracekit.integrations.gemini",
    ),
    IntegrationSpec(
        "langchain",
        "langchain_core",
        "langchain-core",
        "0.3",
        "tracekit.langchain",
        "tracekit.integrations.langchain",
    ),
)

NAMES: tuple[str, ...] = tuple(spec.name for spec in INTEGRATIONS)
_BY_NAME = {spec.name: spec for spec in INTEGRATIONS}


def spec(name: str) -> IntegrationSpec:
    """The integration called `name` (KeyError if there is none)."""
    return _BY_NAME[name]


def version_tuple(version: str) -> tuple[int, ...]:
    """`"1.40.2rc1"` -> `(1, 40, 2)`: the leading number of each dot-separated part,
    enough to compare a release with a minimum (no `packaging` import)."""
    parts: list[int] = []
    for part in version.split("."):
        digits = ""
        for char in part:
            if not char.isdigit():
                break
            digits += char
        if not digits:
            break
        parts.append(int(digits))
        if len(digits) != len(part):  # "2rc1": a pre-release; what follows is not a version
            break
    return tuple(parts)
