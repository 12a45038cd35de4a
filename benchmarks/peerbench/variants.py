"""The variants: each one's instrumentation, flush and read-back, and its child's environment."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from _common import child_env as clean_env
from peerbench.workload import Clients, import_sdks

VARIANTS = ["bare", "tracekit", "mlflow", "openinference", "otel-openai-v2"]
CONTROL = "control"  # bare again, in its own child: the bare-vs-bare noise floor
TITLES = {
    "bare": "bare SDK",
    "tracekit": "tracekit",
    "mlflow": "MLflow autolog",
    "openinference": "OpenInference",
    "otel-openai-v2": "OTel openai-v2",
    CONTROL: "control: bare again",
}
# which providers each variant instruments
COVERS = {
    "bare": {"openai", "anthropic", "gemini"},
    "tracekit": {"openai", "anthropic", "gemini"},
    "mlflow": {"openai", "anthropic", "gemini"},
    "openinference": {"openai", "anthropic"},
    "otel-openai-v2": {"openai"},
}


class Variant:
    """Set up one variant's instrumentation; flush it; read back what it recorded."""

    def __init__(self, name: str, tmp: str, destination: str, providers: set[str]) -> None:
        self.name = "bare" if name == CONTROL else name
        self.tmp = tmp
        self.errors: dict[str, str] = {}
        self.provider: Any = None
        self.spans_file = os.path.join(tmp, "otel-spans.jsonl")
        self.seen: set[str] = set()
        if self.name in ("openinference", "otel-openai-v2"):
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


def setup(spec: dict[str, Any], providers: set[str] | None = None) -> tuple[Variant, Clients]:
    """In a child: the SDKs imported, the spec's variant set up for `providers` (all three
    by default), and the clients on the spec's transport."""
    import_sdks()
    variant = Variant(
        spec["variant"],
        os.getcwd(),
        spec.get("destination", "file"),
        providers or set(COVERS["bare"]),
    )
    return variant, Clients(spec)


def tracekit_stats() -> dict[str, int] | None:
    """tracekit's counters in a tracekit child (None in the others)."""
    tracekit = sys.modules.get("tracekit")
    return tracekit.get_stats() if tracekit is not None else None


def child_env(variant: str, tmp: str, destination: str) -> dict[str, str]:
    """A variant's child environment: nothing of ours inherited, its exporter pointed at
    `destination` (`file`: a store in `tmp`, the child's working directory)."""
    env = clean_env()
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
