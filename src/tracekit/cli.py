"""The `tracekit` command: list and show traces in a file store.

    tracekit ls [--store DIR] [--limit N] [--json]
    tracekit show TRACE_ID [--store DIR] [--json] [--messages]
    tracekit demo
    tracekit upload [--spool DIR] [--to URI]
    tracekit upload --store DIR --to URI
    tracekit run [--autolog NAMES] [--to URI] -- COMMAND [ARGS...]
    tracekit ui [--store DIR] [--host 127.0.0.1] [--port N] [--no-browser]
    tracekit show TRACE_ID --html FILE

The store is `--store`, else the first file destination in
`TRACEKIT_TRACKING_URI`, else `./.tracekit`. `upload` delivers what a remote
destination could not take (the spool, `TRACEKIT_SPOOL_DIR`), or sends a whole
file store to a tracking server or OTLP backend. `run` starts COMMAND traced
with no code change (`TRACEKIT_AUTOLOG`, default `all`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tracekit import _store
from tracekit._render import format_cost, format_duration, render_trace


def _tokens(record: dict[str, Any]) -> str:
    usage = record.get("token_usage") or {}
    return str(usage["total_tokens"]) if "total_tokens" in usage else "-"


def _start(record: dict[str, Any]) -> str:
    ns = record.get("start_time_ns")
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ns / 1e9)) if ns else "-"


def _empty(store: Path) -> str:
    return (
        f"No traces in {store} yet. Traced code writes there by default; set "
        "TRACEKIT_TRACKING_URI or pass --store DIR to read another store."
    )


def _load(store: Path) -> list[dict[str, Any]]:
    """The store's traces; lines that could not be read are skipped and counted on stderr."""
    traces, skipped = _store.load_counted(store)
    if skipped:
        print(
            f"tracekit: skipped {skipped} line(s) in {store} that are not trace records "
            "tracekit can read (torn, garbage, or hostile)",
            file=sys.stderr,
        )
    return traces


def cmd_ls(args: argparse.Namespace) -> int:
    store = _store.store_path(args.store)
    traces = _load(store)[: args.limit]
    if args.json:
        print(json.dumps([_summary(r) for r in traces], indent=2))
        return 0
    if not traces:
        print(_empty(store))
        return 0
    rows = [("TRACE ID", "NAME", "STATUS", "STARTED", "DURATION", "SPANS", "TOKENS", "COST")]
    rows += [
        (
            r["trace_id"],
            str(r.get("name", ""))[:40],
            str(r.get("status", "")),
            _start(r),
            format_duration(r.get("start_time_ns"), r.get("end_time_ns")),
            str(len(r.get("spans") or [])),
            _tokens(r),
            format_cost(r.get("cost")) or "-",
        )
        for r in traces
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip()
        )
    return 0


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    keys = ("trace_id", "name", "status", "start_time_ns", "end_time_ns", "token_usage", "tags")
    summary = {k: record.get(k) for k in keys}
    summary["cost"] = record.get("cost")
    summary["span_count"] = len(record.get("spans") or [])
    return summary


def cmd_show(args: argparse.Namespace) -> int:
    store = _store.store_path(args.store)
    traces = _load(store)
    wanted = args.trace_id.strip().lower().removeprefix("tr-")
    if not wanted:
        print(
            "Give a trace id (or a unique prefix of one); `tracekit ls` lists them.",
            file=sys.stderr,
        )
        return 2
    matches = [r for r in traces if str(r["trace_id"]).startswith(wanted)]
    if len(matches) != 1:
        if not traces:
            print(_empty(store), file=sys.stderr)
        elif not matches:
            print(
                f"No trace with id {args.trace_id!r} in {store} ({len(traces)} traces there; "
                "`tracekit ls` lists them).",
                file=sys.stderr,
            )
        else:
            print(
                f"{args.trace_id!r} matches {len(matches)} traces; give more digits.",
                file=sys.stderr,
            )
        return 1
    record = matches[0]
    from tracekit._read import assessment_records  # feedback logged beside the traces

    assessments = assessment_records(store).get(record["trace_id"])
    if assessments:
        record = {**record, "assessments": assessments}
    if args.html:  # the viewer's trace page as one file (tracekit._ui)
        from tracekit._ui.commands import write_html

        return write_html(record, args.html)
    if args.json:
        print(json.dumps(record, indent=2, ensure_ascii=False))
        return 0
    print(render_trace(record))
    chats = sum(1 for span in record.get("spans") or [] if span.get("chat"))
    if args.messages and chats:
        from tracekit._chat.render import render_messages

        print("\n".join(render_messages(record)))
    elif chats:
        print(f"\n  ({chats} LLM call(s) with messages: add --messages to read them)")
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tracekit", description="Read traces from a tracekit file store."
    )
    sub = parser.add_subparsers(dest="command")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--store", help="store directory (default: TRACEKIT_TRACKING_URI or ./.tracekit)"
    )
    common.add_argument("--json", action="store_true", help="print JSON instead of text")
    ls = sub.add_parser("ls", parents=[common], help="list recent traces, newest first")
    ls.add_argument("-n", "--limit", type=_positive, default=20, help="how many (default 20)")
    ls.set_defaults(func=cmd_ls)
    show = sub.add_parser("show", parents=[common], help="show one trace as a tree")
    show.add_argument("trace_id", help="trace id (a unique prefix is enough)")
    show.add_argument(
        "-m", "--messages", action="store_true", help="also print each LLM call's messages"
    )
    show.set_defaults(func=cmd_show)
    demo = sub.add_parser("demo", help="run a small traced LLM agent against a local fake server")
    demo.set_defaults(func=cmd_demo)
    upload = sub.add_parser(
        "upload", help="deliver spooled traces now, or send a file store to a server"
    )
    upload.add_argument(
        "--spool", help="spool directory (default: TRACEKIT_SPOOL_DIR or ./.tracekit/spool)"
    )
    upload.add_argument("--store", help="send this file store instead of the spool")
    upload.add_argument(
        "--to",
        help="destination URI (http(s)://HOST, databricks[://PROFILE], otlp, "
        "otlp+http://HOST:PORT); required "
        "with --store, default for the spool: where each batch was meant to go",
    )
    upload.set_defaults(func=cmd_upload)
    run = sub.add_parser(
        "run",
        help="run a Python program traced, with no code change",
        description="Run COMMAND with TRACEKIT_AUTOLOG set, so that a Python program in this "
        "environment is traced without importing tracekit. Example: "
        "tracekit run --autolog openai -- python app.py",
    )
    run.add_argument(
        "--autolog",
        metavar="NAMES",
        help="integrations to turn on: openai, anthropic, gemini, langchain or all "
        "(default: TRACEKIT_AUTOLOG, else all)",
    )
    run.add_argument("--to", metavar="URI", help="destination (sets TRACEKIT_TRACKING_URI)")
    run.add_argument("command", nargs=argparse.REMAINDER, help="the program and its arguments")
    run.set_defaults(func=cmd_run)
    from tracekit._ui.commands import add_parser as add_ui_parser  # `ui`, `show --html`

    add_ui_parser(sub)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print(
            "tracekit run: give the program to run, e.g. tracekit run -- python app.py",
            file=sys.stderr,
        )
        return 2
    env = dict(os.environ)
    env["TRACEKIT_AUTOLOG"] = args.autolog or env.get("TRACEKIT_AUTOLOG") or "all"
    if args.to:
        env["TRACEKIT_TRACKING_URI"] = args.to
    other = _other_python(command[0], env)
    if other:
        print(
            f"tracekit run: {command[0]!r} is {other}, not this environment's Python "
            f"({sys.executable}); it is traced only if tracekit is installed there too",
            file=sys.stderr,
        )
    elif not _autostart_installed():
        print(
            "tracekit run: the start-up hook (tracekit-autostart.pth) is not in this "
            "environment's site-packages, so the program will run untraced; reinstall "
            "tracekit with pip",
            file=sys.stderr,
        )
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(command[0], command, env)  # noqa: S606 - runs what the user asked, as asked
    except OSError as exc:
        print(f"tracekit run: cannot run {command[0]!r}: {exc.strerror or exc}", file=sys.stderr)
        return 127 if isinstance(exc, FileNotFoundError) else 126
    return 0  # not reached: exec replaced this process


def _other_python(program: str, env: dict[str, str]) -> str | None:
    """The path of `program` when it is a Python interpreter outside this environment."""
    import shutil

    if not Path(program).name.startswith("python"):
        return None
    found = shutil.which(program, path=env.get("PATH"))
    if found is None or Path(found).parent == Path(sys.executable).parent:
        return None
    return found


def _autostart_installed() -> bool:
    import site

    dirs = [*site.getsitepackages(), site.getusersitepackages()]
    return any((Path(d) / "tracekit-autostart.pth").is_file() for d in dirs)


def cmd_upload(args: argparse.Namespace) -> int:
    from tracekit import _upload
    from tracekit.exporters.remote import SCHEMES, scheme_of

    if args.to and scheme_of(args.to) not in SCHEMES:
        print(
            f"--to {args.to!r}: expected http(s)://HOST, databricks[://PROFILE], otlp or "
            "otlp+http(s)://HOST:PORT",
            file=sys.stderr,
        )
        return 2
    if args.store:
        if not args.to:
            print("--store needs --to URI: where to send its traces", file=sys.stderr)
            return 2
        _, left = _upload.upload_store(Path(args.store).expanduser(), args.to)
        return 1 if left else 0
    from tracekit._config import from_env
    from tracekit.exporters.remote import spool_root

    root = Path(args.spool).expanduser() if args.spool else spool_root(from_env())
    delivered, left = _upload.upload_spool(root, args.to)
    if not delivered and not left:
        print(f"Nothing to upload: no spooled traces in {root}.")
    return 1 if left else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from tracekit.demo import main as run_demo

    run_demo()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):
        # A lone surrogate in a record (half an emoji cut by a slice) prints as its escape.
        reconfigure = getattr(stream, "reconfigure", None)
        if callable(reconfigure):
            reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except BrokenPipeError:  # `tracekit ls | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
