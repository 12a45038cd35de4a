"""The tracekit side of zero-code tracing (`TRACEKIT_AUTOLOG`).

The start-up hook (`_tracekit_autostart`, at the top of site-packages) watches
imports without importing tracekit, and calls in here when there is work.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading

from tracekit.integrations import _registry

logger = logging.getLogger("tracekit")


def known_names() -> list[str]:
    """The valid integration names in `TRACEKIT_AUTOLOG`, warning about the others."""
    from tracekit._config import _autolog

    return list(_autolog(os.environ))


def enable(name: str) -> None:
    """Turn on one integration; its SDK has just been imported."""
    try:
        importlib.import_module(_registry.spec(name).face).autolog(silent=True)
    except Exception as exc:  # the program must run even if tracing cannot
        logger.warning("tracekit: TRACEKIT_AUTOLOG: could not trace %s: %r", name, exc)


def flush_before_signal() -> None:
    """On SIGTERM (the start-up hook's handler): deliver what is buffered within
    TRACEKIT_SHUTDOWN_TIMEOUT, from a thread so that a lock held by the
    interrupted code cannot deadlock the exit: at worst the wait times out."""
    from tracekit import _state

    worker = threading.Thread(target=_state.at_exit, name="tracekit-sigterm", daemon=True)
    worker.start()
    worker.join(_state.config().shutdown_timeout + 0.5)
