"""The tracekit side of zero-code tracing (`TRACEKIT_AUTOLOG`).

The start-up hook (`_tracekit_autostart`, at the top of site-packages) watches
imports without importing tracekit, and calls in here when there is work.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import threading

logger = logging.getLogger("tracekit")


def known_names() -> list[str]:
    """The valid integration names in `TRACEKIT_AUTOLOG`, warning about the others."""
    from tracekit._config import _autolog

    return list(_autolog(os.environ))


def enable(name: str) -> None:
    """Turn on one integration; its SDK has just been imported."""
    try:
        importlib.import_module(f"tracekit.{name}").autolog(silent=True)
        _flush_on_sigterm()
    except Exception as exc:  # the program must run even if tracing cannot
        logger.warning("tracekit: TRACEKIT_AUTOLOG: could not trace %s: %r", name, exc)


def _flush_on_sigterm() -> None:
    """Containers, Kubernetes and systemd stop a service with SIGTERM, whose
    default action skips atexit. When nothing handles SIGTERM, handle it: deliver
    what is buffered, then die of the signal as before. A framework that installs
    its own handler later (gunicorn, uvicorn) replaces this one and exits
    through atexit, which flushes anyway."""
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError, AttributeError):  # no SIGTERM on this platform
        return


def _on_sigterm(signum: int, _frame: object) -> None:
    """Deliver within TRACEKIT_SHUTDOWN_TIMEOUT, from a thread so that a lock the
    interrupted code holds cannot deadlock the exit (at worst the wait times
    out), then re-raise the signal with its default action."""
    from tracekit import _state

    worker = threading.Thread(target=_state.at_exit, name="tracekit-sigterm", daemon=True)
    worker.start()
    worker.join(_state.config().shutdown_timeout + 0.5)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
