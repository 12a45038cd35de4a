"""tracekit against the tracers users would pick instead, side by side, in one run.

Run it (about 15 minutes on two cores; the first run also builds .bench-venv/):

    python3 benchmarks/peers.py            # full run, writes docs/benchmarks.md and .png
    python3 benchmarks/peers.py --quick    # smoke run, under 3 minutes

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

Options: `--quick`, `--only SUBSTRING` (figure groups: latency, check, cpu, memory,
exit; the report then goes to benchmarks/results/peers.md), `--scale FACTOR` (call
counts and time budgets multiplied: `--scale 0.1` runs the full run's shape in a few
minutes), `--server`/`--no-server` (whole-process CPU against a real `mlflow server`;
default: in the full run only), `--verbose` (children's stderr), `--no-venv` (run with
the current interpreter), `--profile` (pyinstrument of a tracekit child on the mock
transport). The sizes of both runs are in PLANS below.
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
sys.path.insert(0, str(HERE))
from _common import RESULT_PREFIX, emit, revision, rss_mb  # noqa: E402

REPO = HERE.parent
VENV = REPO / ".bench-venv"
REQUIREMENTS = HERE / "peers-requirements.txt"
CASSETTES = Path(os.environ.get("TRACEKIT_CASSETTES", REPO / "tests" / "cassettes"))
DOC = REPO / "docs" / "benchmarks.md"
PLOT = REPO / "docs" / "benchmarks.png"
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
    "gemini_stream": ("gemini", "Gemini generate_content_stream"),
}
BATCH = 50
TARGET_ADDED = 0.03
TARGET_CPU = 0.10
TARGET_IMPORT_MS = 50.0
TARGET_RSS_GROWTH_MB = 5.0  # MiB, from half the calls to all of them
TARGET_EXIT_SLACK_S = 1.0  # on top of TRACEKIT_SHUTDOWN_TIMEOUT, for the interpreter's exit

# Sizes of the full run and of --quick. Call counts and time budgets are multiplied by
# --scale (a smaller full run to check the script end to end); rounds are not.
PLANS: dict[str, dict[str, Any]] = {
    "full": {
        "transports": ("mock", "loopback"),
        "latency_rounds": {"mock": 4, "loopback": 3},
        # case: (timed calls, warm-up calls) per child; loopback takes half
        "latency_sizes": {
            "openai_chat": (800, 100),
            "openai_stream": (400, 50),
            "openai_async": (10, 2),
            "anthropic_messages": (400, 50),
            "anthropic_stream": (300, 30),
            "gemini_generate": (400, 50),
            "gemini_stream": (300, 30),
        },
        "flush_wait_s": 1.0,  # at most, between a child's cases (MLflow drains slowly)
        # MLflow's calls cost 5-10 times the others': it times this share of the samples
        "mlflow_share": 0.25,
        "check_calls": 20,
        "cpu_rounds": 3,
        "cpu_calls": 300,
        "server": True,  # whole-process CPU also against a real `mlflow server`
        "server_rounds": 2,
        "memory_calls": 100_000,
        # seconds of calls per child, tracekit's and the peers' (the cells say what was
        # reached: the 100,000 calls are for the variants that can make them in time)
        "memory_budget_s": 120.0,
        "memory_budget_peers_s": 40.0,
        "exit_destinations": ("stalled", "refusing"),
        "exit_calls": 200,
        "exit_wait_s": 30.0,  # after the script's end, before a child is called stuck
        "child_budget_s": 240.0,  # any other child: killed and reported after this
    },
    "quick": {
        "transports": ("mock",),
        "latency_rounds": {"mock": 2},
        "latency_sizes": {
            "openai_chat": (100, 12),
            "openai_stream": (50, 6),
            "openai_async": (3, 1),
            "anthropic_messages": (50, 6),
            "anthropic_stream": (40, 4),
            "gemini_generate": (50, 6),
            "gemini_stream": (40, 4),
        },
        "flush_wait_s": 0.5,
        "mlflow_share": 1.0,
        "check_calls": 5,
        "cpu_rounds": 1,
        "cpu_calls": 100,
        "server": False,
        "server_rounds": 1,
        "memory_calls": 2_000,
        "memory_budget_s": 10.0,
        "memory_budget_peers_s": 10.0,
        "exit_destinations": ("stalled",),
        "exit_calls": 100,
        "exit_wait_s": 12.0,
        "child_budget_s": 90.0,
    },
}
PARALLEL = 2  # check and memory children run two at a time (see the notes in the report)
PARALLEL_EXIT = 4  # exit children mostly wait on the destination's timeouts

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
# recorded wire data: tests/cassettes (see PROVENANCE.md there)
# ---------------------------------------------------------------------------

CASSETTE_FILES = {
    "openai_chat": "openai/chat_completions_nonstream_basic.yaml",
    "openai_stream": "openai/chat_completions_stream_include_usage.yaml",
    "anthropic_messages": "anthropic/messages_nonstream_basic_gzip.yaml",
    "anthropic_stream": "anthropic/messages_stream_basic.yaml",
    "gemini_generate": "gemini/generate_content_basic.yaml",
    "gemini_stream": "gemini/stream_generate_content_sse.yaml",
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


MINIMAL_REQUEST = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
MINIMAL_CHAT = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "ok"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    }
).encode()


class Clients:
    """The three SDK clients on the chosen transport, and each case's request."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import anthropic
        import httpx2
        import openai
        from google import genai
        from google.genai import types

        self.bodies = spec.get("bodies")
        # memory children: the smallest chat completion, so 100,000 calls fit the budget
        self.minimal = bool(spec.get("minimal"))
        base = spec.get("base_url") or "http://bench.invalid"
        mock = spec["transport"] == "mock" or self.minimal
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
        if self.minimal:
            b = {"openai_chat": {"request": MINIMAL_REQUEST}}
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

        if self.minimal:
            return httpx2.Response(
                200,
                headers={"content-type": "application/json", "x-request-id": "req"},
                content=MINIMAL_CHAT,
            )
        path = request.url.path
        streaming = b'"stream":true' in request.content or b'"stream": true' in request.content
        if ":generateContent" in path:
            case = "gemini_generate"
        elif ":streamGenerateContent" in path:
            case = "gemini_stream"
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
        elif case == "gemini_stream":
            for _chunk in self.gemini.models.generate_content_stream(
                model="gemini-2.0-flash", contents="Tell me a short story about a cat."
            ):
                pass
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

    def mlflow_spans(self) -> list[tuple[str, int, bool, bool]]:
        """(span id, start in epoch ns, is an LLM span, has usage) of every MLflow span."""
        import mlflow

        found = []
        for tr in mlflow.search_traces(return_type="list", max_results=50_000):
            for span in tr.data.spans:
                usage = span.attributes.get("mlflow.chat.tokenUsage") or {}
                found.append(
                    (
                        span.span_id,
                        span.start_time_ns,
                        span.span_type in ("CHAT_MODEL", "LLM"),
                        "input_tokens" in usage and "output_tokens" in usage,
                    )
                )
        return found

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
            found = [(sid, llm, usage) for sid, _start, llm, usage in self.mlflow_spans()]
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
    _import_sdks()
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


def _import_sdks() -> None:
    """The SDKs, loaded in every variant before it instruments them (not timed)."""
    import anthropic  # noqa: F401
    import httpx2  # noqa: F401
    import openai  # noqa: F401
    from google import genai  # noqa: F401


def child_latency(spec: dict[str, Any]) -> None:
    """Import + autolog() and the first call (OpenAI), then every case, timed per call."""
    _import_sdks()
    clock = time.perf_counter_ns
    t0 = clock()
    variant = Variant(spec["variant"], os.getcwd(), "file", {"openai"})
    setup_ns = clock() - t0
    clients = Clients(spec)
    t0 = clock()
    clients.call("openai_chat")
    first_ns = clock() - t0
    t0 = clock()
    clients.call("openai_chat")
    second_ns = clock() - t0
    variant.instrument({"anthropic", "gemini"})
    out: dict[str, Any] = {
        "setup_ns": setup_ns,
        "first_ns": first_ns,
        "second_ns": second_ns,
        "cases": {},
        "undrained": [],
    }
    for case in spec["cases"]:
        n, warm = spec["sizes"][case]
        _samples(clients, case, warm)
        # the variant's flush, waited on for a bounded time (MLflow's SQLite queue drains
        # slowly), so each case starts with its exporter about idle
        flusher = threading.Thread(target=variant.flush, daemon=True)
        flusher.start()
        flusher.join(spec["flush_wait_s"])
        if flusher.is_alive():
            out["undrained"].append(case)
        gc.collect()
        times = _samples(clients, case, n)
        out["cases"][case] = {"median_ns": statistics.median(times), "n": n}
    out["errors"] = variant.errors
    emit(out)
    os._exit(0)  # the export at exit is measured by the cpu and exit children


def child_check(spec: dict[str, Any]) -> None:
    """K calls of each case (one gather of 50), the variant's flush, what it recorded."""
    variant, clients = _setup(spec)
    checks: dict[str, Any] = {}
    k = spec["check"]

    def count(case: str, spans: list[tuple[bool, bool]], error: str | None) -> None:
        checks[case] = {
            "calls": k if case != "openai_async" else BATCH,
            "llm_spans": sum(llm for llm, _ in spans),
            "with_usage": sum(llm and usage for llm, usage in spans),
            "error": error or variant.errors.get(CASES[case][0]),
        }

    # MLflow's flush and search take seconds each: one of each at the end, its spans
    # assigned to the cases by when they started; the others are read after each case
    by_time = variant.name == "mlflow"
    windows: dict[str, tuple[int, int, str | None]] = {}
    for case in CASES:
        error = None
        started = time.time_ns()
        try:
            _samples(clients, case, k if case != "openai_async" else 1)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:200]
        if by_time:
            windows[case] = (started, time.time_ns(), error)
        else:
            count(case, variant.new_spans(), error)
    if by_time:
        variant.flush()
        recorded = variant.mlflow_spans()
        for case, (started, ended, error) in windows.items():
            count(
                case,
                [(llm, usage) for _, t, llm, usage in recorded if started <= t <= ended],
                error,
            )
    emit({"checks": checks, "errors": variant.errors})
    os._exit(0)


def _tracekit_stats() -> dict[str, int] | None:
    tracekit = sys.modules.get("tracekit")
    return tracekit.get_stats() if tracekit is not None else None


def child_cpu(spec: dict[str, Any]) -> None:
    """N calls, the variant's flush, then a normal exit: the parent reads the CPU (wait4)."""
    variant, clients = _setup(spec, {"openai"})
    for _ in range(spec["n"]):
        clients.call("openai_chat")
    variant.flush()
    emit({"done": True, "errors": variant.errors, "stats": _tracekit_stats()})


def child_memory(spec: dict[str, Any]) -> None:
    """RSS while making up to N calls within a time budget (a watchdog reports a block)."""
    progress: dict[str, Any] = {"calls": 0, "phase": "setup", "rss": [], "rss_start": rss_mb()}
    started = time.monotonic()

    def watchdog() -> None:
        time.sleep(spec["budget_s"] + 30)
        progress["timed_out"] = True
        progress["rss_end"] = rss_mb()
        emit(progress)
        os._exit(0)

    threading.Thread(target=watchdog, daemon=True).start()
    variant, clients = _setup({**spec, "minimal": True}, {"openai"})
    progress["phase"] = "calls"
    gc.collect()
    progress["rss_start"] = rss_mb()
    # RSS every tenth of the calls, at most every 1,000 (a slow variant that runs out of
    # budget still has points), and when the budget runs out
    step = max(1, min(spec["n"] // 10, 1_000))
    deadline = time.monotonic() + spec["budget_s"]
    call = clients.call
    clock = time.monotonic
    for i in range(1, spec["n"] + 1):
        call("openai_chat")
        out_of_time = clock() > deadline
        if i % step == 0 or out_of_time:
            progress["calls"] = i
            gc.collect()
            progress["rss"].append([i, rss_mb()])
            if out_of_time:
                break
    progress["calls_s"] = time.monotonic() - started
    progress["phase"] = "done"
    progress["rss_end"] = rss_mb()
    progress["errors"] = variant.errors
    progress["stats"] = _tracekit_stats()
    emit(progress)
    os._exit(0)  # the exit is measured elsewhere; do not wait for a stalled export here


def child_exit(spec: dict[str, Any]) -> None:
    """Some calls, then the end of the script: the parent times how long the exit takes."""
    progress: dict[str, Any] = {"calls": 0}

    def watchdog(after: float, code: int, **extra: Any) -> None:
        time.sleep(after)
        if code == 3 and "script_end" in progress:
            return  # the calls ended; the exit has its own watchdog
        emit({**progress, **extra})
        os._exit(code)

    blocked = threading.Thread(
        target=watchdog, args=(spec["budget_s"] + 30, 3), kwargs={"blocked": True}, daemon=True
    )
    blocked.start()
    _variant, clients = _setup(spec, {"openai"})
    deadline = time.monotonic() + spec["budget_s"]
    for i in range(1, spec["n"] + 1):
        clients.call("openai_chat")
        progress["calls"] = i
        if time.monotonic() > deadline:
            break
    progress["script_end"] = time.time()
    emit({**progress, "blocked": False})
    # still exiting after exit_wait_s: say so and end (daemon threads run during atexit)
    threading.Thread(
        target=watchdog, args=(spec["exit_wait_s"], 4), kwargs={"stuck": True}, daemon=True
    ).start()


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
        # no download of MLflow's model price list: offline it stalls the export of each
        # provider's first trace for several seconds (online it is one fetch per process)
        env["MLFLOW_MODEL_CATALOG_URI"] = ""
    # message contents on the OTel spans, as tracekit and MLflow record them
    env["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "true"
    return env


def run_child(
    kind: str,
    spec: dict[str, Any],
    verbose: bool,
    timeout: float = 600,
    env_extra: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run one child in a fresh temporary directory; its result, wall time and own CPU.

    The CPU is this child's alone (`wait4` on its pid), so children may run in parallel.
    A child still running after `timeout` seconds is killed (`killed` in the result).
    """
    with tempfile.TemporaryDirectory(prefix="peers-bench-") as tmp:
        env = child_env(spec["variant"], tmp, spec.get("destination", "file"))
        env.update(env_extra or {})
        t0 = time.time()
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--child", kind, json.dumps(spec)],
            cwd=tmp,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        streams: dict[str, str] = {}
        readers = [
            threading.Thread(target=lambda f=f, k=k: streams.__setitem__(k, f.read()), daemon=True)
            for k, f in (("out", proc.stdout), ("err", proc.stderr))
        ]
        for reader in readers:
            reader.start()
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            with contextlib.suppress(OSError):
                proc.kill()

        timer = threading.Timer(timeout, kill)
        timer.start()
        _pid, wait_status, usage = os.wait4(proc.pid, 0)
        ended = time.time()
        timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(wait_status)
        for reader in readers:
            reader.join(5)
    stdout, stderr = streams.get("out", ""), streams.get("err", "")
    if verbose and stderr.strip():
        print("    | " + stderr.strip()[-4000:].replace("\n", "\n    | "))
    label = f"{kind} {spec['variant']}" + (f" ({spec['label']})" if spec.get("label") else "")
    results = [line for line in stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if not results:
        print(f"    {label}: no result after {ended - t0:.1f} s", flush=True)
        last = (stderr.strip().splitlines() or ["?"])[-1][:200]
        return {
            "failed": f"time budget ({timeout:.0f} s) ran out, killed"
            if killed.is_set()
            else f"exit {proc.returncode}: {last}",
            "killed": killed.is_set(),
            "wall_s": ended - t0,
        }
    print(f"    {label}: {ended - t0:.1f} s", flush=True)
    out: dict[str, Any] = json.loads(results[-1][len(RESULT_PREFIX) :])
    out.update(wall_s=ended - t0, ended=ended, killed=killed.is_set(), returncode=proc.returncode)
    out["cpu_s"] = usage.ru_utime + usage.ru_stime
    if kind == "profile":
        out["text"] = stdout
    return out


def run_parallel(jobs: list[tuple[Any, ...]], workers: int = PARALLEL) -> list[dict[str, Any]]:
    """run_child(*job) for each job, `workers` at a time; results in the jobs' order."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda job: run_child(*job), jobs))


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


def count_traces(server: Any, experiment_id: str) -> int | None:
    """Traces of an experiment in the MLflow server's SQLite store (None: unreadable)."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(server.workdir / "mlflow.db", timeout=30)) as db:
            row = db.execute(
                "SELECT COUNT(*) FROM trace_info WHERE experiment_id = ?", (int(experiment_id),)
            ).fetchone()
    except sqlite3.Error:
        return None
    return int(row[0])


def mlflow_server() -> Any:
    """tests/mlflow_server.py, imported from its path (the repository's tests/ is no
    package, and a `tests` package installed in the venv must not shadow it)."""
    import importlib.util

    if "peers_mlflow_server" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "peers_mlflow_server", REPO / "tests" / "mlflow_server.py"
        )
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["peers_mlflow_server"] = module
        spec.loader.exec_module(module)
    return sys.modules["peers_mlflow_server"]


def tracekit_default(name: str) -> Any:
    """A default of tracekit's configuration (`shutdown_timeout`, `max_queued_spans`)."""
    from tracekit._config import Config

    return Config.__dataclass_fields__[name].default


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick = args.quick
        self.verbose = args.verbose
        self.plan = dict(PLANS["quick" if args.quick else "full"])
        self.scale = args.scale
        if args.server is not None:
            self.plan["server"] = args.server
        self.bodies = load_cassettes()
        self.transport = "mock" if self.bodies else "loopback"
        self.notes: list[str] = []
        self.failures: list[str] = []
        self.latency: dict[str, dict[str, dict[str, Any]]] = {}  # transport -> case -> ...
        self.errors: dict[str, dict[str, str]] = {v: {} for v in VARIANTS}
        self.other: dict[str, dict[str, str]] = {}  # figure -> variant -> cell
        self.other_target: dict[str, str] = {}
        self.checks: dict[str, dict[str, Any]] = {}  # variant -> case -> counts
        self.check_failed: dict[str, str] = {}  # variant -> why the check child failed
        self.plot_data: dict[str, Any] = {}
        self.group_s: dict[str, float] = {}
        self.fake: Any = None  # FakeProviderServer, when the loopback transport is in use

    def wanted(self, group: str) -> bool:
        return self.args.only in group

    def calls(self, n: int, least: int = 1) -> int:
        return max(least, round(n * self.scale))

    def budget(self, seconds: float) -> float:
        return max(1.0, seconds * self.scale)

    def spec(self, variant: str, **extra: Any) -> dict[str, Any]:
        """A child's spec on the figures' transport (mock if the cassettes are there)."""
        if self.transport == "loopback" and self.fake is None:
            from tracekit._fake_server import FakeProviderServer

            self.fake = FakeProviderServer(max_requests=100).start()  # the log is not read
        return {
            "variant": variant,
            "transport": self.transport,
            "base_url": self.fake.base_url if self.fake is not None else "",
            "bodies": self.bodies,
            **extra,
        }

    def close(self) -> None:
        if self.fake is not None:
            self.fake.stop()

    # -- latency, and import + autolog and the first call from the same children ---------
    def run_latency(self) -> None:
        from tracekit._fake_server import FakeProviderServer

        first_transport = True
        for transport in self.plan["transports"]:
            if transport == "mock" and self.bodies is None:
                self.notes.append(f"mock transport skipped: no cassettes at {CASSETTES}")
                continue
            rounds = self.plan["latency_rounds"][transport]
            div = 2 if transport == "loopback" else 1
            sizes = {
                c: (self.calls(n // div, 4), self.calls(w // div, 1))
                for c, (n, w) in self.plan["latency_sizes"].items()
            }
            share = self.plan["mlflow_share"]
            mlflow_sizes = {c: (max(4, round(n * share)), w) for c, (n, w) in sizes.items()}
            server = (
                FakeProviderServer(max_requests=100).start() if transport == "loopback" else None
            )
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
                            "sizes": sizes if variant != "mlflow" else mlflow_sizes,
                            "flush_wait_s": self.plan["flush_wait_s"],
                        }
                        budget = self.plan["child_budget_s"]
                        results[variant] = run_child("latency", spec, self.verbose, budget)
                    per_round.append(results)
            finally:
                if server is not None:
                    server.stop()
            self.latency[transport] = self._latency_table(per_round, sizes, rounds)
            if first_transport:
                self._startup_rows(per_round, transport)
                first_transport = False
            undrained = {
                v: sorted({c for r in per_round for c in r[v].get("undrained", [])})
                for v in VARIANTS
            }
            for variant, cases in undrained.items():
                if cases:
                    self.notes.append(
                        f"{TITLES[variant]}, {transport}: its export had not drained "
                        f"{self.plan['flush_wait_s']:g} s after the warm-up of "
                        + ", ".join(CASES[c][1] for c in cases)
                        + ", so those cases were timed while it was still exporting."
                    )

    def _latency_table(
        self, per_round: list[dict[str, dict[str, Any]]], sizes: dict[str, Any], rounds: int
    ) -> dict[str, dict[str, Any]]:
        table: dict[str, dict[str, Any]] = {}
        for case, (provider, _) in CASES.items():
            row: dict[str, Any] = {}
            ok_rounds = [r for r in per_round if "cases" in r["bare"]]
            bare = [r["bare"]["cases"][case]["median_ns"] for r in ok_rounds]
            row["bare"] = statistics.median(bare) if bare else None
            for variant in VARIANTS[1:]:
                failed = [r[variant]["failed"] for r in per_round if r[variant].get("failed")]
                errs = [r[variant].get("errors", {}).get(provider) for r in per_round]
                if failed:
                    row[variant] = {"na": f"not measured: {failed[0]}"}
                elif any(errs):
                    row[variant] = {"na": next(e for e in errs if e)}
                    self.errors[variant][provider] = next(e for e in errs if e)
                elif not ok_rounds:
                    row[variant] = {"na": "the bare child failed"}
                else:
                    pairs = [
                        (
                            r[variant]["cases"][case]["median_ns"],
                            r["bare"]["cases"][case]["median_ns"],
                        )
                        for r in ok_rounds
                    ]
                    ratios = [v / b for v, b in pairs]
                    row[variant] = {
                        "ratio": statistics.median(ratios),
                        "added_ns": statistics.median(v - b for v, b in pairs),
                        "range": (min(ratios), max(ratios)),
                    }
            row["n"] = sizes[case][0]
            row["rounds"] = rounds
            table[case] = row
        return table

    def _startup_rows(self, per_round: list[dict[str, dict[str, Any]]], transport: str) -> None:
        imp_fig = "import + autolog() (OpenAI)"
        first_fig = f"first traced call (OpenAI chat, {transport}), added to bare"
        imp: dict[str, str] = {}
        first: dict[str, str] = {}
        for variant in VARIANTS:
            pairs = [
                (r[variant], r["bare"])
                for r in per_round
                if "setup_ns" in r[variant] and "setup_ns" in r["bare"]
            ]
            if not pairs:
                failed = next((r[variant].get("failed") for r in per_round), None) or "?"
                imp[variant] = first[variant] = "child failed: " + failed
                continue
            setup = statistics.median(v["setup_ns"] for v, _ in pairs) / 1e6
            first_ms = statistics.median(v["first_ns"] for v, _ in pairs) / 1e6
            added = statistics.median(v["first_ns"] - b["first_ns"] for v, b in pairs) / 1e6
            second = statistics.median(v["second_ns"] for v, _ in pairs) / 1e6
            imp[variant] = "– (no instrumentation)" if variant == "bare" else f"{setup:,.1f} ms"
            first[variant] = f"{first_ms:,.1f} ms" + (
                f" (second call {second:,.2f} ms)"
                if variant == "bare"
                else f" ({added:+,.1f} ms; second call {second:,.2f} ms)"
            )
            if variant != "bare":
                self.plot_data.setdefault("import_ms", {})[variant] = setup
            if variant == "tracekit":
                ok = setup <= TARGET_IMPORT_MS
                self.other_target[imp_fig] = f"< {TARGET_IMPORT_MS:.0f} ms: {status(ok)}"
        self.other[imp_fig] = imp
        self.other[first_fig] = first
        self.other_target[first_fig] = "none"

    # -- correctness -----------------------------------------------------------------
    def run_check(self) -> None:
        print("correctness ...", flush=True)
        k = self.calls(self.plan["check_calls"], 2)
        # MLflow's check is the longest (its flush and search take seconds): it goes first
        traced = sorted(VARIANTS[1:], key=lambda v: v != "mlflow")
        jobs = [
            ("check", self.spec(v, check=k), self.verbose, self.plan["child_budget_s"])
            for v in traced
        ]
        for variant, r in zip(traced, run_parallel(jobs), strict=True):
            if r.get("failed"):
                self.check_failed[variant] = r["failed"]
            else:
                self.checks[variant] = r["checks"]
        self.check_calls = k

    def check_problem(self, variant: str, case: str) -> str | None:
        """Why this variant's recording of this case falls short (None: it does not)."""
        if variant in self.check_failed:
            return "check failed"
        c = (self.checks.get(variant) or {}).get(case)
        if c is None or CASES[case][0] not in COVERS[variant]:
            return None
        if not c["llm_spans"]:
            return "records nothing" + (f" ({c['error'][:60]})" if c["error"] else "")
        per_call = c["llm_spans"] / c["calls"]
        if per_call < 1:
            return f"{per_call:.2f} spans/call"
        if c["with_usage"] < c["llm_spans"]:
            return f"usage on {c['with_usage'] / c['llm_spans']:.0%}"
        return None

    def _check_row(self) -> None:
        figure = "correctness: LLM spans per call, token usage (every case it covers)"
        cells = {"bare": "– (not traced)"}
        for variant in VARIANTS[1:]:
            if variant in self.check_failed:
                cells[variant] = f"**not measured: {self.check_failed[variant]}**"
                continue
            if variant not in self.checks:
                cells[variant] = "not run"
                continue
            covered = [c for c, (p, _) in CASES.items() if p in COVERS[variant]]
            problems = [
                f"{CASES[c][1]}: {why}" for c in covered if (why := self.check_problem(variant, c))
            ]
            spans = {
                self.checks[variant][c]["llm_spans"] / self.checks[variant][c]["calls"]
                for c in covered
            }
            per_call = "–".join(f"{s:g}" for s in sorted(spans))
            cell = (
                f"**{'; '.join(problems)}**"
                if problems
                else f"OK: {per_call} span{'s' if max(spans) > 1 else ''}/call, usage on all "
                f"({len(covered)} cases)"
            )
            missing = sorted({p for p, _ in CASES.values()} - COVERS[variant])
            if missing:
                cell += f"; {', '.join(missing)} not instrumented"
            cells[variant] = cell
            if variant == "tracekit":
                self.other_target[figure] = f"1 span/call, usage on all: {status(not problems)}"
        self.other[figure] = cells

    # -- whole-process CPU -------------------------------------------------------------
    def run_cpu(self) -> None:
        n = self.calls(self.plan["cpu_calls"], 10)
        self._cpu("file", "file store", VARIANTS, self.plan["cpu_rounds"], n, {})
        if not self.plan["server"]:
            self.notes.append(
                "Whole-process CPU against a tracking server: not measured in this run "
                "(the full run does it; `--server` adds it to `--quick`)."
            )
            return
        try:
            server, python = self._start_mlflow_server()
        except Exception as exc:
            figure = f"whole-process CPU, {n:,} OpenAI chat calls + export, MLflow server"
            self.other[figure] = dict.fromkeys(VARIANTS, "–")
            self.other[figure]["tracekit"] = f"**not measured: {str(exc)[:120]}**"
            return
        try:
            self._cpu(
                server.url,
                "MLflow tracking server",
                VARIANTS,
                self.plan["server_rounds"],
                n,
                {},
                server,
            )
        finally:
            server.stop()
        self.notes.append(
            f"MLflow tracking server: `mlflow server` ({python}), SQLite store, one worker, "
            "on 127.0.0.1, started with tests/mlflow_server.py; each child sends to its own "
            "experiment (tracekit and MLflow: `MLFLOW_EXPERIMENT_ID`; the OTel variants: "
            "OTLP/HTTP to its `/v1/traces` with the `x-mlflow-experiment-id` header) and "
            "waits for its export with the variant's flush before exiting; the cell's "
            "traces are counted in the server's database afterwards. The server's own CPU "
            "is not in the figure."
        )

    def _start_mlflow_server(self) -> tuple[Any, Path]:
        from importlib.metadata import version

        ms = mlflow_server()
        print("starting mlflow server ...", flush=True)
        # this venv's mlflow is the same pin as tests' .mlflow-venv: no second install
        python = Path(sys.executable)
        if f"mlflow=={version('mlflow')}" != ms.MLFLOW_REQUIREMENT:
            python = ms.mlflow_python()
        # its own temporary directory (SQLite store), removed when it stops
        server = ms.MlflowServer(python, startup_timeout=120)
        server.start()
        return server, python

    def _cpu(
        self,
        destination: str,
        label: str,
        variants: list[str],
        rounds: int,
        n: int,
        extra: dict[str, Any],
        server: Any = None,
    ) -> None:
        figure = f"whole-process CPU, {n:,} OpenAI chat calls + export, {label}"
        per: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
        failed: dict[str, str] = {}
        counted: dict[str, list[str]] = {v: [] for v in variants}
        for index in range(rounds):
            print(f"cpu ({label}) round {index + 1}/{rounds} ...", flush=True)
            bare_cpu = None
            for variant in variants:
                env: dict[str, str] = {}
                experiment = None
                if server is not None and variant != "bare":
                    experiment = mlflow_server().create_experiment(
                        server.url, f"{variant}-{index}-{time.time()}"
                    )
                    env = {
                        "MLFLOW_EXPERIMENT_ID": experiment,
                        "TRACEKIT_EXPERIMENT_ID": experiment,
                        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": f"x-mlflow-experiment-id={experiment}",
                    }
                spec = self.spec(variant, n=n, destination=destination, label=label, **extra)
                budget = self.budget(self.plan["child_budget_s"])
                r = run_child("cpu", spec, self.verbose, budget, env)
                if r.get("failed"):
                    failed[variant] = r["failed"]
                    continue
                if variant == "bare":
                    bare_cpu = r["cpu_s"]
                if bare_cpu is not None:
                    per[variant].append((r["cpu_s"], r["cpu_s"] / bare_cpu))
                if experiment is not None:
                    got = count_traces(server, experiment)
                    counted[variant].append(f"{got:,}/{n:,}" if got is not None else "?")
                stats = r.get("stats") or {}
                drops = {
                    k: v
                    for k, v in stats.items()
                    if v and k not in ("traces_in_flight", "traces_queued", "spooled")
                }
                if drops:
                    counted[variant].append("dropped " + json.dumps(drops))
        cells = {}
        for variant in variants:
            if not per[variant]:
                cells[variant] = f"**not measured: {failed.get(variant, 'the bare child failed')}**"
                continue
            cpu = statistics.median(c for c, _ in per[variant])
            ratio = statistics.median(r for _, r in per[variant])
            cells[variant] = f"{cpu:.2f} s" + ("" if variant == "bare" else f" ({ratio:.2f}×)")
            if counted[variant]:
                cells[variant] += "; traces on the server: " + ", ".join(
                    sorted(set(counted[variant]))
                )
            if variant in failed:
                cells[variant] += f"; a round failed: {failed[variant]}"
            if destination == "file":
                self.plot_data.setdefault("cpu_ratio", {})[variant] = ratio
            if variant == "tracekit":
                self.other_target[figure] = f"≤ 1.10× bare: {status(ratio - 1 <= TARGET_CPU)}"
        self.other[figure] = cells

    # -- memory ----------------------------------------------------------------------
    def run_memory(self, stalled: StalledServer) -> None:
        n = self.calls(self.plan["memory_calls"], 100)
        budgets = {v: self.budget(self.plan["memory_budget_peers_s"]) for v in VARIANTS}
        budgets["tracekit"] = self.budget(self.plan["memory_budget_s"])
        # bare is the baseline: a tenth of the calls is enough to show a flat line
        sizes = dict.fromkeys(VARIANTS, n) | {"bare": max(100, n // 10)}
        destinations = [("file", "file store"), (stalled.url, "destination stalled")]
        quick_skip = {"mlflow", "openinference", "otel-openai-v2"} if self.quick else set()
        jobs, keys = [], []
        for destination, label in destinations:
            for variant in VARIANTS:
                if (destination != "file" and variant == "bare") or variant in quick_skip:
                    continue
                budget = budgets[variant]
                spec = self.spec(
                    variant, n=sizes[variant], budget_s=budget, destination=destination, label=label
                )
                jobs.append(("memory", spec, self.verbose, budget + 90))
                keys.append((label, variant))
        # the longest first, two at a time: RSS does not depend on sharing the cores
        order = sorted(range(len(jobs)), key=lambda i: keys[i][1] != "tracekit")
        print(f"memory: {len(jobs)} children, {PARALLEL} at a time ...", flush=True)
        results = dict(
            zip([keys[i] for i in order], run_parallel([jobs[i] for i in order]), strict=True)
        )
        for _destination, label in destinations:
            figure = f"RSS after {n:,} OpenAI chat calls (minimal body), {label}"
            cells = {}
            for variant in VARIANTS:
                r = results.get((label, variant))
                if r is None:
                    cells[variant] = "–" if variant == "bare" else "not measured: --quick"
                    continue
                cells[variant], ok = self._memory_cell(r, sizes[variant], budgets[variant])
                if variant == "tracekit":
                    reached = (r.get("rss") or [[0]])[-1][0] >= n
                    verdict = status(ok) if reached or r.get("failed") else "not measured (budget)"
                    bound = tracekit_default("max_queued_spans")
                    if label != "file store" and n // 2 < bound and not ok:
                        # its queue is still filling: the plateau needs more calls
                        verdict = (
                            f"not shown: {n // 2:,} calls do not fill its {bound:,}-span queue"
                        )
                    self.other_target[figure] = (
                        f"bounded: ≤ {TARGET_RSS_GROWTH_MB:.0f} MiB from {n // 2:,} to {n:,} "
                        f"calls: {verdict}"
                    )
            self.other[figure] = cells

    @staticmethod
    def _memory_cell(r: dict[str, Any], n: int, budget: float) -> tuple[str, bool]:
        if r.get("failed"):
            return f"**not measured: {r['failed']}**", False
        if r.get("phase") == "setup":
            return f"**blocked in setup: 0 calls in {r['wall_s']:.0f} s**", False
        points = r.get("rss") or []
        calls = points[-1][0] if points else 0
        if len(points) < 2:
            return f"**not measured: time budget ({calls:,} calls in {budget:.0f} s)**", False
        half = next(p for p in points if p[0] >= calls // 2)
        growth = points[-1][1] - half[1]
        bounded = growth <= TARGET_RSS_GROWTH_MB
        cell = (
            f"{points[-1][1]:,.0f} MiB (+{points[-1][1] - r['rss_start']:,.1f} over the calls); "
            f"{growth:+,.1f} MiB from {half[0]:,} to {calls:,}: "
            + ("bounded" if bounded else "**growing**")
        )
        if r.get("timed_out"):
            cell += f"; **blocked after {calls:,} calls**"
        elif calls < n:
            cell += f"; {calls:,} of {n:,} calls in the {budget:.0f} s budget"
        return cell, calls >= n and bounded

    # -- exit --------------------------------------------------------------------------
    def run_exit(self, stalled: StalledServer) -> None:
        n = self.calls(self.plan["exit_calls"], 10)
        wait = self.plan["exit_wait_s"]
        target = tracekit_default("shutdown_timeout") + TARGET_EXIT_SLACK_S
        refused = socket.socket()
        refused.bind(("127.0.0.1", 0))
        refused_url = f"http://127.0.0.1:{refused.getsockname()[1]}"
        refused.close()  # nothing listens there: connections are refused
        urls = {"stalled": stalled.url, "refusing": refused_url}
        jobs, keys = [], []
        for label in self.plan["exit_destinations"]:
            for variant in VARIANTS[1:]:
                spec = self.spec(
                    variant,
                    n=n,
                    budget_s=10,
                    exit_wait_s=wait,
                    destination=urls[label],
                    label=f"destination {label}",
                )
                jobs.append(("exit", spec, self.verbose, 10 + wait + 60))
                keys.append((label, variant))
        print(f"exit: {len(jobs)} children, {PARALLEL_EXIT} at a time ...", flush=True)
        results = dict(zip(keys, run_parallel(jobs, PARALLEL_EXIT), strict=True))
        for label in self.plan["exit_destinations"]:
            figure = f"process exit after {n} calls, destination {label}"
            cells = {"bare": "–"}
            for variant in VARIANTS[1:]:
                r = results[(label, variant)]
                ok = False
                if r.get("failed"):
                    cells[variant] = f"**not measured: {r['failed']}**"
                elif r.get("stuck"):
                    cells[variant] = f"**> {wait:.0f} s** (still exiting; ended by its watchdog)"
                elif r.get("blocked"):
                    cells[variant] = f"**blocked in the calls: {r['calls']} of {n} made**"
                else:
                    exit_s = r["ended"] - r["script_end"]
                    cells[variant] = f"{exit_s:,.2f} s"
                    if r["calls"] < n:
                        cells[variant] += f"; only {r['calls']} calls in 10 s"
                    ok = exit_s <= target
                if variant == "tracekit":
                    self.other_target[figure] = f"≤ {target:g} s: {status(ok)}"
            self.other[figure] = cells

    # -- report ----------------------------------------------------------------------
    def report(self, started: float, load: tuple[float, ...], install_notes: list[str]) -> str:
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
                        if v["na"].startswith("not measured"):
                            cells.append(f"**{v['na']}**")
                        else:
                            cells.append(f"n/a ({v['na'][:70]})")
                        continue
                    unit = "/batch" if case == "openai_async" else ""
                    cell = f"{v['added_ns'] / US:+,.0f} µs{unit} ({v['ratio']:.3f}×)"
                    problem = self.check_problem(variant, case)
                    if problem:  # a variant that records less looks cheaper than it is
                        cell += f" **⚠ {problem}**"
                    cells.append(cell)
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
                + (
                    f"; MLflow autolog times {self.plan['mlflow_share']:.0%} of them (its calls "
                    "cost several times the others', and the run must stay within its time)."
                    if self.plan["mlflow_share"] < 1
                    else "."
                ),
                "",
            ]
        if self.checks or self.check_failed:
            self._check_row()
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
                f"{self.check_calls} calls per case (one gather of 50 for async), in a fresh "
                "process per variant, each case followed by the variant's own flush and a read "
                "of what it recorded; LLM spans per call, and how many of them carry input and "
                "output token counts. A shortfall is in bold here and beside the variant's "
                "latency (⚠), which would otherwise look cheaper than it is.",
                "",
                "| case | " + " | ".join(TITLES[v] for v in VARIANTS[1:]) + " |",
                "|---" * len(VARIANTS) + "|",
            ]
            for case, (provider, title) in CASES.items():
                row = [title]
                for variant in VARIANTS[1:]:
                    c = (self.checks.get(variant) or {}).get(case)
                    if variant in self.check_failed:
                        row.append(f"**not measured: {self.check_failed[variant][:80]}**")
                    elif c is None:
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
        p = self.plan
        notes += [
            "Time per group of figures: "
            + ", ".join(f"{g} {t:.0f} s" for g, t in self.group_s.items())
            + (
                f"; call counts and budgets scaled by {self.scale:g} (`--scale`)"
                if self.scale != 1
                else ""
            )
            + ".",
            "Import + autolog() and the first call: timed at the start of every latency child "
            "of the first transport (SDKs already imported), median over its rounds; the "
            "first call's difference is to bare's first call in the same round. bare's first "
            "call includes the SDK's own lazy imports, which an instrumentation's setup may "
            "already have done: setup + first call is the comparable total.",
            "Exporters: tracekit to its default file store (`./.tracekit/` in the child's "
            "temporary working directory); MLflow to `sqlite:///<tmp>/mlflow.db` through its "
            "default async trace logging queue, with `MLFLOW_MODEL_CATALOG_URI=` (no price-list "
            "download, which offline stalls each provider's first export); OpenInference "
            "and openai-v2 to an OTel SDK "
            "`TracerProvider` + `BatchSpanProcessor` (defaults) + `ConsoleSpanExporter` "
            "writing one JSON line per span to a file. Message contents are captured by "
            "every variant (`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`).",
            "Stalled destination: a socket on 127.0.0.1 in the parent that accepts "
            "connections and reads requests but never answers. tracekit: "
            "`TRACEKIT_TRACKING_URI` at it (MLflow REST protocol); MLflow: "
            "`MLFLOW_TRACKING_URI` at it; OTel variants: `OTLPSpanExporter` (HTTP/protobuf) "
            "at `<it>/v1/traces`, all with their default timeouts. Refusing: a loopback port "
            "nothing listens on.",
            f"Exit time: from the last statement of the script (the child's clock) to the "
            f"process being gone (`wait4` returning in the parent), after "
            f"{self.calls(p['exit_calls'], 10)} calls (at most 10 s of them); a child still "
            f"exiting {p['exit_wait_s']:.0f} s after its script ended is ended by its own "
            "watchdog and shown as more than that. Exit children run "
            f"{PARALLEL_EXIT} at a time: their time is spent waiting on the destination.",
            "Whole-process CPU: user + system time of the child alone (`wait4` on its pid): "
            "imports, the calls, the variant's flush (its whole export) and the exit; the "
            "ratio is to the bare child of the same round, median over rounds.",
            f"Memory: a separate cheap path so that {self.calls(p['memory_calls'], 100):,} "
            "calls fit: the mock transport answering every call with a minimal chat "
            "completion (`MINIMAL_CHAT`), VmRSS after `gc.collect()` every tenth of the calls "
            "(at most every 1,000) and when the budget ran out; at most "
            f"{self.budget(p['memory_budget_s']):.0f} s of calls for tracekit and "
            f"{self.budget(p['memory_budget_peers_s']):.0f} s for the others per child (the "
            "cell says how many were reached); bounded means at most "
            f"{TARGET_RSS_GROWTH_MB:.0f} MiB of growth from half the calls to all of them. "
            "bare makes a tenth of the calls (the baseline). Memory children run two at a "
            "time (RSS does not depend on sharing the cores)"
            + (
                "; `--quick` measures tracekit and bare only, with too few calls to reach "
                f"tracekit's queue bound ({tracekit_default('max_queued_spans'):,} spans) with "
                "the destination stalled, so growth there is expected: the full run's "
                "100,000 calls show the plateau."
                if self.quick
                else "."
            ),
            "Correctness children run two at a time (counts, not timings).",
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
        highest = 10.0
        for i, variant in enumerate(VARIANTS[1:]):
            xs, ys, hatches = [], [], []
            for j, case in enumerate(data):
                ratio = data[case].get(variant)
                if ratio is not None:
                    xs.append(j + (i - 1.5) * width)
                    ys.append((ratio - 1) * 100)
                    hatches.append("//" if self.check_problem(variant, case) else "")
            highest = max([highest, *ys])
            bars = ax.bar(xs, ys, width, label=TITLES[variant], color=colors[variant])
            for bar, hatch in zip(bars, hatches, strict=True):
                bar.set_hatch(hatch)
        ax.axhline(TARGET_ADDED * 100, color="black", linestyle="--", linewidth=1)
        ax.text(len(data) - 0.5, TARGET_ADDED * 100, " 3% target", va="bottom", ha="right")
        # symlog: MLflow's hundreds of percent and the few percent of the others both show
        ax.set_yscale("symlog", linthresh=10)
        ax.set_ylim(top=highest * 4)  # room for the legend above the bars
        ax.set_xticks(range(len(data)))
        ax.set_xticklabels([CASES[c][1].replace(" ", "\n", 2) for c in data], fontsize=8)
        ax.set_ylabel("added median latency, % of bare (symlog)")
        which = "mock transport" if self.plot_data.get("latency_mock") else "loopback"
        ax.set_title(
            f"Added latency ({which}; no bar: not instrumented; hatched: records less)",
            fontsize=10,
        )
        ax.legend(fontsize=8, ncol=4, loc="upper left")
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
    parser.add_argument(
        "--only",
        default="",
        help="figure groups whose name contains this: latency (also import + autolog and the "
        "first call), check, cpu, memory, exit; the report goes to benchmarks/results/",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply call counts and time budgets (e.g. 0.1: the full run's shape, shrunk)",
    )
    parser.add_argument(
        "--server",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="whole-process CPU against a real mlflow server too (default: full run only)",
    )
    parser.add_argument("--verbose", action="store_true", help="show the children's stderr")
    parser.add_argument("--no-venv", action="store_true", help="use the current interpreter")
    parser.add_argument("--profile", action="store_true", help="pyinstrument a tracekit child")
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, spec = args.child
        {
            "latency": child_latency,
            "check": child_check,
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
    groups = {
        "latency": run.run_latency,
        "check": run.run_check,
        "cpu": run.run_cpu,
        "memory": lambda: run.run_memory(stalled),
        "exit": lambda: run.run_exit(stalled),
    }
    try:
        for group, measure in groups.items():
            if run.wanted(group):
                t0 = time.perf_counter()
                measure()
                run.group_s[group] = time.perf_counter() - t0
    finally:
        stalled.close()
        run.close()
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
    sys.exit(main())
