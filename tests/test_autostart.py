"""Zero-code tracing: `TRACEKIT_AUTOLOG` in the environment traces a program that
never imports tracekit (the `tracekit-autostart.pth` start-up hook), and
`tracekit run -- COMMAND` does the same explicitly.

Every scenario is a fresh interpreter of this environment (the hook runs at
interpreter start-up), talking to replay servers in the test process that serve
the recorded provider traffic in tests/cassettes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import sysconfig
import textwrap
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from tests.child import run_command
from tests.replay import load_or_skip, replay_server

from tracekit import _store

pytestmark = pytest.mark.timeout(300)

SITE = Path(sysconfig.get_paths()["purelib"])
TRACEKIT_CLI = Path(sys.executable).with_name("tracekit")

# An application that knows nothing of tracekit: it calls OpenAI, Anthropic and
# Gemini with the recorded requests (argv[1]: a JSON file naming the servers).
APP = """
import json, sys
from pathlib import Path

plan = json.loads(Path(sys.argv[1]).read_text())
out = {"tracekit_imported_before_sdk": "tracekit" in sys.modules}
if "openai" in plan:
    import openai
    client = openai.OpenAI(api_key="test", base_url=plan["openai"]["base_url"], max_retries=0)
    reply = client.chat.completions.create(**plan["openai"]["request"])
    out["openai"] = reply.choices[0].message.content
if "anthropic" in plan:
    import anthropic
    client = anthropic.Anthropic(
        api_key="test", base_url=plan["anthropic"]["base_url"], max_retries=0
    )
    reply = client.messages.create(**plan["anthropic"]["request"])
    out["anthropic"] = reply.content[0].text
if "gemini" in plan:
    from google import genai
    from google.genai import types
    client = genai.Client(
        api_key="test",
        http_options=types.HttpOptions(base_url=plan["gemini"]["base_url"], api_version="v1beta"),
    )
    body = plan["gemini"]["request"]
    reply = client.models.generate_content(
        model="gemini-2.0-flash",
        contents=body["contents"],
        config=types.GenerateContentConfig(system_instruction=body["systemInstruction"]),
    )
    out["gemini"] = reply.text
out["tracekit_imported"] = "tracekit" in sys.modules
print(json.dumps(out), flush=True)
if plan.get("wait_for_signal"):
    print("ready", flush=True)
    import time
    time.sleep(120)
"""

GEMINI_TEXT = (
    "The weather in San Francisco is foggy with a temperature of 65 degrees Fahrenheit "
    "and 85% humidity."
)
CASSETTES = {
    "openai": "openai/chat_completions_nonstream_basic.yaml",
    "anthropic": "anthropic/messages_nonstream_basic_gzip.yaml",
    "gemini": "gemini/generate_content_basic.yaml",
}


def _require_hook() -> None:
    if not (SITE / "tracekit-autostart.pth").is_file():
        pytest.fail(
            f"tracekit-autostart.pth is not in {SITE}: install tracekit with pip "
            "(`pip install -e .`) so that the start-up hook is in site-packages"
        )


@pytest.fixture
def servers() -> Iterator[dict[str, Any]]:
    """One replay server per provider, and the plan the app reads."""
    _require_hook()
    with ExitStack() as stack:
        plan: dict[str, Any] = {}
        for name, path in CASSETTES.items():
            cassette = load_or_skip(path)
            server = stack.enter_context(replay_server(cassette))
            request = cassette.request_json(0)
            request.pop("stream", None)  # Anthropic's recording says stream=false
            suffix = "/v1" if name == "openai" else ""
            plan[name] = {"base_url": server.base_url + suffix, "request": request}
        yield plan


def _env(store: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACEKIT_", "MLFLOW_"))}
    env.pop("PYTHONPATH", None)  # the hook must work from site-packages alone
    env.update(TRACEKIT_TESTING="1", TRACEKIT_TRACKING_URI=str(store), **extra)
    return env


def _write(tmp_path: Path, plan: dict[str, Any], only: tuple[str, ...]) -> tuple[Path, Path]:
    app = tmp_path / "app.py"
    app.write_text(APP)
    chosen = {k: v for k, v in plan.items() if k in only or k == "wait_for_signal"}
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(chosen))
    return app, plan_file


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_command(args, env=env, cwd=cwd, timeout=120, returncode=None)


def _usage(span: dict[str, Any]) -> tuple[int, int]:
    return span["token_usage"]["input_tokens"], span["token_usage"]["output_tokens"]


def test_environment_alone_traces_an_unmodified_app(tmp_path: Path, servers: dict) -> None:
    store = tmp_path / "store"
    app, plan = _write(tmp_path, servers, ("openai", "anthropic", "gemini"))
    env = _env(store, TRACEKIT_AUTOLOG="all")
    done = _run([sys.executable, str(app), str(plan)], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    out = json.loads(done.stdout)
    assert out["openai"] == "This is a test."
    assert out["anthropic"] == "Four plus five equals nine."
    assert out["gemini"] == GEMINI_TEXT
    assert out["tracekit_imported_before_sdk"] is False  # no work until an SDK is imported
    assert out["tracekit_imported"] is True

    traces = _store.load(store)
    assert len(traces) == 3  # one trace per call: nothing in the app opened a span
    spans = {s["name"]: s for t in traces for s in t["spans"]}
    assert set(spans) == {
        "chat gpt-4o-mini",
        "chat claude-sonnet-4-20250514",
        "generate_content gemini-2.0-flash",
    }
    assert all(s["span_type"] == "CHAT_MODEL" and s["parent_id"] is None for s in spans.values())
    assert _usage(spans["chat gpt-4o-mini"]) == (12, 5)
    assert _usage(spans["chat claude-sonnet-4-20250514"]) == (19, 9)
    assert _usage(spans["generate_content gemini-2.0-flash"]) == (45, 23)


def test_only_the_named_integrations(tmp_path: Path, servers: dict) -> None:
    store = tmp_path / "store"
    app, plan = _write(tmp_path, servers, ("openai", "anthropic"))
    done = _run(
        [sys.executable, str(app), str(plan)], _env(store, TRACEKIT_AUTOLOG=" Anthropic "), tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["openai"] == "This is a test."
    (trace,) = _store.load(store)
    assert [s["name"] for s in trace["spans"]] == ["chat claude-sonnet-4-20250514"]


def test_unknown_name_warns_and_keeps_the_rest(tmp_path: Path, servers: dict) -> None:
    store = tmp_path / "store"
    app, plan = _write(tmp_path, servers, ("openai",))
    env = _env(store, TRACEKIT_AUTOLOG="openai,opanai")
    done = _run([sys.executable, str(app), str(plan)], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "TRACEKIT_AUTOLOG='openai,opanai'" in done.stderr
    assert "using ['openai'] instead" in done.stderr
    (trace,) = _store.load(store)
    assert _usage(trace["spans"][0]) == (12, 5)


def test_the_hook_knows_every_integration() -> None:
    """The start-up guard cannot import tracekit, so it keeps its own copy of the
    registry's integrations and the SDK module that turns each on: the same, in order."""
    import _tracekit_autostart
    from tracekit.integrations._registry import INTEGRATIONS

    copy = _tracekit_autostart.PACKAGES
    assert copy == {spec.name: spec.sdk_module for spec in INTEGRATIONS}
    assert tuple(copy) == tuple(spec.name for spec in INTEGRATIONS)


def test_unset_variable_never_imports_tracekit(tmp_path: Path) -> None:
    """With the variable unset the hook is one `in os.environ` test: tracekit (and
    its guard module) are not imported. `benchmarks/startup.py` measures the cost."""
    _require_hook()
    code = "import sys; print(sorted(m for m in sys.modules if 'tracekit' in m))"
    env = _env(tmp_path / "store")
    env.pop("TRACEKIT_TESTING")
    done = _run([sys.executable, "-X", "importtime", "-c", code], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert "tracekit" not in done.stderr  # -X importtime lists every module imported
    env["TRACEKIT_AUTOLOG"] = "all"
    done = _run([sys.executable, "-X", "importtime", "-c", code], env, tmp_path)
    # Set, only the standard-library guard runs until an SDK is imported.
    assert done.stdout.strip() == "['_tracekit_autostart']"


def test_a_broken_tracekit_never_breaks_the_app(tmp_path: Path, servers: dict) -> None:
    """A tracekit that cannot even be imported: the app runs, untraced, and says why."""
    broken = tmp_path / "broken" / "tracekit"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise RuntimeError('simulated broken install')\n")
    store = tmp_path / "store"
    app, plan = _write(tmp_path, servers, ("openai",))
    env = _env(store, TRACEKIT_AUTOLOG="openai", PYTHONPATH=str(broken.parent))
    done = _run([sys.executable, str(app), str(plan)], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["openai"] == "This is a test."
    assert "tracing could not start (RuntimeError('simulated broken install'))" in done.stderr
    assert "the program runs untraced" in done.stderr
    assert not store.exists()


def test_tracekit_run(tmp_path: Path, servers: dict) -> None:
    store = tmp_path / "store"
    app, plan = _write(tmp_path, servers, ("openai", "gemini"))
    env = _env(tmp_path / "elsewhere")
    command = [str(TRACEKIT_CLI), "run", "--autolog", "gemini", "--to", str(store), "--"]
    done = _run([*command, sys.executable, str(app), str(plan)], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["gemini"] == GEMINI_TEXT
    (trace,) = _store.load(store)
    assert _usage(trace["spans"][0]) == (45, 23)
    assert not (tmp_path / "elsewhere").exists()


def test_tracekit_run_defaults_to_all(tmp_path: Path, servers: dict) -> None:
    store = tmp_path / "store"
    app, plan = _write(tmp_path, servers, ("openai", "anthropic"))
    done = _run(
        [str(TRACEKIT_CLI), "run", sys.executable, str(app), str(plan)], _env(store), tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert len(_store.load(store)) == 2


def test_tracekit_run_names_another_python(tmp_path: Path) -> None:
    """`python` on PATH that is not this environment's interpreter: said up front."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    other = bin_dir / "python3"
    other.write_text("#!/bin/sh\necho other-python\n")
    other.chmod(0o755)
    env = _env(tmp_path / "store", PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    done = _run([str(TRACEKIT_CLI), "run", "--", "python3", "-c", "pass"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "other-python"
    assert f"'python3' is {other}, not this environment's Python" in done.stderr


def test_tracekit_run_errors(tmp_path: Path) -> None:
    missing = _run(
        [str(TRACEKIT_CLI), "run", "--", "no-such-program-xyz"], _env(tmp_path), tmp_path
    )
    assert missing.returncode == 127
    assert "tracekit run: cannot run 'no-such-program-xyz'" in missing.stderr
    empty = _run([str(TRACEKIT_CLI), "run"], _env(tmp_path), tmp_path)
    assert empty.returncode == 2
    assert "give the program to run" in empty.stderr


def _serve_until_signalled(
    tmp_path: Path, plan: dict[str, Any], env: dict[str, str]
) -> subprocess.Popen[str]:
    app, plan_file = _write(tmp_path, {**plan, "wait_for_signal": True}, ("openai",))
    child = subprocess.Popen(
        [sys.executable, str(app), str(plan_file)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    json.loads(child.stdout.readline())
    assert child.stdout.readline().strip() == "ready"
    return child


def test_sigterm_delivers_what_is_buffered(tmp_path: Path, servers: dict) -> None:
    """A container stop (SIGTERM, which skips atexit) with an export interval far
    away: the hook's handler delivers the trace, then the process dies of the signal."""
    store = tmp_path / "store"
    env = _env(store, TRACEKIT_AUTOLOG="openai", TRACEKIT_EXPORT_INTERVAL="3600")
    child = _serve_until_signalled(tmp_path, servers, env)
    assert not store.exists() or _store.load(store) == []
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=30) == -signal.SIGTERM
    (trace,) = _store.load(store)
    assert _usage(trace["spans"][0]) == (12, 5)


def test_killed_service_loses_at_most_one_interval(tmp_path: Path, servers: dict) -> None:
    """SIGKILL leaves no chance to flush: what finished more than one
    TRACEKIT_EXPORT_INTERVAL before is already delivered."""
    store = tmp_path / "store"
    env = _env(store, TRACEKIT_AUTOLOG="openai", TRACEKIT_EXPORT_INTERVAL="0.2")
    child = _serve_until_signalled(tmp_path, servers, env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (store.exists() and _store.load(store)):
        time.sleep(0.05)
    child.kill()
    child.wait(timeout=30)
    (trace,) = _store.load(store)
    assert _usage(trace["spans"][0]) == (12, 5)


def test_an_app_handler_for_sigterm_is_left_alone(tmp_path: Path) -> None:
    _require_hook()
    code = textwrap.dedent(
        """
        import signal, sys
        def mine(signum, frame):
            pass
        signal.signal(signal.SIGTERM, mine)
        import openai  # the SDK import turns tracing on
        print(signal.getsignal(signal.SIGTERM) is mine, "tracekit" in sys.modules)
        """
    )
    env = _env(tmp_path / "store", TRACEKIT_AUTOLOG="openai")
    done = _run([sys.executable, "-c", code], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"]


def test_the_hook_is_in_the_wheel(tmp_path: Path) -> None:
    """A normal (not editable) install puts the hook and its guard module at the top
    of site-packages."""
    built = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(Path(__file__).resolve().parents[1]),
        ],
        dict(os.environ),
        tmp_path,
    )
    assert built.returncode == 0, built.stderr
    import zipfile

    (wheel,) = tmp_path.glob("tracekit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"tracekit-autostart.pth", "_tracekit_autostart.py", "tracekit/_autostart.py"} <= names
    # `tracekit ui`'s page ships as package data (no build step, no network).
    assert {f"tracekit/_ui/static/{n}" for n in ("index.html", "app.js", "app.css")} <= names
    pth = zipfile.ZipFile(wheel).read("tracekit-autostart.pth").decode()
    assert pth.strip() == (
        "import os; 'TRACEKIT_AUTOLOG' in os.environ and __import__('_tracekit_autostart')"
    )


def test_sigterm_without_tracing_still_kills_at_once(tmp_path: Path) -> None:
    """The hook's SIGTERM handler in a program that never traced: it dies of the
    signal as before, without waiting for anything."""
    _require_hook()
    code = "import time; print('ready', flush=True); time.sleep(60)"
    env = _env(tmp_path / "store", TRACEKIT_AUTOLOG="all")
    child = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=30) == -signal.SIGTERM
    assert not (tmp_path / "store").exists()
