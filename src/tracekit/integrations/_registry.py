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


class IntegrationSpec:
    """One integration: what turns it on, where it lives, what it needs.

    A plain class rather than a NamedTuple or a dataclass: `import tracekit` reads
    this table, and making those classes costs more than the whole table.
    """

    __slots__ = ("distribution", "face", "implementation", "min_version", "name", "sdk_module")

    def __init__(
        self,
        *,
        name: str,
        sdk_module: str,
        distribution: str,
        min_version: str,
        face: str,
        implementation: str,
    ) -> None:
        self.name = name  # in TRACEKIT_AUTOLOG, `tracekit.NAME.autolog()` and `tracekit[NAME]`
        self.sdk_module = sdk_module  # the SDK's module: importing it turns the integration on
        self.distribution = distribution  # the SDK's package on PyPI, for messages
        self.min_version = min_version  # the oldest SDK release traced (as pyproject's extra)
        self.face = face  # the public module with `autolog()`
        self.implementation = implementation  # the module whose `integration` does the work

    def __repr__(self) -> str:
        return f"IntegrationSpec(name={self.name!r}, sdk_module={self.sdk_module!r}, ...)"


INTEGRATIONS: tuple[IntegrationSpec, ...] = (
    IntegrationSpec(
        name="openai",
        sdk_module="openai",
        distribution="openai",
        min_version="1.40",
        face="tracekit.openai",
        implementation="tracekit.integrations.openai",
    ),
    IntegrationSpec(
        name="anthropic",
        sdk_module="anthropic",
        distribution="anthropic",
        min_version="0.40",
        face="tracekit.anthropic",
        implementation="tracekit.integrations.anthropic",
    ),
    IntegrationSpec(
        name="gemini",
        sdk_module="google.genai",
        distribution="google-genai",
        min_version="1.0",
        face="tracekit.gemini",
        implementation="tracekit.integrations.gemini",
    ),
    IntegrationSpec(
        name="langchain",
        sdk_module="langchain_core",
        distribution="langchain-core",
        min_version="0.3",
        face="tracekit.langchain",
        implementation="tracekit.integrations.langchain",
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
