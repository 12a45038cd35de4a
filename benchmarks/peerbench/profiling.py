"""`--profile`: pyinstrument of a tracekit child on the mock transport, per case."""

from __future__ import annotations

from typing import Any

from _common import emit
from peerbench.plan import Context
from peerbench.variants import setup
from peerbench.workload import CASSETTES, samples

CASES = ("openai_chat", "openai_stream", "anthropic_messages", "gemini_generate")


def child_profile(spec: dict[str, Any]) -> None:
    from pyinstrument import Profiler

    variant, clients = setup(spec)
    for case in CASES:
        samples(clients, case, 100)
        variant.flush()
        profiler = Profiler(interval=0.0002)
        profiler.start()
        samples(clients, case, spec["n"])
        profiler.stop()
        print(f"\n### pyinstrument, {case}, {spec['n']} calls\n", flush=True)
        print(profiler.output_text(unicode=False, color=False, show_all=False), flush=True)
    emit({"done": True})


def run(ctx: Context) -> int:
    if ctx.bodies is None:
        print(f"no cassettes at {CASSETTES}: --profile needs the mock transport")
        return 1
    r = ctx.child("profile", ctx.spec("tracekit", n=1000))
    print(r.get("text") or r)
    return 0
