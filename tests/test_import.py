"""`import tracekit` is cheap: no SDK, no HTTP library, no thread, no file.

Each check runs in a fresh interpreter. Importable stand-ins for the SDKs and
HTTP libraries are put on `PYTHONPATH`, so an import of one of them (even a
guarded `try: import openai`) shows up in `sys.modules` whether or not the real
package is installed.
"""

from __future__ import annotations

import ast
import json
import os
import textwrap
from typing import Any

import pytest
from tests.child import run_python

import tracekit

SDKS = ("openai", "anthropic", "google.genai", "langchain_core")
HTTP = ("httpx", "requests", "urllib3", "aiohttp")
HEAVY_STDLIB = ("logging", "json", "inspect")
INTEGRATIONS = (
    "tracekit.openai",
    "tracekit.anthropic",
    "tracekit.gemini",
    "tracekit.langchain",
    "tracekit.exporters",
    "tracekit.testing",
    "tracekit._autolog",  # `tracekit.autolog` and the registry it reads load on first use
    "tracekit.integrations._registry",
)

# No `import json` (or anything else tracekit might import) before `import
# tracekit`: the results go back as a repr, read with ast.literal_eval.
SCRIPT = """
import os, sys
fd_dir = "/proc/self/fd"
fds_before = sorted(os.listdir(fd_dir)) if os.path.isdir(fd_dir) else None
cwd_before = sorted(os.listdir("."))
modules_before = set(sys.modules)

import tracekit

modules_after = set(sys.modules)
fds_after = sorted(os.listdir(fd_dir)) if os.path.isdir(fd_dir) else None
cwd_after = sorted(os.listdir("."))

import _thread
import threading

result = {
    "before": sorted(modules_before),
    "imported": sorted(modules_after - modules_before),
    "threads": threading.active_count(),
    "raw_threads": _thread._count(),
    "fds": [fds_before, fds_after],
    "cwd": [cwd_before, cwd_after],
}

# Lazy submodules load on first access.
exporters = tracekit.exporters
testing = tracekit.testing
result["lazy"] = [
    exporters is sys.modules.get("tracekit.exporters"),
    exporters.__name__,
    testing is sys.modules.get("tracekit.testing"),
]

# Tracing works after all that.
@tracekit.trace(span_type="TOOL")
def add(a, b):
    with tracekit.start_span("inner") as span:
        span.set_token_usage({"input_tokens": 1, "output_tokens": 2, "total_tokens": 3})
    return a + b

result["value"] = add(2, 3)
result["trace_id"] = tracekit.get_last_trace_id()
result["flushed"] = tracekit.flush(10)
result["after_tracing"] = sorted(sys.modules)

# tracekit.openai too, after the rest (it may import what it likes).
openai_before = "tracekit.openai" in sys.modules
integration = tracekit.openai
result["lazy_openai"] = [
    openai_before,
    integration is sys.modules.get("tracekit.openai"),
    callable(getattr(integration, "autolog", None)),
]
print(repr(result))
"""


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run SCRIPT once in a fresh interpreter with stand-in SDKs on the path."""
    root = tmp_path_factory.mktemp("import")
    stubs = root / "stubs"
    for name in SDKS + HTTP:
        package = stubs.joinpath(*name.split("."))
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(f"STAND_IN = {name!r}\n")
    cwd = root / "cwd"
    cwd.mkdir()
    store = root / "store"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEKIT_")}
    env.update(
        TRACEKIT_TESTING="1",
        TRACEKIT_TRACKING_URI=str(store),
        PYTHONPATH=os.pathsep.join(filter(None, [str(stubs), env.get("PYTHONPATH")])),
    )
    proc = run_python(textwrap.dedent(SCRIPT), cwd=cwd, env=env)
    assert proc.stderr == "", proc.stderr
    result: dict[str, Any] = ast.literal_eval(proc.stdout)
    result["stubs"] = stubs
    result["store"] = store
    result["cwd_dir"] = cwd
    return result


def test_stand_ins_are_importable(fresh: dict[str, Any]) -> None:
    """The check below is meaningful: these modules would be found if imported."""
    proc = run_python(
        "import openai, google.genai, httpx; print(openai.STAND_IN)",
        env=dict(os.environ, PYTHONPATH=str(fresh["stubs"])),
    )
    assert proc.stdout.strip() == "openai"


def test_import_loads_no_sdk_and_no_http_library(fresh: dict[str, Any]) -> None:
    for name in SDKS + HTTP:
        assert name not in fresh["before"], f"{name} loaded before tracekit: test is void"
        assert name not in fresh["imported"], f"import tracekit imported {name}"
    top_level = {m.split(".")[0] for m in fresh["imported"]}
    assert not top_level & {"openai", "anthropic", "google", "langchain_core", "langchain"}
    assert not top_level & {"httpx", "requests", "urllib3", "aiohttp"}
    assert not {"http.client", "urllib.request", "socket", "ssl"} & set(fresh["imported"])
    assert "tracekit" in fresh["imported"]


def test_import_loads_no_heavy_stdlib_module(fresh: dict[str, Any]) -> None:
    for name in HEAVY_STDLIB:
        assert name not in fresh["before"], f"{name} loaded at startup: test is void"
    loaded = {m.split(".")[0] for m in fresh["imported"]}
    assert not loaded & set(HEAVY_STDLIB), sorted(loaded & set(HEAVY_STDLIB))


def test_integrations_are_not_imported_until_accessed(fresh: dict[str, Any]) -> None:
    for name in INTEGRATIONS:
        assert name not in fresh["imported"], name
    assert fresh["lazy"] == [True, "tracekit.exporters", True]
    assert fresh["lazy_openai"] == [False, True, True]


def test_import_starts_no_thread_and_opens_no_file(fresh: dict[str, Any]) -> None:
    assert fresh["threads"] == 1
    assert fresh["raw_threads"] == 0  # threads started with _thread directly, too
    cwd_before, cwd_after = fresh["cwd"]
    assert cwd_before == cwd_after == []
    fds_before, fds_after = fresh["fds"]
    if fds_before is None:
        pytest.skip("no /proc/self/fd")
    assert fds_before == fds_after, "import tracekit left a file descriptor open"


def test_a_traced_call_works_after_a_plain_import(fresh: dict[str, Any]) -> None:
    assert fresh["value"] == 5
    assert fresh["flushed"] is True
    lines = (fresh["store"] / "traces.jsonl").read_text(encoding="utf-8").splitlines()
    (record,) = [json.loads(line) for line in lines]
    assert record["trace_id"] == fresh["trace_id"]
    assert record["name"] == "add"
    spans = {s["name"]: s for s in record["spans"]}
    assert set(spans) == {"add", "inner"}
    assert spans["add"]["inputs"] == {"a": 2, "b": 3}
    assert spans["add"]["outputs"] == 5
    assert spans["inner"]["parent_id"] == spans["add"]["span_id"]
    assert record["token_usage"] == {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3}
    # Nothing was written to the working directory: the store is where it was told.
    assert sorted(os.listdir(fresh["cwd_dir"])) == []
    # Tracing to a file store pulls in no SDK or HTTP library either.
    for name in SDKS + HTTP:
        assert name not in fresh["after_tracing"], name


def test_all_names_exist() -> None:
    assert len(set(tracekit.__all__)) == len(tracekit.__all__)
    for name in tracekit.__all__:
        assert hasattr(tracekit, name), name
        assert getattr(tracekit, name) is not None, name
    assert isinstance(tracekit.__version__, str)
    for name in set(tracekit.__all__) - {"__version__", "Span", "SpanStatus", "SpanType"}:
        assert callable(getattr(tracekit, name)), name
    namespace: dict[str, Any] = {}
    exec("from tracekit import *", namespace)  # noqa: S102
    assert set(tracekit.__all__) <= set(namespace)


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="nonexistent"):
        _ = tracekit.nonexistent  # type: ignore[attr-defined]
    assert not hasattr(tracekit, "nonexistent")
    assert getattr(tracekit, "nonexistent", "default") == "default"
    with pytest.raises(ImportError):
        exec("from tracekit import nonexistent", {})  # noqa: S102


def test_autolog_patches_lazily_loaded_sdk_modules_when_they_load() -> None:
    """The SDKs import their resource modules on first use (OpenAI's Responses alone
    takes ~45 ms): `autolog()` does not import them, and patches each when the
    program does."""
    pytest.importorskip("openai")
    code = textwrap.dedent(
        """
        import sys
        import openai, tracekit
        tracekit.openai.autolog()
        module = "openai.resources.responses.responses"
        before = module in sys.modules
        client = openai.OpenAI(api_key="test", base_url="http://127.0.0.1:9/v1")
        client.responses  # the SDK imports the module now
        create = sys.modules[module].Responses.__dict__["create"]
        print(before, type(create).__name__, hasattr(create, "__wrapped__"))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEKIT_AUTOLOG")}
    done = run_python(code, env=env, timeout=120)
    assert done.stdout.split() == ["False", "FunctionWrapper", "True"]


def test_tracing_never_imports_opentelemetry(fresh: dict[str, Any]) -> None:
    """Only the `otel` destination imports it; nesting with the app's OpenTelemetry
    reads `sys.modules` (see tracekit._otel)."""
    loaded = [m for m in fresh["after_tracing"] if m.split(".")[0] == "opentelemetry"]
    assert loaded == []
