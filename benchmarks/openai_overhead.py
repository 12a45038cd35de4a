"""tracekit's added latency on OpenAI SDK calls, against the bare SDK.

Run it (about three minutes on two cores):

    .venv/bin/python benchmarks/openai_overhead.py

Two variants of the same client code: `bare` (tracekit is never imported) and
`tracekit` (`tracekit.openai.autolog()`, `TRACEKIT_TRACKING_URI` at a fresh
temporary directory). Each variant runs in its own fresh interpreter per
round and the variants alternate round by round (bare, tracekit, bare, ...).
A child warms up, then times every call and reports the median latency per
call (per batch of 50 for the async case); the tracekit/bare ratio is taken
per round and the median of the ratios reported.

Two transports: `mock`, an in-process `httpx2.MockTransport` serving response
bodies recorded from the live API (embedded below) -- no network, so the
figure is tracekit's instrumentation cost against the SDK's own cost -- and
`loopback`, `tracekit._fake_server.FakeProviderServer` on 127.0.0.1 (run by
the parent process, so its CPU is not the client's): a real HTTP round trip.

Every tracekit child checks after its calls that `tracekit.flush()` wrote one
span per call, each with token usage; if not, the run prints a loud warning
and exits 1. The table is printed and written to
benchmarks/results/openai_overhead.md. See benchmarks/README.md.

Options: `--quick` (fewer, shorter rounds: a smoke run), `--only SUBSTRING`
(cases whose name, e.g. `mock stream`, contains it), `--verbose` (show the
children's stderr), `--profile` (where a tracekit process spends its time:
component timings and cProfile of the caller's thread and the export worker).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _common import emit, md_row, revision, run_child_in_tmp, run_header, worker_cpu_s

US = 1_000.0  # ns per µs
TARGET_ADDED = 0.03  # tracekit may add at most 3% to the median latency
BATCH = 50  # concurrent calls per asyncio.gather in the async case
RESULTS_FILE = Path(__file__).resolve().parent / "results" / "openai_overhead.md"

# ---------------------------------------------------------------------------
# recorded wire data (tests/cassettes/openai/, recorded with the live API)
# ---------------------------------------------------------------------------

# chat_completions_nonstream_basic.yaml: the request and the response body.
NONSTREAM_REQUEST: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "Say this is a test"}],
}
CHAT_COMPLETION_BODY = b"""{
  "id": "chatcmpl-ASYMQRl3A3DXL9FWCK9tnGRcKIO7q",
  "object": "chat.completion",
  "created": 1731368630,
  "model": "gpt-4o-mini-2024-07-18",
  "choices": [
    {
      "index": 0,
      "message": {
        "role": "assistant",
        "content": "This is a test.",
        "refusal": null
      },
      "logprobs": null,
      "finish_reason": "stop"
    }
  ],
  "usage": {
    "prompt_tokens": 12,
    "completion_tokens": 5,
    "total_tokens": 17,
    "prompt_tokens_details": {
      "cached_tokens": 0,
      "audio_tokens": 0
    },
    "completion_tokens_details": {
      "reasoning_tokens": 0,
      "audio_tokens": 0,
      "accepted_prediction_tokens": 0,
      "rejected_prediction_tokens": 0
    }
  },
  "system_fingerprint": "fp_0ba0d124f1"
}
"""

# chat_completions_stream_include_usage.yaml: the request and the SSE events.
STREAM_REQUEST: dict[str, Any] = {
    "model": "gpt-4",
    "messages": [{"role": "user", "content": "Say this is a test"}],
    "stream": True,
    "stream_options": {"include_usage": True},
}
STREAM_EVENTS = (
    '{"id":"chatcmpl-ASYMZ4oSykiIFK4lXLReDiKyAjsQl","object":"chat.completion.chunk","created":1731368639,"model":"gpt-4-0613","system_fingerprint":null,"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}',
    '{"id":"chatcmpl-ASYMZ4oSykiIFK4lXLReDiKyAjsQl","object":"chat.completion.chunk","created":1731368639,"model":"gpt-4-0613","system_fingerprint":null,"choices":[{"index":0,"delta":{"content":"\\"This"},"logprobs":null,"finish_reason":null}],"usage":null}',
    '{"id":"chatcmpl-ASYMZ4oSykiIFK4lXLReDiKyAjsQl","object":"chat.completion.chunk","created":1731368639,"model":"gpt-4-0613","system_fingerprint":null,"choices":[{"index":0,"delta":{"content":" is"},"logprobs":null,"finish_reason":null}],"usage":null}',  # noqa: E501
    '{"id":"chatcmpl-ASYMZ4oSykiIFK4lXLReDiKyAjsQl","object":"chat.completion.chunk","created":1731368639,"model":"gpt-4-0613","system_fingerprint":null,"choices":[{"index":0,"delta":{"content":" a"},"logprobs":null,"finish_reason":null}],"usage":null}',  # noqa: E501
    '{"id":"chatcmpl-ASYMZ4oSykiIFK4lXLReDiKyAjsQl","object":"chat.completion.chunk","created":1731368639,"model":"gpt-4-0613","system_fingerprint":null,"choices":[{"index":0,"delta":{"content":" test"},"logprobs":null,"finish_reason":null}],"usage":null}',  # noqa: E501
    '{"id":"chatcmpl-ASYMZ4oSykiIFK4lXLReDiKyAjsQl","object":"chat.completion.chunk","created":1731368639,"model":"gpt-4-0613","system_fingerprint":null,"choices":[{"index":0,"delta":{"content":".\\""},"logprobs":null,"finish_reason":null}],"usage":null}',
    '{"id":"chatcmpl-ASYMZ4oSykiIFK4lXLReDiKyAjsQl","object":"chat.completion.chunk","created":1731368639,"model":"gpt-4-0613","system_fingerprint":null,"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}',
    '{"id":"chatcmpl-ASYMZ4oSykiIFK4lXLReDiKyAjsQl","object":"chat.completion.chunk","created":1731368639,"model":"gpt-4-0613","system_fingerprint":null,"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}',
)
CHAT_STREAM_BODY = "".join(f"data: {event}\n\n" for event in STREAM_EVENTS).encode()
CHAT_STREAM_BODY += b"data: [DONE]\n\n"

JSON_HEADERS = {"content-type": "application/json", "x-request-id": "req_bench"}
SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "x-request-id": "req_bench"}

CASES = {
    "sync": "chat non-stream, sync",
    "stream": "chat stream, sync (all chunks)",
    "async": f"chat non-stream, async (gather of {BATCH})",
}
TRANSPORTS = {
    "mock": "in-process MockTransport, recorded bodies",
    "loopback": "loopback HTTP, FakeProviderServer",
}


# ---------------------------------------------------------------------------
# helpers used in the children
# ---------------------------------------------------------------------------


def mock_handler(request: Any) -> Any:
    """The recorded response for a chat completions request (stream or not)."""
    import httpx2

    if b'"stream":true' in request.content:
        return httpx2.Response(200, headers=SSE_HEADERS, content=CHAT_STREAM_BODY)
    return httpx2.Response(200, headers=JSON_HEADERS, content=CHAT_COMPLETION_BODY)


def make_client(transport: str, base_url: str, is_async: bool) -> Any:
    import httpx2
    import openai

    if transport == "mock":
        mock = httpx2.MockTransport(mock_handler)
        http_client = (
            openai.DefaultAsyncHttpxClient(transport=mock)
            if is_async
            else openai.DefaultHttpxClient(transport=mock)
        )
        base_url = "http://bench.invalid"
    else:
        http_client = openai.DefaultAsyncHttpxClient() if is_async else openai.DefaultHttpxClient()
    cls = openai.AsyncOpenAI if is_async else openai.OpenAI
    return cls(api_key="test", base_url=base_url + "/v1", max_retries=0, http_client=http_client)


def store_spans(directory: str) -> list[dict[str, Any]]:
    """Every span in every *.jsonl file under `directory`."""
    spans: list[dict[str, Any]] = []
    for path in Path(directory).glob("*.jsonl"):
        with path.open("rb") as f:
            for raw in f:
                spans.extend(json.loads(raw)["spans"])
    return spans


def has_usage(span: dict[str, Any]) -> bool:
    usage = span.get("token_usage") or {}
    attributes = span.get("attributes") or {}
    return (
        isinstance(usage.get("input_tokens"), int)
        and isinstance(usage.get("output_tokens"), int)
        and "gen_ai.usage.input_tokens" in attributes
        and "gen_ai.usage.output_tokens" in attributes
    )


Samples = tuple[list[int], list[int]]  # (wall ns, calling thread's CPU ns) per sample


def summary(samples: Samples) -> dict[str, float]:
    times_ns, cpu_ns = samples
    ordered = sorted(times_ns)
    return {
        "cpu_median_ns": statistics.median(cpu_ns),
        "median_ns": statistics.median(ordered),
        "mean_ns": statistics.fmean(ordered),
        "p90_ns": ordered[int(len(ordered) * 0.9)],
        "p99_ns": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "n": len(ordered),
    }


# ---------------------------------------------------------------------------
# the measured child
# ---------------------------------------------------------------------------


def _time_sync(client: Any, n: int) -> Samples:
    create = client.chat.completions.create
    clock, cpu = time.perf_counter_ns, time.thread_time_ns
    times, cpus = [], []
    for _ in range(n):
        t0, c0 = clock(), cpu()
        create(**NONSTREAM_REQUEST)
        cpus.append(cpu() - c0)
        times.append(clock() - t0)
    return times, cpus


def _time_stream(client: Any, n: int) -> Samples:
    create = client.chat.completions.create
    clock, cpu = time.perf_counter_ns, time.thread_time_ns
    times, cpus = [], []
    for _ in range(n):
        t0, c0 = clock(), cpu()
        for _chunk in create(**STREAM_REQUEST):
            pass
        cpus.append(cpu() - c0)
        times.append(clock() - t0)
    return times, cpus


def _time_async(transport: str, base_url: str, warmup: int, batches: int) -> tuple[Samples, float]:
    """Batch samples, and the export worker's CPU seconds when the timing began."""
    import asyncio

    async def run() -> tuple[Samples, float]:
        client = make_client(transport, base_url, is_async=True)
        create = client.chat.completions.create
        clock, cpu = time.perf_counter_ns, time.thread_time_ns
        times: list[int] = []
        cpus: list[int] = []
        cpu0 = 0.0
        for i in range(warmup + batches):
            if i == warmup:
                cpu0 = _between_cases()
            t0, c0 = clock(), cpu()
            await asyncio.gather(*(create(**NONSTREAM_REQUEST) for _ in range(BATCH)))
            if i >= warmup:
                cpus.append(cpu() - c0)
                times.append(clock() - t0)
        await client.close()
        return (times, cpus), cpu0

    return asyncio.run(run())


def _between_cases() -> float:
    """Outside the timings: an empty export queue and a fresh GC state.

    Returns the export worker's CPU seconds so far.
    """
    if "tracekit" in sys.modules:
        sys.modules["tracekit"].flush(120)
    gc.collect()
    return worker_cpu_s()


def _fingerprint(client: Any) -> dict[str, Any]:
    """What the caller sees (identical with and without tracekit)."""
    response = client.chat.completions.create(**NONSTREAM_REQUEST)
    chunks = [c.model_dump_json() for c in client.chat.completions.create(**STREAM_REQUEST)]
    digest = hashlib.sha256(response.model_dump_json().encode())
    for chunk in chunks:
        digest.update(chunk.encode())
    return {"digest": digest.hexdigest()[:16], "chunks": len(chunks)}


def child_run(spec: dict[str, Any]) -> None:
    variant, transport, base_url = spec["variant"], spec["transport"], spec["base_url"]
    cases: list[str] = spec["cases"]
    warm = spec["warmup"]
    import httpx2  # noqa: F401 - the SDK's HTTP stack, loaded in both variants
    import openai  # noqa: F401

    if variant == "tracekit":
        import tracekit

        tracekit.openai.autolog()
    client = make_client(transport, base_url, is_async=False)
    seen = _fingerprint(client)
    calls = {"nonstream": 1, "stream": 1}  # the fingerprint's two calls
    results: dict[str, Any] = {}
    for case in cases:
        if case == "sync":
            _time_sync(client, warm["sync"])
            cpu0 = _between_cases()
            times = _time_sync(client, spec["sync"])
            calls["nonstream"] += warm["sync"] + spec["sync"]
            per_call = 1
        elif case == "stream":
            _time_stream(client, warm["stream"])
            cpu0 = _between_cases()
            times = _time_stream(client, spec["stream"])
            calls["stream"] += warm["stream"] + spec["stream"]
            per_call = 1
        else:
            times, cpu0 = _time_async(transport, base_url, warm["async"], spec["async"])
            calls["nonstream"] += (warm["async"] + spec["async"]) * BATCH
            per_call = BATCH
        # The export worker's CPU during the timed calls (and their export).
        if variant == "tracekit":
            sys.modules["tracekit"].flush(120)
        results[case] = {
            **summary(times),
            "calls_per_sample": per_call,
            "worker_cpu_s": worker_cpu_s() - cpu0,
        }
    client.close()

    check: dict[str, Any] = {"tracekit_imported": "tracekit" in sys.modules}
    if variant == "tracekit":
        import tracekit

        check["flushed"] = tracekit.flush(120)
        check["stats"] = {k: v for k, v in tracekit.get_stats().items() if v}
        spans = store_spans(os.environ["TRACEKIT_TRACKING_URI"])
        streamed = [s for s in spans if (s.get("attributes") or {}).get("tracekit.stream")]
        check.update(
            expected=calls["nonstream"] + calls["stream"],
            expected_stream=calls["stream"],
            spans=len(spans),
            with_usage=sum(1 for s in spans if has_usage(s)),
            chat_spans=sum(1 for s in spans if s.get("span_type") == "CHAT_MODEL"),
            stream_spans=len(streamed),
            stream_chunks_ok=sum(
                1
                for s in streamed
                if s["attributes"].get("tracekit.stream.chunks") == seen["chunks"]
            ),
        )
    emit({"cases": results, "check": check, "seen": seen})


def check_problems(check: dict[str, Any], variant: str) -> list[str]:
    """What is wrong with a child's recording (empty when all is well)."""
    if variant == "bare":
        return ["the bare variant imported tracekit"] if check["tracekit_imported"] else []
    problems = []
    expected = check["expected"]
    if check["spans"] != expected:
        problems.append(f"{check['spans']:,} spans written for {expected:,} calls")
    if check["with_usage"] != expected:
        problems.append(f"token usage on {check['with_usage']:,} of {expected:,} spans")
    if check["chat_spans"] != expected:
        problems.append(f"{check['chat_spans']:,} CHAT_MODEL spans for {expected:,} calls")
    if check["stream_spans"] != check["expected_stream"]:
        problems.append(
            f"{check['stream_spans']:,} stream spans for {check['expected_stream']:,} streams"
        )
    if check["stream_chunks_ok"] != check["expected_stream"]:
        problems.append(
            f"chunk count right on {check['stream_chunks_ok']:,} of "
            f"{check['expected_stream']:,} stream spans"
        )
    if not check["flushed"]:
        problems.append("tracekit.flush() timed out")
    if check["stats"]:
        problems.append(f"get_stats(): {check['stats']}")
    return problems


# ---------------------------------------------------------------------------
# --profile: where a tracekit process spends its time
# ---------------------------------------------------------------------------


def _per_call_ns(fn: Any, n: int) -> tuple[float, float]:
    """(wall ns, calling thread's CPU ns) per call of `fn`.

    Wall time includes the export worker's turns with the GIL (each call here
    makes a span it will serialize); the thread's CPU time is the hot path alone.
    """
    fn()
    gc.collect()
    t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - t0) / n, (time.thread_time_ns() - c0) / n


def child_profile(spec: dict[str, Any]) -> None:
    """Component timings (no profiler) and cProfile of the hot path and the worker."""
    import cProfile
    import io
    import pstats

    import tracekit
    from tracekit import _api, _pipeline
    from tracekit.integrations import openai as mapper
    from tracekit.integrations._call import _Call
    from tracekit.integrations._streams import StreamCall, TracedStream

    n = spec["n"]
    tracekit.openai.autolog()
    client = make_client("mock", "", is_async=False)
    endpoint = next(e for e in mapper.integration.endpoints if e.target == "Completions.create")
    resource = client.chat.completions
    response = client.chat.completions.create(**NONSTREAM_REQUEST)
    chunks = list(client.chat.completions.create(**STREAM_REQUEST))
    tracekit.flush(60)
    stream_kwargs = dict(STREAM_REQUEST)
    request = endpoint.request(resource, stream_kwargs)

    def bare_iteration() -> None:
        for _chunk in iter(chunks):
            pass

    def start_finish() -> None:
        _api.finish(_api.start("chat gpt-4o-mini", "CHAT_MODEL"), None)

    def engine_nonstream() -> None:
        call = _Call.begin(endpoint, resource, NONSTREAM_REQUEST)
        assert call is not None
        call.succeed(response, is_async=False)

    def response_mapping() -> None:
        span = _api.start("chat", "CHAT_MODEL")
        mapper._chat_response(span, response)
        _api.finish(span, None)

    def accumulator() -> None:
        span = _api.start("chat", "CHAT_MODEL")
        acc = mapper.ChatAccumulator(request)
        for chunk in chunks:
            acc.add(chunk)
        acc.finish(span)
        _api.finish(span, None)

    def stream_proxy() -> None:
        span = _api.start("chat", "CHAT_MODEL")
        proxy = TracedStream(iter(chunks), StreamCall(span, _NullAccumulator()))
        for _chunk in proxy:
            pass

    def engine_stream() -> None:
        call = _Call.begin(endpoint, resource, stream_kwargs)
        assert call is not None
        proxy = call.succeed(_FakeStream(chunks), is_async=False)
        for _chunk in proxy:
            pass

    # _is_stream() checks isinstance(result, openai.Stream): a stand-in that is one.
    import openai

    class _FakeStream(openai.Stream):  # type: ignore[misc,type-arg]
        def __init__(self, items: list[Any]) -> None:
            self._items = iter(items)

        def __next__(self) -> Any:
            return next(self._items)

        def __iter__(self) -> Any:
            return self

    # Spans started above are exported by the worker meanwhile: that is real.
    timings = {
        "request mapping (`openai._request`)": _per_call_ns(
            lambda: endpoint.request(resource, NONSTREAM_REQUEST), n
        ),
        "span start + end, empty (`_api.start`/`finish`, enqueue)": _per_call_ns(start_finish, n),
        "response mapping + span (`_chat_response`, start/finish)": _per_call_ns(
            response_mapping, n
        ),
        "engine, non-stream (`_Call.begin` + `succeed`, no HTTP)": _per_call_ns(
            engine_nonstream, n
        ),
        f"accumulator + span ({len(chunks)} chunks, `add` + `finish`)": _per_call_ns(
            accumulator, n
        ),
        f"stream proxy + span ({len(chunks)} chunks, no accumulator)": _per_call_ns(
            stream_proxy, n
        ),
        f"engine, stream (begin + proxy + accumulator, {len(chunks)} chunks)": _per_call_ns(
            engine_stream, n
        ),
        f"bare iteration of {len(chunks)} chunks": _per_call_ns(bare_iteration, n),
    }
    tracekit.flush(120)

    # cProfile of the caller's thread over real calls (wall clock: time spent
    # waiting for the GIL is charged to the call that released it), and of the
    # export worker (its own CPU time: its GIL waits are not its cost).
    worker_profile = cProfile.Profile(time.thread_time)
    original_export = _pipeline.ExportPipeline._export

    def profiled_export(self: Any, batch: Any) -> None:
        worker_profile.enable()
        try:
            original_export(self, batch)
        finally:
            worker_profile.disable()

    _pipeline.ExportPipeline._export = profiled_export  # type: ignore[method-assign]
    calls = spec["calls"]
    profiles: dict[str, str] = {}
    for case, run in (("sync", _time_sync), ("stream", _time_stream)):
        run(client, 100)
        tracekit.flush(120)
        caller = cProfile.Profile()
        caller.enable()
        run(client, calls)
        caller.disable()
        out = io.StringIO()
        stats = pstats.Stats(caller, stream=out)
        stats.sort_stats("cumulative").print_stats(r"tracekit|wrapt|weakref", 30)
        profiles[f"{case}: caller thread, wall clock"] = out.getvalue()
        profiles[f"{case}: caller thread, wall clock (self time, all)"] = _top_self(caller, 25)
    tracekit.flush(120)
    out = io.StringIO()
    pstats.Stats(worker_profile, stream=out).sort_stats("cumulative").print_stats(25)
    profiles["export worker, thread CPU time (both cases)"] = out.getvalue()
    emit({"timings_ns": timings, "profiles": profiles, "calls": calls, "chunks": len(chunks)})


class _NullAccumulator:
    def add(self, chunk: Any) -> None:
        pass

    def finish(self, span: Any) -> None:
        pass


def _top_self(prof: Any, limit: int) -> str:
    import io
    import pstats

    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(limit)
    return out.getvalue()


# ---------------------------------------------------------------------------
# the parent: fresh interpreters, interleaved rounds, the table
# ---------------------------------------------------------------------------


def start_server() -> Any:
    """The loopback server, in this (otherwise idle) process, keeping no request log."""
    from tracekit._fake_server import FakeProviderServer

    class BenchServer(FakeProviderServer):
        served = 0

        def record(self, path: str, headers: dict[str, str], body: Any) -> None:
            self.served += 1  # not the request log: it would grow for the whole run

    return BenchServer().start()


def fmt_time(ns: float) -> str:
    return f"{ns / 1e6:.2f} ms" if ns >= 10e6 else f"{ns / US:,.0f} µs"


def case_row(
    transport: str, case: str, pairs: list[tuple[dict, dict]], valid: bool
) -> tuple[list[str], bool]:
    """One table row from the rounds' (bare, tracekit) results for a case."""
    bare = [b["cases"][case] for b, _ in pairs]
    traced = [t["cases"][case] for _, t in pairs]
    ratios = [t["median_ns"] / b["median_ns"] for b, t in zip(bare, traced, strict=True)]
    added = [t["median_ns"] - b["median_ns"] for b, t in zip(bare, traced, strict=True)]
    mean_ratios = [t["mean_ns"] / b["mean_ns"] for b, t in zip(bare, traced, strict=True)]
    p99_added = [t["p99_ns"] - b["p99_ns"] for b, t in zip(bare, traced, strict=True)]
    cpu_added = [t["cpu_median_ns"] - b["cpu_median_ns"] for b, t in zip(bare, traced, strict=True)]
    per_sample = traced[0]["calls_per_sample"]
    ratio = statistics.median(ratios)
    added_ns = statistics.median(added)
    spans = traced[0]["n"] * per_sample
    worker_us = statistics.median(t["worker_cpu_s"] for t in traced) * 1e6 / spans
    ok = ratio - 1.0 <= TARGET_ADDED
    unit = f" per batch of {per_sample}" if per_sample > 1 else ""
    added_cell = f"{added_ns / US:+,.0f} µs" + (
        f" ({added_ns / US / per_sample:+,.1f} µs/call)" if per_sample > 1 else ""
    )
    details = (
        f"{len(pairs)} rounds × {traced[0]['n']:,} samples{unit}; ratio range "
        f"{min(ratios):.3f}–{max(ratios):.3f}; mean latency ratio "
        f"{statistics.median(mean_ratios):.3f}; p99 "
        f"{statistics.median(p99_added) / US:+,.0f} µs; calling thread's CPU "
        f"{statistics.median(cpu_added) / US:+,.0f} µs; export worker CPU "
        f"{worker_us:,.0f} µs/span"
    )
    row = [
        f"{CASES[case]} [{transport}]",
        fmt_time(statistics.median(b["median_ns"] for b in bare)),
        fmt_time(statistics.median(t["median_ns"] for t in traced)),
        added_cell,
        f"{ratio:.3f} ({(ratio - 1) * 100:+.1f}%)",
        f"≤ {TARGET_ADDED:.0%} {'PASS' if ok else 'MISS'}"
        + ("" if valid else " INVALID: spans missing"),
        details,
    ]
    return row, ok


def run_profile(quick: bool, verbose: bool) -> int:
    spec = {"n": 2_000 if quick else 10_000, "calls": 300 if quick else 2_000}
    r = run_child_in_tmp(__file__, ["profile", json.dumps(spec)], verbose=verbose)
    print(f"## tracekit OpenAI hot path, per call ({revision()}, no profiler attached)\n")
    print("| component | wall µs per call | caller CPU µs per call |")
    print("|---|---|---|")
    for name, (wall, cpu) in r["timings_ns"].items():
        print(f"| {name} | {wall / US:.1f} | {cpu / US:.1f} |")
    for name, text in r["profiles"].items():
        print(f"\n### cProfile, {name} ({r['calls']:,} calls)\n")
        print(text.strip())
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--only", default="", help="run cases whose name contains this")
    parser.add_argument("--verbose", action="store_true", help="show the children's stderr")
    parser.add_argument("--profile", action="store_true", help="profile a tracekit process")
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        kind, spec = args.child
        if kind == "run":
            child_run(json.loads(spec))
        elif kind == "profile":
            child_profile(json.loads(spec))
        else:
            raise SystemExit(f"unknown child {kind!r}")
        return 0
    if args.profile:
        return run_profile(args.quick, args.verbose)

    quick = args.quick
    rounds = 3 if quick else 7
    # Samples timed per child (async: batches of BATCH calls) and warm-up calls
    # before them; loopback calls cost about twice as much, so fewer of them.
    sizes = {
        "mock": {"sync": 2_000, "stream": 1_000, "async": 30},
        "loopback": {"sync": 1_000, "stream": 500, "async": 15},
    }
    warmups = {
        "mock": {"sync": 200, "stream": 100, "async": 4},
        "loopback": {"sync": 100, "stream": 50, "async": 2},
    }
    if quick:
        sizes = {t: {c: max(4, n // 8) for c, n in s.items()} for t, s in sizes.items()}
        warmups = {t: {c: max(2, n // 4) for c, n in s.items()} for t, s in warmups.items()}

    started = time.perf_counter()
    load = os.getloadavg()  # other work on the machine skews every figure
    rows: list[list[str]] = []
    failures: list[str] = []
    notes: list[str] = []
    for transport in TRANSPORTS:
        cases = [c for c in CASES if args.only in f"{transport} {c}"]
        if not cases:
            continue
        server = start_server() if transport == "loopback" else None
        base_url = server.base_url if server else ""
        pairs: list[tuple[dict, dict]] = []
        try:
            for index in range(rounds):
                print(f"running {transport} round {index + 1}/{rounds} ...", flush=True)
                round_results = {}
                for variant in ("bare", "tracekit"):  # interleaved, so drift hits both
                    spec = {
                        "variant": variant,
                        "transport": transport,
                        "base_url": base_url,
                        "cases": cases,
                        "warmup": warmups[transport],
                        **sizes[transport],
                    }
                    r = run_child_in_tmp(
                        __file__,
                        ["run", json.dumps(spec)],
                        store=variant == "tracekit",
                        verbose=args.verbose,
                    )
                    for problem in check_problems(r["check"], variant):
                        failures.append(f"{transport} round {index + 1}, {variant}: {problem}")
                    round_results[variant] = r
                if round_results["bare"]["seen"] != round_results["tracekit"]["seen"]:
                    failures.append(
                        f"{transport} round {index + 1}: the caller saw different results "
                        f"with tracekit ({round_results['tracekit']['seen']}) than without "
                        f"({round_results['bare']['seen']})"
                    )
                pairs.append((round_results["bare"], round_results["tracekit"]))
        finally:
            if server is not None:
                server.stop()
        valid = not any(f.startswith(f"{transport} ") for f in failures)
        for case in cases:
            row, _ok = case_row(transport, case, pairs, valid)
            rows.append(row)
        check = pairs[-1][1]["check"]
        notes.append(
            f"{transport}: the last tracekit child wrote {check['spans']:,} spans for "
            f"{check['expected']:,} calls ({check['stream_spans']:,} streamed), "
            f"{check['with_usage']:,} with token usage"
            + ("; every round checked: complete" if valid else "; SPANS MISSING, see below")
        )

    if rows:
        notes.append(
            "added and ratio: medians over rounds of (tracekit − bare) and tracekit/bare, each "
            "round's figure being the median latency of one fresh bare and one fresh tracekit "
            "process. The mean latency ratio also counts the few calls that GC pauses and "
            "the export worker's GIL time land on, which the median hides. The calling "
            "thread's CPU (median per sample, `time.thread_time`) is the hot path without "
            "waits for the GIL; the export worker's CPU per span is read from /proc while "
            "it exports the timed calls."
        )
    lines = [
        run_header("tracekit OpenAI overhead", quick, started, load[0]),
        "",
        "| case | bare median | tracekit median | added | ratio | target | details |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [md_row(row) for row in rows]
    lines.append("")
    lines += [f"- {note}" for note in notes]
    if failures:
        lines += ["", "**Correctness failures (tracekit did not record every call):**"]
        lines += [f"- {failure}" for failure in failures]
    report = "\n".join(lines) + "\n"
    print()
    print(report, end="")
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_FILE.write_text(report, encoding="utf-8")
    print(f"\n(written to {os.path.relpath(RESULTS_FILE)})")
    if failures:
        bar = "!" * 78
        print(f"\n{bar}\n!! WARNING: tracekit did NOT record every call. The tracekit figures")
        print("!! above measure a variant that skipped work; they are not valid.")
        for failure in failures:
            print(f"!!   {failure}")
        print(bar)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
