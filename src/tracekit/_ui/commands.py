"""The `tracekit ui` subcommand and `tracekit show --html` (registered by `tracekit.cli`).

Only argparse is imported here; the server loads when the command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_parser(sub: Any) -> None:
    """Register `tracekit ui`, and `--html` on `tracekit show`, on the CLI's subparsers."""
    sub.choices["show"].add_argument(
        "--html", metavar="FILE", help="write the trace as one offline HTML page"
    )
    ui = sub.add_parser(
        "ui",
        help="browse the file store's traces in a local web viewer",
        description="Serve a trace viewer for the file store on this machine and open it in "
        "the browser. Ctrl-C stops it.",
    )
    ui.add_argument(
        "--store", help="store directory (default: TRACEKIT_TRACKING_URI or ./.tracekit)"
    )
    ui.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; anything else lets other machines "
        "read your traces)",
    )
    ui.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    ui.add_argument("--no-browser", action="store_true", help="do not open a browser")
    ui.set_defaults(func=cmd_ui)


def cmd_ui(args: argparse.Namespace) -> int:
    from tracekit._store import store_path
    from tracekit._ui.server import UIServer

    store = store_path(args.store)
    try:
        server = UIServer(store, args.host, args.port)
    except OSError as exc:
        print(f"tracekit ui: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    try:  # Ctrl-C at any point from here ends cleanly
        _announce(server, store, args)
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        print("\ntracekit ui: stopped.", flush=True)
    finally:
        server.server_close()
        server.index.close()
    return 0


def _announce(server: Any, store: Path, args: argparse.Namespace) -> None:
    print(f"tracekit ui: {server.url}", flush=True)
    if args.host not in LOOPBACK:
        print(
            f"tracekit ui: warning: listening on {args.host}, not loopback: anyone who can "
            "reach this address can read the traces in the store (prompts included)",
            file=sys.stderr,
            flush=True,
        )
    server.index.refresh()  # the first run on a big store reads it all: after the URL line
    print(f"Serving {store} ({_count(server)}).", flush=True)
    skipped = server.index.skipped()
    if skipped:
        print(f"{skipped} unreadable line(s) in the store were skipped.", flush=True)
    print("Press Ctrl-C to stop.", flush=True)
    if not args.no_browser:
        import webbrowser

        webbrowser.open(server.url)


def _count(server: Any) -> str:
    from tracekit._ui.index import Query

    total, _ = server.index.search(Query(limit=1))
    return f"{total} trace{'s' if total != 1 else ''}"


def write_html(record: dict[str, Any], target: str) -> int:
    """`tracekit show ID --html FILE`."""
    from tracekit._ui.export import write

    path = Path(target).expanduser()
    try:
        write(record, path)
    except OSError as exc:
        print(f"tracekit show: cannot write {path}: {exc}", file=sys.stderr)
        return 1
    print(f"Wrote {path} (open it in a browser; it works offline).")
    return 0
