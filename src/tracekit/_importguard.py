"""The fork guard for imports made off the main thread.

The exporters' modules are imported on the export worker, so that the traced call that
finishes the first trace does not wait for them (30 ms for a file store, 70 ms and more
for a remote destination). A fork while that thread held an import lock would copy the
lock held (gunicorn `--preload`, Celery and multiprocessing fork workers this way): the
child would hang importing that module, or see it half initialized. So the imports run
under `_importing`, which a fork takes first (`os.register_at_fork`): the fork waits for
the imports to finish, and the child starts with no import under way. The wait is bounded
(FORK_WAIT_S) so that a fork made while importing a module the worker needs as well (a
module-level fork) cannot deadlock; `tracekit._cost` guards the price database the same way.

Its own module, so that the export worker can take it before it imports the
exporters' package itself (`_state.pipeline`): the traced call that finishes the
first trace imports none of it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

FORK_WAIT_S = 10.0
_importing = threading.Lock()
_importer: int | None = None  # the thread holding `_importing` for imports
_held_for_fork = False


@contextmanager
def imports() -> Iterator[None]:
    """Hold the import guard (a fork waits until the block is done)."""
    global _importer
    with _importing:
        _importer = threading.get_ident()
        try:
            yield
        finally:
            _importer = None


def importing_here() -> bool:
    """Whether this thread imports under the fork guard now (for tests that check that
    nothing is imported unguarded off the main thread)."""
    return _importer == threading.get_ident()


def _before_fork() -> None:
    global _held_for_fork
    _held_for_fork = _importing.acquire(timeout=FORK_WAIT_S)


def _after_fork_in_parent() -> None:
    global _held_for_fork
    if _held_for_fork:
        _held_for_fork = False
        _importing.release()


def _after_fork_in_child() -> None:
    global _importing, _importer, _held_for_fork
    _importing, _importer, _held_for_fork = threading.Lock(), None, False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
