"""The sizes of a run, the targets, and what every figure's parent side shares (`Context`)."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import echo_stderr, spawn
from peerbench.variants import CONTROL, child_env

ENTRY = Path(__file__).resolve().parent.parent / "peers.py"  # children run it with --child

TARGET_ADDED = 0.03  # added median latency, a share of bare's
TARGET_CPU = 0.10  # added whole-process CPU, a share of bare's
TARGET_IMPORT_MS = 50.0
TARGET_RSS_GROWTH_MB = 5.0  # MiB, from half the calls to all of them
TARGET_EXIT_SLACK_S = 1.0  # on top of TRACEKIT_SHUTDOWN_TIMEOUT, for the interpreter's exit

# Sizes of the full run and of --quick. Call counts and time budgets are multiplied by
# --scale (a smaller full run to check the script end to end); rounds are not (--rounds
# sets the latency and CPU rounds).
PLANS: dict[str, dict[str, Any]] = {
    "full": {
        "transports": ("mock", "loopback"),
        # every round runs every variant and the control once, in a rotated order
        "latency_rounds": 8,
        # case: (timed calls, warm-up calls) per child; loopback takes half
        "latency_sizes": {
            "openai_chat": (400, 50),
            "openai_stream": (200, 25),
            "openai_async": (6, 2),
            "anthropic_messages": (200, 25),
            "anthropic_stream": (150, 15),
            "gemini_generate": (200, 25),
            "gemini_stream": (150, 15),
        },
        "flush_wait_s": 1.0,  # at most, between a child's cases (MLflow drains slowly)
        # MLflow's calls cost 5-10 times the others': it times this share of the samples
        "mlflow_share": 0.25,
        "check_calls": 20,
        "cpu_rounds": 8,
        "cpu_calls": 300,
        "server": True,  # whole-process CPU also against a real `mlflow server`
        "server_rounds": 8,  # issue 19: at least 8 rounds in separate processes
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
        "latency_rounds": 2,
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
        "cpu_rounds": 2,
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
GROUPS = ("latency", "check", "cpu", "memory", "exit")  # the figure groups, in run order
TRANSPORTS = ("mock", "loopback")
PARALLEL = 2  # check and memory children run two at a time (see the notes in the report)
PARALLEL_EXIT = 4  # exit children mostly wait on the destination's timeouts


class Context:
    """What the figures' parent sides share: the plan (scaled), the transport, the bodies,
    and `child()`, which runs one child and never raises for the child's failure."""

    def __init__(
        self,
        plan: dict[str, Any],
        *,
        scale: float,
        quick: bool,
        verbose: bool,
        bodies: dict[str, Any] | None,
    ) -> None:
        self.plan = plan
        self.scale = scale
        self.quick = quick
        self.verbose = verbose
        self.bodies = bodies
        # mock if the cassettes are there, else a real round trip to the fake server
        self.transport = "mock" if bodies else "loopback"
        self.fake: Any = None  # FakeProviderServer, when the loopback transport is in use
        self.notes: list[str] = []

    def calls(self, n: int, least: int = 1) -> int:
        return max(least, round(n * self.scale))

    def budget(self, seconds: float) -> float:
        return max(1.0, seconds * self.scale)

    def spec(self, variant: str, **extra: Any) -> dict[str, Any]:
        """A child's spec on the figures' transport."""
        if self.transport == "loopback" and self.fake is None:
            self.fake = fake_server()
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
            self.fake = None

    def child(
        self,
        kind: str,
        spec: dict[str, Any],
        timeout: float = 600,
        env_extra: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Run one child in a fresh temporary directory; its result, wall time, own CPU.

        A child that fails or outlives `timeout` (it is killed) gives `{"failed": why}`.
        """
        variant = spec["variant"]
        with tempfile.TemporaryDirectory(prefix="peers-bench-") as tmp:
            destination = spec.get("destination", "file")
            env = child_env("bare" if variant == CONTROL else variant, tmp, destination)
            env.update(env_extra or {})
            command = [sys.executable, str(ENTRY), "--child", kind, json.dumps(spec)]
            done = spawn(command, env=env, cwd=tmp, timeout=timeout)
        if self.verbose:
            echo_stderr(done.stderr)
        label = f"{kind} {variant}" + (f" ({spec['label']})" if spec.get("label") else "")
        results = done.results()
        if not results:
            print(f"    {label}: no result after {done.wall_s:.1f} s", flush=True)
            last = (done.stderr.strip().splitlines() or ["?"])[-1][:200]
            return {
                "failed": f"time budget ({timeout:.0f} s) ran out, killed"
                if done.killed
                else f"exit {done.returncode}: {last}",
                "killed": done.killed,
                "wall_s": done.wall_s,
            }
        print(f"    {label}: {done.wall_s:.1f} s", flush=True)
        out: dict[str, Any] = results[-1]
        out.update(
            wall_s=done.wall_s,
            ended=done.ended,
            killed=done.killed,
            returncode=done.returncode,
            cpu_s=done.cpu_s,
        )
        if kind == "profile":
            out["text"] = done.stdout
        return out


def fake_server() -> Any:
    """tracekit's fake provider server on 127.0.0.1, its request log bounded (the run
    makes hundreds of thousands of calls and never reads it)."""
    from tracekit._fake_server import FakeProviderServer

    return FakeProviderServer(max_requests=100).start()


def tracekit_default(name: str) -> Any:
    """A default of tracekit's configuration (`shutdown_timeout`, `max_queued_spans`)."""
    from tracekit._config import Config

    return Config.__dataclass_fields__[name].default
