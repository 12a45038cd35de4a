"""The first traced call, and turning tracing on, in fresh interpreters.

    .venv/bin/python benchmarks/firstcall.py             # about a minute
    .venv/bin/python benchmarks/firstcall.py --runs 31

Issue 19's start-up targets, with the SDK already imported:

- `import tracekit` + `<sdk>.autolog()`: ≤ 20 ms;
- the first traced call: ≤ 5 ms over the first bare call (client built, the
  request served by an in-process transport, so the network is not in it).

Each run is a pair of fresh interpreters, bare and traced, in alternating
order; the figures are medians over the runs. A bare-vs-bare pair is run too:
its difference is the noise floor. The traced child also reports how long the
first trace took to reach the file store (`flush`), which happens on the export
worker, off the caller's thread.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

# The child imports nothing beyond the SDK that an application would not have: the
# harness's own modules (`_common` loads `concurrent.futures.thread`, which the first
# traced call would otherwise import for its thread-pool patch) come in after timing.

SDKS = ("openai", "anthropic", "gemini")
BUDGET_AUTOLOG_MS = 20.0
BUDGET_FIRST_CALL_MS = 5.0

_CHAT = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "This is a test."},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
}
_MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-20250514",
    "content": [{"type": "text", "text": "Nine."}],
    "stop_reason": "end_turn",
    "usage": {"input_tokens": 14, "output_tokens": 4},
}
_GEMINI = {
    "candidates": [
        {"content": {"role": "model", "parts": [{"text": "Nine."}]}, "finishReason": "STOP"}
    ],
    "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 2, "totalTokenCount": 10},
    "modelVersion": "gemini-2.0-flash",
}


def _transport() -> Any:
    import httpx2

    def handler(request: Any) -> Any:
        path = request.url.path
        body = _GEMINI if "generateContent" in path else _MESSAGE if "/messages" in path else _CHAT
        return httpx2.Response(200, json=body, headers={"x-request-id": "req"})

    return httpx2.Client(transport=httpx2.MockTransport(handler))


def _sdk(sdk: str) -> Any:
    """Import the SDK; return a function that builds the client and makes one call."""
    if sdk == "openai":
        import openai

        def call() -> None:
            client = openai.OpenAI(
                api_key="test", base_url="http://bench.invalid/v1", http_client=_transport()
            )
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Say this is a test"}]
            )

        return call
    if sdk == "anthropic":
        import anthropic

        def call() -> None:
            client = anthropic.Anthropic(
                api_key="test", base_url="http://bench.invalid", http_client=_transport()
            )
            client.messages.create(
                model="claude-sonnet-4-20250514",
                max_tokens=100,
                messages=[{"role": "user", "content": "What is four plus five?"}],
            )

        return call
    from google import genai
    from google.genai import types

    def call() -> None:
        client = genai.Client(
            api_key="test",
            http_options=types.HttpOptions(
                base_url="http://bench.invalid", api_version="v1beta", httpx_client=_transport()
            ),
        )
        client.models.generate_content(model="gemini-2.0-flash", contents="What is 4 + 5?")

    return call


def child(sdk: str, traced: bool) -> None:
    call = _sdk(sdk)
    clock = time.perf_counter
    on_ms = flush_ms = 0.0
    if traced:
        t0 = clock()
        import tracekit

        getattr(tracekit, sdk).autolog()
        on_ms = (clock() - t0) * 1e3
    t0 = clock()
    call()
    first_ms = (clock() - t0) * 1e3
    t0 = clock()
    call()
    second_ms = (clock() - t0) * 1e3
    if traced:
        t0 = clock()
        tracekit.flush(30)
        flush_ms = (clock() - t0) * 1e3
        written = sum(1 for _ in tracekit.search_traces(max_results=10))
        if written != 2:  # both calls must be in the store, or the figure means nothing
            raise SystemExit(f"expected 2 traces in the store, found {written}")
    from _common import emit

    emit({"on_ms": on_ms, "first_ms": first_ms, "second_ms": second_ms, "flush_ms": flush_ms})


def _run(sdk: str, traced: bool) -> dict[str, Any]:
    import tempfile

    from _common import child_env, run_child

    with tempfile.TemporaryDirectory(prefix="tracekit-first-") as tmp:
        env = child_env({"TRACEKIT_TRACKING_URI": os.path.join(tmp, "store")})
        return run_child(__file__, [sdk, "traced" if traced else "bare"], env=env, cwd=tmp)[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="process pairs per SDK")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1] == "traced")
        return
    import compileall
    import importlib.util
    import statistics

    from _common import revision, status

    # Byte-code for tracekit as it is now (PYTHONDONTWRITEBYTECODE leaves a stale or
    # missing .pyc behind an edit, and every child would compile the module again).
    spec = importlib.util.find_spec("tracekit")
    for directory in (spec.submodule_search_locations or []) if spec else []:
        compileall.compile_dir(directory, quiet=1)

    print(f"tracekit {revision()}: first call and autolog(), {args.runs} process pairs per SDK")
    print(
        f"{'SDK':<10} {'autolog':>9} {'1st bare':>9} {'1st traced':>11} {'added':>8}"
        f" {'control':>8} {'flush':>8}  targets"
    )
    report: dict[str, Any] = {}
    for sdk in SDKS:
        on, bare, traced, control, flush = [], [], [], [], []
        for i in range(args.runs):
            order = (False, True, False) if i % 2 else (True, False, False)
            seen: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
            for variant in order:
                seen[variant].append(_run(sdk, variant))
            t = seen[True][0]
            on.append(t["on_ms"])
            flush.append(t["flush_ms"])
            traced.append(t["first_ms"])
            bare.append(seen[False][0]["first_ms"])
            control.append(seen[False][1]["first_ms"] - seen[False][0]["first_ms"])
        m = statistics.median
        added = m(traced) - m(bare)
        ok_on, ok_first = m(on) <= BUDGET_AUTOLOG_MS, added <= BUDGET_FIRST_CALL_MS
        report[sdk] = {
            "autolog_ms": m(on),
            "first_bare_ms": m(bare),
            "first_traced_ms": m(traced),
            "added_ms": added,
            "control_ms": m(control),
            "flush_ms": m(flush),
        }
        print(
            f"{sdk:<10} {m(on):>7.1f}ms {m(bare):>7.1f}ms {m(traced):>9.1f}ms {added:>+6.1f}ms"
            f" {m(control):>+6.1f}ms {m(flush):>6.1f}ms  autolog {status(ok_on)},"
            f" first call {status(ok_first)}"
        )
    print("RESULTS " + json.dumps(report, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
