"""tracekit against the tracers users would pick instead, side by side, in one run.

Run it (about 15 minutes on two cores; the first run also builds .bench-venv/):

    python3 benchmarks/peers.py            # full run, writes docs/benchmarks.md and .png
    python3 benchmarks/peers.py --quick    # smoke run, about 3 minutes

The script creates its own virtualenv, `.bench-venv/` at the repository root, from
benchmarks/peers-requirements.txt plus tracekit installed editable, and re-runs
itself there, so the peers never enter tracekit's dependencies. Variants, each in
its own fresh interpreter (instrumentation is process-wide state):

- `bare`: the SDKs alone;
- `tracekit`: `tracekit.{openai,anthropic,gemini}.autolog()`, default file store;
- `mlflow`: `mlflow.{openai,anthropic,gemini}.autolog()`, a SQLite store;
- `openinference`: OpenInference's OpenAI and Anthropic instrumentors;
- `otel-openai-v2`: opentelemetry-instrumentation-openai-v2 (OpenAI only);

the two OpenTelemetry variants with an SDK `TracerProvider`, a `BatchSpanProcessor`
and a `ConsoleSpanExporter` writing one JSON line per span to a file. Variants are
interleaved round by round, medians are taken over rounds, and ratios to `bare` are
taken within a round. See benchmarks/README.md for what each figure is.

Options: `--quick`, `--only SUBSTRING` (figure groups: latency, startup, cpu,
memory, exit), `--verbose` (children's stderr), `--no-venv` (run with the current
interpreter), `--profile` (pyinstrument of a tracekit child on the mock transport).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import gc
import gzip
import hashlib
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VENV = REPO / ".bench-venv"
REQUIREMENTS = HERE / "peers-requirements.txt"
CASSETTES = Path(os.environ.get("TRACEKIT_CASSETTES", "/work/shared/cassettes"))
DOC = REPO / "docs" / "benchmarks.md"
PLOT = REPO / "docs" / "benchmarks.png"
RESULT_PREFIX = "RESULT "
US = 1_000.0

VARIANTS = ["bare", "tracekit", "mlflow", "openinference", "otel-openai-v2"]
TITLES = {
    "bare": "bare SDK",
    "tracekit": "tracekit",
    "mlflow": "MLflow autolog",
    "openinference": "OpenInference",
    "otel-openai-v2": "OTel openai-v2",
}
# which provider each variant instruments (None: the variant has no instrumentation for it)
COVERS = {
    "bare": {"openai", "anthropic", "gemini"},
    "tracekit": {"openai", "anthropic", "gemini"},
    "mlflow": {"openai", "anthropic", "gemini"},
    "openinference": {"openai", "anthropic"},
    "otel-openai-v2": {"openai"},
}
CASES = {
    "openai_chat": ("openai", "OpenAI chat"),
    "openai_stream": ("openai", "OpenAI chat stream"),
    "openai_async": ("openai", "OpenAI async, gather of 50"),
    "anthropic_messages": ("anthropic", "Anthropic messages"),
    "anthropic_stream": ("anthropic", "Anthropic messages stream"),
    "gemini_generate": ("gemini", "Gemini generate_content"),
}
BATCH = 50
TARGET_ADDED = 0.03
TARGET_CPU = 0.10
TARGET_IMPORT_MS = 50.0
TARGET_RSS_GROWTH_MB = 5.0
TARGET_EXIT_S = 5.0  # tracekit's shutdown timeout (2 s by default) plus the interpreter's exit

# ---------------------------------------------------------------------------
# the environment: .bench-venv/
# ---------------------------------------------------------------------------


def _venv_python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv() -> list[str]:
    """Build .bench-venv/ when the requirements changed; return notes on what failed."""
    stamp = VENV / ".requirements-sha256"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == wanted and _venv_python().exists():
        notes_file = VENV / ".install-notes"
        return notes_file.read_text().splitlines() if notes_file.exists() else []
    print(f"building {VENV} (a few minutes, once) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(_venv_python()), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "-U", "pip"], check=False)
    editable = f"{REPO}[openai,anthropic,gemini]"
    notes: list[str] = []
    done = subprocess.run([*pip, "-r", str(REQUIREMENTS), "-e", editable], check=False)
    if done.returncode != 0:
        # one requirement at a time, so that one peer that fails leaves the others
        subprocess.run([*pip, "-e", editable], check=True)
        for line in REQUIREMENTS.read_text().splitlines():
            requirement = line.split("#")[0].strip()
            if requirement and subprocess.run([*pip, requirement], check=False).returncode:
                notes.append(f"could not install {requirement}")
    (VENV / ".install-notes").write_text("\n".join(notes))
    stamp.write_text(wanted)
    return notes


# ---------------------------------------------------------------------------
# recorded wire data: /work/shared/cassettes (see PROVENANCE.md there)
# ---------------------------------------------------------------------------

CASSETTE_FILES = {
    "openai_chat": "openai/chat_completions_nonstream_basic.yaml",
    "openai_stream": "openai/chat_completions_stream_include_usage.yaml",
    "anthropic_messages": "anthropic/messages_nonstream_basic_gzip.yaml",
    "anthropic_stream": "anthropic/messages_stream_basic.yaml",
    "gemini_generate": "gemini/generate_content_basic.yaml",
}


def load_cassettes() -> dict[str, Any] | None:
    """Request and response body of each case's recorded interaction (None: no cassettes)."""
    if not CASSETTES.is_dir():
        return None
    import yaml

    out: dict[str, Any] = {}
    for case, name in CASSETTE_FILES.items():
        data = yaml.safe_load((CASSETTES / name).read_text())
        interaction = data["interactions"][0]
        body = interaction["response"]["body"]["string"]
        raw = body if isinstance(body, bytes) else body.encode()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        request = interaction["request"]["body"]
        out[case] = {
            "request": json.loads(request) if request else None,
            "uri": interaction["request"]["uri"],
            "body": raw.decode(),
            "sse": raw.lstrip().startswith((b"data:", b"event:")),
        }
    return out


# ---------------------------------------------------------------------------
# children: clients, instrumentation, the spans each variant produced
# ---------------------------------------------------------------------------


def emit(result: dict[str, Any]) -> None:
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Clients:
    """The three SDK clients on the chosen transport, and each case's request."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import anthropic
        import httpx2
        import openai
        from google import genai
        from google.genai import types

        self.bodies = spec.get("bodies")
        base = spec.get("base_url") or "http://bench.invalid"
        mock = spec["transport"] == "mock"
        transport = httpx2.MockTransport(self._handler) if mock else None

        def sync_client() -> Any:
            return httpx2.Client(transport=transport) if mock else httpx2.Client()

        def async_client() -> Any:
            return httpx2.AsyncClient(transport=transport) if mock else httpx2.AsyncClient()

        self.openai = openai.OpenAI(
            api_key="test", base_url=base + "/v1", max_retries=0, http_client=sync_client()
        )
        self.openai_async = lambda: openai.AsyncOpenAI(
            api_key="test", base_url=base + "/v1", max_retries=0, http_client=async_client()
        )
        self.anthropic = anthropic.Anthropic(
            api_key="test", base_url=base, max_retries=0, http_client=sync_client()
        )
        self.gemini = genai.Client(
            api_key="test",
            http_options=types.HttpOptions(
                base_url=base, api_version="v1beta", httpx_client=sync_client()
            ),
        )
        b = self.bodies or {}
        self.openai_chat = (b.get("openai_chat") or {}).get("request") or {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "Say this is a test"}],
        }
        self.openai_stream = (b.get("openai_stream") or {}).get("request") or {
            **self.openai_chat,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        self.anthropic_messages = (b.get("anthropic_messages") or {}).get("request") or {
            "model": "claude-sonnet-4-20250514",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": "What is four plus five?"}],
        }
        self.anthropic_stream = (b.get("anthropic_stream") or {}).get("request") or {
            **self.anthropic_messages,
            "stream": True,
        }
        self.anthropic_messages = {
            k: v for k, v in self.anthropic_messages.items() if k != "stream"
        }

    def _handler(self, request: Any) -> Any:
        import httpx2

        path = request.url.path
        streaming = b'"stream":true' in request.content or b'"stream": true' in request.content
        if ":generateContent" in path:
            case = "gemini_generate"
        elif path.endswith("/chat/completions"):
            case = "openai_stream" if streaming else "openai_chat"
        elif path.endswith("/messages"):
            case = "anthropic_stream" if streaming else "anthropic_messages"
        else:
            return httpx2.Response(404, json={"error": path})
        recorded = self.bodies[case]  # type: ignore[index]
        kind = "text/event-stream; charset=utf-8" if recorded["sse"] else "application/json"
        return httpx2.Response(
            200,
            headers={"content-type": kind, "request-id": "req_bench", "x-request-id": "req"},
            content=recorded["body"].encode(),
        )

    # one call per case (the async case: one gather of BATCH calls)
    def call(self, case: str) -> int:
        if case == "openai_chat":
            self.openai.chat.completions.create(**self.openai_chat)
        elif case == "openai_stream":
            for _chunk in self.openai.chat.completions.create(**self.openai_stream):
                pass
        elif case == "anthropic_messages":
            self.anthropic.messages.create(**self.anthropic_messages)
        elif case == "anthropic_stream":
            for _event in self.anthropic.messages.create(**self.anthropic_stream):
                pass
        elif case == "gemini_generate":
            self.gemini.models.generate_content(
                model="gemini-2.0-flash", contents="What's the weather like?"
            )
        else:
            raise ValueError(case)
        return 1


class Variant:
    """Set up one variant's instrumentation; flush it; read back what it recorded."""

    def __init__(self, name: str, tmp: str, destination: str, providers: set[str]) -> None:
        self.name = name
        self.tmp = tmp
        self.errors: dict[str, str] = {}
        self.provider: Any = None
        self.spans_file = os.path.join(tmp, "otel-spans.jsonl")
        self.seen: set[str] = set()
        if name in ("openinference", "otel-openai-v2"):
            self._otel_provider(destination)
        self.instrument(providers)

    def instrument(self, providers: set[str]) -> None:
        """Turn on this variant's instrumentation for these SDKs (errors are recorded)."""
        for p in sorted(providers):
            if p not in COVERS[self.name]:
                self.errors.setdefault(p, "no instrumentation for this SDK")
            elif self.name == "tracekit":
                self._try(p, lambda p=p: getattr(__import__("tracekit"), p).autolog())
            elif self.name == "mlflow":
                self._try(p, lambda p=p: getattr(__import__("mlflow"), p).autolog())
            elif self.name != "bare":
                self._try(p, lambda p=p: self._otel_instrument(p))

    def _try(self, provider: str, setup: Any) -> None:
        try:
            setup()
        except Exception as exc:
            self.errors[provider] = f"{type(exc).__name__}: {exc}"[:200]

    def _otel_provider(self, destination: str) -> None:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

        if destination.startswith("http"):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter: Any = OTLPSpanExporter(endpoint=destination + "/v1/traces")
        else:
            out = open(self.spans_file, "w")  # noqa: SIM115 - open for the process's life
            exporter = ConsoleSpanExporter(
                out=out, formatter=lambda span: span.to_json(indent=None) + "\n"
            )
        self.provider = TracerProvider()
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(self.provider)

    def _otel_instrument(self, provider: str) -> None:
        if self.name == "otel-openai-v2":
            from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

            OpenAIInstrumentor().instrument(tracer_provider=self.provider)
        elif provider == "openai":
            from openinference.instrumentation.openai import OpenAIInstrumentor as OIOpenAI

            OIOpenAI().instrument(tracer_provider=self.provider)
        else:
            from openinference.instrumentation.anthropic import AnthropicInstrumentor

            AnthropicInstrumentor().instrument(tracer_provider=self.provider)

    def flush(self) -> None:
        if self.name == "tracekit":
            sys.modules["tracekit"].flush(120)
        elif self.name == "mlflow":
            sys.modules["mlflow"].flush_trace_async_logging()
        elif self.provider is not None:
            self.provider.force_flush()

    def new_spans(self) -> list[tuple[bool, bool]]:
        """(is an LLM span, has token usage) for each span recorded since the last call."""
        self.flush()
        found: list[tuple[str, bool, bool]] = []
        if self.name == "tracekit":
            for path in Path(self.tmp, ".tracekit").glob("*.jsonl"):
                for raw in path.read_bytes().splitlines():
                    for span in json.loads(raw).get("spans", []):
                        usage = span.get("token_usage") or {}
                        found.append(
                            (
                                span["span_id"],
                                span.get("span_type") in ("CHAT_MODEL", "LLM"),
                                "input_tokens" in usage and "output_tokens" in usage,
                            )
                        )
        elif self.name == "mlflow":
            import mlflow

            for tr in mlflow.search_traces(return_type="list", max_results=50_000):
                for span in tr.data.spans:
                    usage = span.attributes.get("mlflow.chat.tokenUsage") or {}
                    found.append(
                        (
                            span.span_id,
                            span.span_type in ("CHAT_MODEL", "LLM"),
                            "input_tokens" in usage and "output_tokens" in usage,
                        )
                    )
        elif os.path.exists(self.spans_file):
            with open(self.spans_file) as f:
                for line in f:
                    span = json.loads(line)
                    attrs = span.get("attributes") or {}
                    llm = attrs.get("openinference.span.kind") == "LLM" or (
                        "gen_ai.operation.name" in attrs
                    )
                    usage = (
                        "llm.token_count.prompt" in attrs and "llm.token_count.completion" in attrs
                    ) or (
                        "gen_ai.usage.input_tokens" in attrs
                        and "gen_ai.usage.output_tokens" in attrs
                    )
                    found.append((span["context"]["span_id"], llm, usage))
        fresh = [(llm, usage) for sid, llm, usage in found if sid not in self.seen]
        self.seen.update(sid for sid, _, _ in found)
        return fresh


def _setup(spec: dict[str, Any], providers: set[str] | None = None) -> tuple[Variant, Clients]:
    import anthropic  # noqa: F401 - the SDKs, loaded in every variant before instrumenting
    import httpx2  # noqa: F401
    import openai  # noqa: F401
    from google import genai  # noqa: F401

    variant = Variant(
        spec["variant"],
        os.getcwd(),
        spec.get("destination", "file"),
        providers or set(COVERS["bare"]),
    )
    return variant, Clients(spec)


def _samples(clients: Clients, case: str, n: int) -> list[int]:
    clock = time.perf_counter_ns
    times = []
    if case == "openai_async":

        async def run() -> None:
            client = clients.openai_async()
            create = client.chat.completions.create
            for _ in range(n):
                t0 = clock()
                await asyncio.gather(*(create(**clients.openai_chat) for _ in range(BATCH)))
                times.append(clock() - t0)
            await client.close()

        asyncio.run(run())
        return times
    call = clients.call
    for _ in range(n):
        t0 = clock()
        call(case)
        times.append(clock() - t0)
    return times


def child_latency(spec: dict[str, Any]) -> None:
    variant, clients = _setup(spec)
    out: dict[str, Any] = {"errors": variant.errors, "cases": {}}
    for case in spec["cases"]:
        n, warm = spec["sizes"][case]
        _samples(clients, case, warm)
        # the variant's flush, waited on for at most 5 s (MLflow's SQLite queue drains
        # slowly), so each case starts with its exporter about idle
        flusher = threading.Thread(target=variant.flush, daemon=True)
        flusher.start()
        flusher.join(5)
        gc.collect()
        times = _samples(clients, case, n)
        out["cases"][case] = {"median_ns": statistics.median(times), "n": n}
    emit(out)
    os._exit(0)  # the export at exit is measured by the cpu and exit children


def child_startup(spec: dict[str, Any]) -> None:
    """Import plus autolog() (OpenAI), the first traced call, then the correctness check."""
    import anthropic  # noqa: F401
    import httpx2  # noqa: F401
    import openai  # noqa: F401
    from google import genai  # noqa: F401

    t0 = time.perf_counter_ns()
    variant = Variant(spec["variant"], os.getcwd(), "file", {"openai"})
    setup_ns = time.perf_counter_ns() - t0
    clients = Clients(spec)
    t0 = time.perf_counter_ns()
    clients.call("openai_chat")
    first_ns = time.perf_counter_ns() - t0
    t0 = time.perf_counter_ns()
    clients.call("openai_chat")
    second_ns = time.perf_counter_ns() - t0
    out: dict[str, Any] = {"setup_ns": setup_ns, "first_ns": first_ns, "second_ns": second_ns}
    if spec.get("check"):
        # the other providers' instrumentation, then K calls of each case
        variant.instrument({"anthropic", "gemini"})
        variant.new_spans()  # the two calls above
        checks: dict[str, Any] = {}
        k = spec["check"]
        for case, (provider, _title) in CASES.items():
            error = None
            try:
                _samples(clients, case, k if case != "openai_async" else 1)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"[:200]
            calls = k if case != "openai_async" else BATCH
            spans = variant.new_spans() if variant.name != "bare" else []
            checks[case] = {
                "calls": calls,
                "llm_spans": sum(llm for llm, _ in spans),
                "with_usage": sum(llm and usage for llm, usage in spans),
                "error": error or variant.errors.get(provider),
            }
        out["checks"] = checks
    emit(out)
    os._exit(0)


def child_cpu(spec: dict[str, Any]) -> None:
    """N calls, then a normal exit: the parent reads the whole process's CPU (wait4)."""
    _variant, clients = _setup(spec, {"openai"})
    for _ in range(spec["n"]):
        clients.call("openai_chat")
    emit({"done": True})


def child_memory(spec: dict[str, Any]) -> None:
    """RSS while making up to N calls (a watchdog reports what was reached in the budget)."""
    progress: dict[str, Any] = {"calls": 0, "phase": "setup", "rss": [], "rss_start": rss_mb()}
    started = time.monotonic()

    def watchdog() -> None:
        time.sleep(spec["budget_s"] + spec.get("setup_grace_s", 20))
        progress["timed_out"] = True
        progress["rss_end"] = rss_mb()
        emit(progress)
        os._exit(0)

    threading.Thread(target=watchdog, daemon=True).start()
    variant, clients = _setup(spec, {"openai"})
    progress["phase"] = "calls"
    progress["rss_start"] = rss_mb()
    step = spec["n"] // 10
    deadline = started + spec["budget_s"]
    for i in range(1, spec["n"] + 1):
        clients.call("openai_chat")
        progress["calls"] = i
        if i % step == 0:
            gc.collect()
            progress["rss"].append([i, rss_mb()])
            if time.monotonic() > deadline:
                break
    progress["phase"] = "done"
    progress["rss_end"] = rss_mb()
    progress["errors"] = variant.errors
    emit(progress)
    os._exit(0)  # the exit is measured elsewhere; do not wait for a stalled export here


def child_exit(spec: dict[str, Any]) -> None:
    """Some calls, then the end of the script: the parent times how long the exit takes."""
    progress = {"calls": 0}

    def watchdog() -> None:
        time.sleep(spec["budget_s"] + 20)
        emit({**progress, "end_wall": time.time(), "blocked": True})
        os._exit(3)

    threading.Thread(target=watchdog, daemon=True).start()
    _variant, clients = _setup(spec, {"openai"})
    deadline = time.monotonic() + spec["budget_s"]
    for i in range(1, spec["n"] + 1):
        clients.call("openai_chat")
        progress["calls"] = i
        if time.monotonic() > deadline:
            break
    progress["script_end"] = time.time()
    emit({**progress, "end_wall": time.time(), "blocked": False})


def child_profile(spec: dict[str, Any]) -> None:
    from pyinstrument import Profiler

    variant, clients = _setup(spec)
    for case in ("openai_chat", "openai_stream", "anthropic_messages", "gemini_generate"):
        _samples(clients, case, 100)
        variant.flush()
        profiler = Profiler(interval=0.0002)
        profiler.start()
        _samples(clients, case, spec["n"])
        profiler.stop()
        print(f"\n### pyinstrument, {case}, {spec['n']} calls\n", flush=True)
        print(profiler.output_text(unicode=False, color=False, show_all=False), flush=True)
    emit({"done": True})


# ---------------------------------------------------------------------------
# the parent
# ---------------------------------------------------------------------------


class StalledServer:
    """Accepts connections and reads requests on 127.0.0.1, never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    @staticmethod
    def _drain(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while conn.recv(65536):
                pass

    def close(self) -> None:
        self.sock.close()
        for conn in self.connections:
            with contextlib.suppress(OSError):
                conn.close()


def child_env(variant: str, tmp: str, destination: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRACEKIT_", "MLFLOW_", "OTEL_", "OPENAI_", "ANTHROPIC_", "GOOGLE_"))
    }
    env["PYTHONDONTWRITEBYTECODE"] = "0"
    env["OTEL_SERVICE_NAME"] = "peers-bench"
    if variant == "tracekit" and destination.startswith("http"):
        env["TRACEKIT_TRACKING_URI"] = destination
    if variant == "mlflow":
        env["MLFLOW_TRACKING_URI"] = (
            destination if destination.startswith("http") else f"sqlite:///{tmp}/mlflow.db"
        )
    # message contents on the OTel spans, as tracekit and MLflow record them
    env["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "true"
    return env


def run_child(
    kind: str, spec: dict[str, Any], verbose: bool, timeout: float = 600
) -> dict[str, Any]:
    """Run one child in a fresh temporary directory; its result, wall and CPU figures."""
    with tempfile.TemporaryDirectory(prefix="peers-bench-") as tmp:
        env = child_env(spec["variant"], tmp, spec.get("destination", "file"))
        t0 = time.time()
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--child", kind, json.dumps(spec)],
            cwd=tmp,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        killed = False
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
            killed = True
        ended = time.time()
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    if verbose and stderr.strip():
        print("    | " + stderr.strip()[-4000:].replace("\n", "\n    | "))
    results = [line for line in stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if not results:
        return {
            "failed": f"exit {proc.returncode}: " + (stderr.strip().splitlines() or ["?"])[-1],
            "killed": killed,
        }
    out: dict[str, Any] = json.loads(results[-1][len(RESULT_PREFIX) :])
    out.update(wall_s=ended - t0, ended=ended, killed=killed, returncode=proc.returncode)
    out["rusage"] = usage.ru_utime + usage.ru_stime  # cumulative over all children
    if kind == "profile":
        out["text"] = stdout
    return out


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, IndexError, ValueError):
        kb = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        mem = f", {kb / 1024 / 1024:.1f} GiB RAM"
    return (
        f"{model}, {os.cpu_count()} CPUs{mem}, Linux {platform.release()}, "
        f"CPython {platform.python_version()}"
    )


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    names = [
        "tracekit",
        "openai",
        "anthropic",
        "google-genai",
        "httpx2",
        "mlflow",
        "openinference-instrumentation-openai",
        "openinference-instrumentation-anthropic",
        "opentelemetry-sdk",
        "opentelemetry-instrumentation-openai-v2",
        "opentelemetry-util-genai",
    ]
    parts = []
    for name in names:
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    return ", ".join(parts)


def fmt_us(ns: float) -> str:
    return f"{ns / 1e6:,.1f} ms" if ns >= 10e6 else f"{ns / US:,.0f} µs"


def fmt_mb(mb: float) -> str:
    return f"{mb:,.0f} MB"


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick = args.quick
        self.verbose = args.verbose
        self.bodies = load_cassettes()
        self.notes: list[str] = []
        self.failures: list[str] = []
        self.latency: dict[str, dict[str, dict[str, Any]]] = {}  # transport -> case -> ...
        self.errors: dict[str, dict[str, str]] = {v: {} for v in VARIANTS}
        self.other: dict[str, dict[str, str]] = {}  # figure -> variant -> cell
        self.other_target: dict[str, str] = {}
        self.checks: dict[str, dict[str, Any]] = {}
        self.plot_data: dict[str, Any] = {}

    def wanted(self, group: str) -> bool:
        return self.args.only in group

    # -- latency ---------------------------------------------------------------
    def run_latency(self) -> None:
        from tracekit._fake_server import FakeProviderServer

        rounds = 2 if self.quick else 4
        full = {
            "openai_chat": (800, 100),
            "openai_stream": (400, 50),
            "openai_async": (10, 2),
            "anthropic_messages": (400, 50),
            "anthropic_stream": (300, 30),
            "gemini_generate": (400, 50),
        }
        scale = 8 if self.quick else 1
        for transport in ("mock",) if self.quick else ("mock", "loopback"):
            if transport == "mock" and self.bodies is None:
                self.notes.append(f"mock transport skipped: no cassettes at {CASSETTES}")
                continue
            div = scale * (2 if transport == "loopback" else 1)
            sizes = {c: (max(4, n // div), max(2, w // div)) for c, (n, w) in full.items()}
            server = FakeProviderServer().start() if transport == "loopback" else None
            per_round: list[dict[str, dict[str, Any]]] = []
            try:
                for index in range(rounds):
                    print(f"latency {transport} round {index + 1}/{rounds} ...", flush=True)
                    results = {}
                    for variant in VARIANTS:
                        spec = {
                            "variant": variant,
                            "transport": transport,
                            "base_url": server.base_url if server else "",
                            "bodies": self.bodies if transport == "mock" else None,
                            "cases": list(CASES),
                            "sizes": sizes,
                        }
                        results[variant] = run_child("latency", spec, self.verbose)
                    per_round.append(results)
            finally:
                if server is not None:
                    server.stop()
            table: dict[str, dict[str, Any]] = {}
            for case, (provider, _) in CASES.items():
                row: dict[str, Any] = {}
                bare = [
                    r["bare"]["cases"][case]["median_ns"] for r in per_round if "cases" in r["bare"]
                ]
                row["bare"] = statistics.median(bare) if bare else None
                for variant in VARIANTS[1:]:
                    failed = [
                        r[variant].get("failed") for r in per_round if r[variant].get("failed")
                    ]
                    errs = [r[variant].get("errors", {}).get(provider) for r in per_round]
                    if failed:
                        row[variant] = {"na": f"child failed: {failed[0]}"}
                    elif any(errs):
                        row[variant] = {"na": next(e for e in errs if e)}
                        self.errors[variant][provider] = next(e for e in errs if e)
                    else:
                        ratios = [
                            r[variant]["cases"][case]["median_ns"]
                            / r["bare"]["cases"][case]["median_ns"]
                            for r in per_round
                        ]
                        added = [
                            r[variant]["cases"][case]["median_ns"]
                            - r["bare"]["cases"][case]["median_ns"]
                            for r in per_round
                        ]
                        row[variant] = {
                            "ratio": statistics.median(ratios),
                            "added_ns": statistics.median(added),
                            "range": (min(ratios), max(ratios)),
                        }
                row["n"] = sizes[case][0]
                row["rounds"] = rounds
                table[case] = row
            self.latency[transport] = table

    # -- startup: import + autolog, first call, correctness ---------------------
    def run_startup(self) -> None:
        rounds = 2 if self.quick else 5
        per: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
        transport = "mock" if self.bodies else "loopback"
        from tracekit._fake_server import FakeProviderServer

        server = FakeProviderServer().start() if transport == "loopback" else None
        try:
            for index in range(rounds):
                print(f"startup round {index + 1}/{rounds} ...", flush=True)
                for variant in VARIANTS:
                    spec = {
                        "variant": variant,
                        "transport": transport,
                        "base_url": server.base_url if server else "",
                        "bodies": self.bodies,
                        "check": 20 if index == 0 else 0,
                    }
                    per[variant].append(run_child("startup", spec, self.verbose))
        finally:
            if server is not None:
                server.stop()
        bare_first = [r["first_ns"] for r in per["bare"]]
        imp, first = {}, {}
        for variant in VARIANTS:
            runs = [r for r in per[variant] if "setup_ns" in r]
            if not runs:
                imp[variant] = first[variant] = "child failed: " + per[variant][0].get("failed", "")
                continue
            if variant != "bare" and per[variant][0].get("checks"):
                self.checks[variant] = per[variant][0]["checks"]
            setup = statistics.median(r["setup_ns"] for r in runs)
            added = statistics.median(
                r["first_ns"] - b for r, b in zip(runs, bare_first, strict=False)
            )
            imp[variant] = "–" if variant == "bare" else f"{setup / 1e6:,.1f} ms"
            first[variant] = f"{statistics.median(r['first_ns'] for r in runs) / 1e6:,.1f} ms" + (
                "" if variant == "bare" else f" ({added / 1e6:+,.1f} ms)"
            )
            self.plot_data.setdefault("import_ms", {})[variant] = setup / 1e6
            if variant == "tracekit":
                self.other_target["import + autolog() (OpenAI)"] = (
                    f"≤ {TARGET_IMPORT_MS:.0f} ms: {status(setup / 1e6 <= TARGET_IMPORT_MS)}"
                )
        self.other["import + autolog() (OpenAI)"] = imp
        self.other["first traced call (OpenAI chat), added to bare"] = first
        self.other_target.setdefault("first traced call (OpenAI chat), added to bare", "none")

    # -- whole-process CPU ------------------------------------------------------
    def run_cpu(self) -> None:
        rounds = 1 if self.quick else 3
        n = 300 if self.quick else 2000
        transport = "mock" if self.bodies else "loopback"
        from tracekit._fake_server import FakeProviderServer

        server = FakeProviderServer().start() if transport == "loopback" else None
        per: dict[str, list[float]] = {v: [] for v in VARIANTS}
        failed: dict[str, str] = {}
        try:
            for index in range(rounds):
                print(f"cpu round {index + 1}/{rounds} ...", flush=True)
                for variant in VARIANTS:
                    before = resource.getrusage(resource.RUSAGE_CHILDREN)
                    spec = {
                        "variant": variant,
                        "transport": transport,
                        "base_url": server.base_url if server else "",
                        "bodies": self.bodies,
                        "n": n,
                    }
                    r = run_child("cpu", spec, self.verbose, timeout=180)
                    if r.get("failed") or r.get("killed"):
                        failed[variant] = r.get("failed") or "not done after 180 s (killed)"
                        continue
                    per[variant].append(r["rusage"] - (before.ru_utime + before.ru_stime))
        finally:
            if server is not None:
                server.stop()
        cells = {}
        bare = per["bare"]
        for variant in VARIANTS:
            if variant in failed or not per[variant]:
                cells[variant] = failed.get(variant, "failed")
                continue
            cpu = statistics.median(per[variant])
            ratio = statistics.median(v / b for v, b in zip(per[variant], bare, strict=False))
            cells[variant] = f"{cpu:.2f} s" + ("" if variant == "bare" else f" ({ratio:.2f}×)")
            self.plot_data.setdefault("cpu_ratio", {})[variant] = ratio
            if variant == "tracekit":
                self.other_target[f"whole-process CPU, {n:,} OpenAI chat calls + export"] = (
                    f"≤ 1.10× bare: {status(ratio - 1 <= TARGET_CPU)}"
                )
        self.other[f"whole-process CPU, {n:,} OpenAI chat calls + export"] = cells

    # -- memory ----------------------------------------------------------------
    def run_memory(self, stalled: StalledServer) -> None:
        n = 10_000 if self.quick else 100_000
        budget = 6 if self.quick else 30
        transport = "mock" if self.bodies else "loopback"
        from tracekit._fake_server import FakeProviderServer

        server = FakeProviderServer().start() if transport == "loopback" else None
        try:
            for destination, label in (
                ("file", "file store"),
                (stalled.url, "destination stalled"),
            ):
                figure = f"RSS after {n:,} OpenAI chat calls, {label}"
                cells = {}
                for variant in VARIANTS:
                    if destination != "file" and variant == "bare":
                        cells[variant] = "–"
                        continue
                    print(f"memory ({label}) {variant} ...", flush=True)
                    spec = {
                        "variant": variant,
                        "transport": transport,
                        "base_url": server.base_url if server else "",
                        "bodies": self.bodies,
                        "n": n,
                        "budget_s": budget,
                        "destination": destination,
                    }
                    r = run_child("memory", spec, self.verbose, timeout=budget + 60)
                    cells[variant], ok = self._memory_cell(r, n)
                    if variant == "tracekit":
                        self.other_target[figure] = (
                            f"bounded (≤ {TARGET_RSS_GROWTH_MB:.0f} MB growth over the last half, "
                            f"all calls made): {status(ok)}"
                        )
                self.other[figure] = cells
        finally:
            if server is not None:
                server.stop()

    @staticmethod
    def _memory_cell(r: dict[str, Any], n: int) -> tuple[str, bool]:
        if r.get("failed"):
            return "child failed: " + r["failed"], False
        calls = r["calls"]
        if r.get("phase") == "setup":
            return f"blocked in setup: 0 calls in {r['wall_s']:.0f} s", False
        points = r.get("rss") or []
        end = r.get("rss_end", 0.0)
        growth = None
        if len(points) >= 2:
            half = points[(len(points) - 1) // 2]
            growth = points[-1][1] - half[1]
        cell = fmt_mb(end)
        if calls < n:
            cell += f" after only {calls:,} calls" + (
                " (blocked)" if r.get("timed_out") else " (time budget)"
            )
        if growth is not None:
            cell += f"; {growth:+,.1f} MB over the last half"
        ok = calls >= n and growth is not None and growth <= TARGET_RSS_GROWTH_MB
        return cell, ok

    # -- exit ----------------------------------------------------------------------
    def run_exit(self, stalled: StalledServer) -> None:
        n = 200
        transport = "mock" if self.bodies else "loopback"
        from tracekit._fake_server import FakeProviderServer

        refused = socket.socket()
        refused.bind(("127.0.0.1", 0))
        refused_url = f"http://127.0.0.1:{refused.getsockname()[1]}"
        refused.close()  # nothing listens there: connections are refused
        server = FakeProviderServer().start() if transport == "loopback" else None
        try:
            downs = [(stalled.url, "stalled"), (refused_url, "refusing")]
            for destination, label in downs[:1] if self.quick else downs:
                figure = f"process exit after {n} calls, destination {label}"
                cells = {"bare": "–"}
                for variant in VARIANTS[1:]:
                    print(f"exit ({label}) {variant} ...", flush=True)
                    spec = {
                        "variant": variant,
                        "transport": transport,
                        "base_url": server.base_url if server else "",
                        "bodies": self.bodies,
                        "n": n,
                        "budget_s": 10,
                        "destination": destination,
                    }
                    limit = 60 if self.quick else 120
                    r = run_child("exit", spec, self.verbose, timeout=limit)
                    if r.get("failed"):
                        cells[variant] = (
                            f"> {limit} s (killed)" if r.get("killed") else "failed: " + r["failed"]
                        )
                        ok = False
                    elif r.get("blocked") and r.get("script_end"):
                        still = r["end_wall"] - r["script_end"]
                        cells[variant] = f"> {still:,.0f} s (still exiting; ended by the watchdog)"
                        ok = False
                    elif r.get("blocked"):
                        cells[variant] = f"blocked in the calls: {r['calls']} of {n} made in 30 s"
                        ok = False
                    else:
                        exit_s = r["ended"] - r["end_wall"]
                        cells[variant] = f"{exit_s:,.2f} s" + (
                            f" (killed at {limit} s)" if r["killed"] else ""
                        )
                        if r["calls"] < n:
                            cells[variant] += f"; only {r['calls']} calls in 10 s"
                        ok = exit_s <= TARGET_EXIT_S and not r["killed"]
                    if variant == "tracekit":
                        self.other_target[figure] = f"≤ {TARGET_EXIT_S:.0f} s: {status(ok)}"
                self.other[figure] = cells
        finally:
            if server is not None:
                server.stop()

    # -- report ----------------------------------------------------------------------
    def report(self, started: float, load: tuple[float, ...], install_notes: list[str]) -> str:
        from _common import revision

        today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        lines = [
            "# tracekit against the peers",
            "",
            "Regenerate with `python3 benchmarks/peers.py` (`--quick` for a smoke run); the",
            "method is in [benchmarks/README.md](../benchmarks/README.md#peers).",
            "",
            f"**{'Quick' if self.quick else 'Full'} run, {today}**, commit {revision()}, "
            f"{time.perf_counter() - started:.0f} s, load average {load[0]:.2f} before / "
            f"{os.getloadavg()[0]:.2f} after.  ",
            f"Machine: {machine()}.  ",
            f"Versions: {versions()}.",
            "",
            "![added latency and CPU against the bare SDK](benchmarks.png)",
            "",
        ]
        for transport, table in self.latency.items():
            what = (
                "in-process `httpx2.MockTransport` serving recorded response bodies "
                "(pure instrumentation cost)"
                if transport == "mock"
                else "loopback HTTP to `FakeProviderServer` (a real round trip)"
            )
            lines += [
                f"## Added median latency, {transport}: {what}",
                "",
                "| case | bare | "
                + " | ".join(TITLES[v] for v in VARIANTS[1:])
                + " | tracekit target |",
                "|---" * (len(VARIANTS) + 2) + "|",
            ]
            for case, row in table.items():
                cells = [CASES[case][1], fmt_us(row["bare"]) if row["bare"] else "failed"]
                target = "–"
                for variant in VARIANTS[1:]:
                    v = row[variant]
                    if "na" in v:
                        cells.append(f"n/a ({v['na']})" if len(v["na"]) < 70 else "n/a (see notes)")
                        continue
                    unit = "/batch" if case == "openai_async" else ""
                    cells.append(f"{v['added_ns'] / US:+,.0f} µs{unit} ({v['ratio']:.3f}×)")
                    if variant == "tracekit":
                        target = f"≤ 3%: {status(v['ratio'] - 1 <= TARGET_ADDED)}"
                self.plot_data.setdefault(f"latency_{transport}", {})[case] = {
                    v: row[v].get("ratio") for v in VARIANTS[1:]
                }
                cells.append(target)
                lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
            any_row = next(iter(table.values()))
            lines += [
                "",
                f"Cells: median over {any_row['rounds']} rounds of (variant − bare) median "
                "latency, "
                "and the median of the rounds' variant/bare ratios; each round ran every variant "
                "in a fresh process, interleaved. Samples per child: "
                + ", ".join(f"{CASES[c][1]} {r['n']:,}" for c, r in table.items())
                + ".",
                "",
            ]
        if self.other:
            lines += [
                "## Process figures",
                "",
                "| figure | " + " | ".join(TITLES[v] for v in VARIANTS) + " | tracekit target |",
                "|---" * (len(VARIANTS) + 2) + "|",
            ]
            for figure, cells in self.other.items():
                row = [figure] + [cells.get(v, "–") for v in VARIANTS]
                row.append(self.other_target.get(figure, "–"))
                lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
            lines.append("")
        if self.checks:
            lines += [
                "## Correctness: what each variant recorded",
                "",
                "20 calls per case (one gather of 50 for async), in a fresh process, then the "
                "variant's own flush; LLM spans per call, and how many of them carry input "
                "and output token counts.",
                "",
                "| case | " + " | ".join(TITLES[v] for v in VARIANTS[1:]) + " |",
                "|---" * len(VARIANTS) + "|",
            ]
            for case, (provider, title) in CASES.items():
                row = [title]
                for variant in VARIANTS[1:]:
                    c = (self.checks.get(variant) or {}).get(case)
                    if c is None:
                        row.append("not run")
                    elif provider not in COVERS[variant]:
                        row.append("not instrumented")
                    elif c["error"] and not c["llm_spans"]:
                        row.append(f"**{c['error'][:80]}**")
                    else:
                        per_call = c["llm_spans"] / c["calls"]
                        usage = c["with_usage"] / max(1, c["llm_spans"])
                        cell = f"{per_call:.2f} spans/call, usage on {usage:.0%}"
                        if per_call < 1 or usage < 1:
                            cell = f"**{cell}**"
                            self.failures.append(f"{TITLES[variant]}, {title}: {cell}")
                        row.append(cell)
                lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
            lines.append("")
        errors = [
            f"{TITLES[v]} on {p}: {e}"
            for v, per in self.errors.items()
            for p, e in per.items()
            if e != "no instrumentation for this SDK"
        ]
        notes = self.notes + install_notes + [f"setup failed: {e}" for e in errors]
        notes += [
            "Exporters: tracekit to its default file store (`./.tracekit/` in the child's "
            "temporary working directory); MLflow to `sqlite:///<tmp>/mlflow.db` through its "
            "default async trace logging queue; OpenInference and openai-v2 to an OTel SDK "
            "`TracerProvider` + `BatchSpanProcessor` (defaults) + `ConsoleSpanExporter` "
            "writing one JSON line per span to a file. Message contents are captured by "
            "every variant (`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`).",
            "Stalled destination: a socket on 127.0.0.1 in the parent that accepts "
            "connections and reads requests but never answers. tracekit: "
            "`TRACEKIT_TRACKING_URI` at it (MLflow REST protocol); MLflow: "
            "`MLFLOW_TRACKING_URI` at it; OTel variants: `OTLPSpanExporter` (HTTP/protobuf) "
            "at `<it>/v1/traces`, all with their default timeouts. Refusing: a loopback port "
            "nothing listens on.",
            "Exit time: from the last statement of the script (the child's clock) to the "
            "process being gone (the parent's clock), after 200 calls (at most 10 s of "
            "calls); a child still blocked 30 s after setup reports itself and is ended.",
            "Whole-process CPU: user + system time of the child (`wait4`), imports, the "
            "calls and the export at exit included; the ratio is to the bare child of the "
            "same round. Not measured against a tracking server in this run.",
        ]
        lines += ["## Notes", ""] + [f"- {n}" for n in notes]
        if self.failures:
            lines += ["", "**Variants that did not record every call:**", ""]
            lines += [f"- {f}" for f in self.failures]
        return "\n".join(lines) + "\n"

    def plot(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 3, figsize=(15, 4.8), gridspec_kw={"width_ratios": [3, 1, 1]})
        colors = {
            "tracekit": "#2b8a3e",
            "mlflow": "#1971c2",
            "openinference": "#e8590c",
            "otel-openai-v2": "#7048e8",
        }
        data = self.plot_data.get("latency_mock") or self.plot_data.get("latency_loopback") or {}
        ax = axes[0]
        width = 0.2
        for i, variant in enumerate(VARIANTS[1:]):
            xs, ys = [], []
            for j, case in enumerate(data):
                ratio = data[case].get(variant)
                if ratio is not None:
                    xs.append(j + (i - 1.5) * width)
                    ys.append((ratio - 1) * 100)
            ax.bar(xs, ys, width, label=TITLES[variant], color=colors[variant])
        ax.axhline(TARGET_ADDED * 100, color="black", linestyle="--", linewidth=1)
        ax.text(len(data) - 0.5, TARGET_ADDED * 100, " 3% target", va="bottom", ha="right")
        ax.set_xticks(range(len(data)))
        ax.set_xticklabels([CASES[c][1].replace(", ", ",\n") for c in data], fontsize=8)
        ax.set_ylabel("added median latency, % of bare")
        which = "mock transport" if self.plot_data.get("latency_mock") else "loopback"
        ax.set_title(f"Added latency ({which}; missing bar: not instrumented)")
        ax.legend(fontsize=8)
        for ax, key, title, unit, target in (
            (axes[1], "import_ms", "import + autolog() (OpenAI)", "ms", TARGET_IMPORT_MS),
            (axes[2], "cpu_ratio", "whole-process CPU", "× bare", 1 + TARGET_CPU),
        ):
            values = self.plot_data.get(key) or {}
            names = [v for v in VARIANTS[1:] if v in values]
            ax.bar(range(len(names)), [values[v] for v in names], color=[colors[v] for v in names])
            ax.axhline(target, color="black", linestyle="--", linewidth=1)
            ax.set_xticks(range(len(names)))
            ax.set_xticklabels([TITLES[v].replace(" ", "\n", 1) for v in names], fontsize=8)
            ax.set_ylabel(unit)
            ax.set_title(title)
            if key == "import_ms":
                ax.set_yscale("log")
        fig.suptitle(
            f"tracekit vs peers ({datetime.date.today().isoformat()}, {machine()})", fontsize=9
        )
        fig.tight_layout()
        fig.savefig(PLOT, dpi=110)


def status(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def run_profile(args: argparse.Namespace) -> int:
    bodies = load_cassettes()
    if bodies is None:
        print(f"no cassettes at {CASSETTES}: --profile needs the mock transport")
        return 1
    spec = {"variant": "tracekit", "transport": "mock", "bodies": bodies, "n": 1000}
    r = run_child("profile", spec, args.verbose)
    print(r.get("text") or r)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (about 3 minutes)")
    parser.add_argument("--only", default="", help="figure groups whose name contains this")
    parser.add_argument("--verbose", action="store_true", help="show the children's stderr")
    parser.add_argument("--no-venv", action="store_true", help="use the current interpreter")
    parser.add_argument("--profile", action="store_true", help="pyinstrument a tracekit child")
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, spec = args.child
        {
            "latency": child_latency,
            "startup": child_startup,
            "cpu": child_cpu,
            "memory": child_memory,
            "exit": child_exit,
            "profile": child_profile,
        }[kind](json.loads(spec))
        return 0

    install_notes: list[str] = []
    if not args.no_venv and Path(sys.prefix).resolve() != VENV.resolve():
        install_notes = ensure_venv()
        argv = [str(_venv_python()), str(Path(__file__).resolve()), *sys.argv[1:]]
        os.execv(argv[0], argv)  # noqa: S606 - re-run in .bench-venv/
    if not args.no_venv:
        notes_file = VENV / ".install-notes"
        if notes_file.exists():
            install_notes = [n for n in notes_file.read_text().splitlines() if n]
    if args.profile:
        return run_profile(args)

    started = time.perf_counter()
    load = os.getloadavg()
    run = Run(args)
    stalled = StalledServer()
    try:
        if run.wanted("latency"):
            run.run_latency()
        if run.wanted("startup"):
            run.run_startup()
        if run.wanted("cpu"):
            run.run_cpu()
        if run.wanted("memory"):
            run.run_memory(stalled)
        if run.wanted("exit"):
            run.run_exit(stalled)
    finally:
        stalled.close()
    report = run.report(started, load, install_notes)
    print()
    print(report, end="")
    if args.only:
        out = HERE / "results" / "peers.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report, encoding="utf-8")
        print(f"\n(--only: written to {os.path.relpath(out)}, docs/ left alone)")
    else:
        DOC.write_text(report, encoding="utf-8")
        run.plot()
        print(f"\n(written to {os.path.relpath(DOC)} and {os.path.relpath(PLOT)})")
    if run.failures:
        print("\n!! some variants did not record every call; see the correctness table")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
